"""Fixtures shared by all tests."""

from __future__ import annotations

import itertools

import pytest

from MedSegAILib.bundle import Bundle, write_bundle
from MedSegAILib.networks import build_network
from testing_support import make_card


@pytest.fixture
def bundle_factory(tmp_path):
    """``bundle_factory(**card_overrides) -> Bundle`` written to a fresh folder and opened."""
    counter = itertools.count()

    def make(zip_file: bool = False, **overrides) -> Bundle:
        card = make_card(**overrides)
        net = build_network(card["network"]["name"], card["network"]["args"])
        dest = tmp_path / f"bundle{next(counter)}{'.zip' if zip_file else ''}"
        write_bundle(dest, card, {card["files"]["weights"]: net.state_dict()})
        return Bundle.open(dest)

    return make
