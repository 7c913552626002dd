"""Tier B: MedSegAI checked against 3D Slicer's own libraries (the slicer-core wheel), headless.

Every test module here imports ``slicer_helpers``, which skips the module when slicer-core is
missing. This file imports nothing from slicer-core at module level (a skip raised while pytest
loads the conftest of a folder named on the command line stops the whole run), so
``pytest Testing/with_slicer`` without slicer-core reports skips. All tests here are marked ``slicer``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TERMINOLOGIES = REPO / ".cache" / "terminologies"  # Slicer's default *.term.json, made by scripts/setup.sh


@pytest.fixture(scope="session")
def headless_slicer():
    """One headless Slicer (scene and module logics) for the whole session."""
    from slicer_helpers import close_headless_slicer, make_headless_slicer

    h = make_headless_slicer(TERMINOLOGIES if TERMINOLOGIES.is_dir() else None)
    h.has_terminologies = TERMINOLOGIES.is_dir()
    yield h
    close_headless_slicer(h)


@pytest.fixture
def slicer_scene(headless_slicer):
    """The headless Slicer with an empty scene (data nodes removed after each test)."""
    yield headless_slicer
    headless_slicer.scene.Clear(0)


@pytest.fixture
def terminologies(slicer_scene):
    """The headless Slicer with Slicer's default terminology lists loaded."""
    if not slicer_scene.has_terminologies:
        pytest.skip(f"Slicer's terminology lists are missing in {TERMINOLOGIES}: run scripts/setup.sh")
    return slicer_scene
