"""Codes missing from Slicer's lists ship in a .term.json that Slicer's terminology logic loads."""

from __future__ import annotations

import json

import pytest

import slicer_helpers as sh
from MedSegAILib.bundle import parse_card
from MedSegAILib.terminology import MEDSEGAI_CONTEXT, terminology_entry, terminology_json
from testing_support import label_entry, make_card

pytestmark = pytest.mark.slicer


def test_generated_term_json_loads_and_gives_the_card_colour(slicer_scene, tmp_path):
    label = label_entry(1, "Hippocampal tail", ["SCT", "999000001", "Hippocampal tail"], (12, 34, 56),
                        modifier=["SCT", "7771000", "Left"])
    label["terminology"]["context"] = MEDSEGAI_CONTEXT
    card = parse_card(make_card(labels=[label]))
    path = tmp_path / "SegmentationCategoryTypeModifier-MedSegAI.term.json"
    path.write_text(json.dumps(terminology_json([card]), indent=2))
    assert slicer_scene.terminologies.LoadTerminologyFromFile(str(path)) == MEDSEGAI_CONTEXT
    rgb, _, entry = sh.recommended_terminology(slicer_scene, terminology_entry(card.labels[0].terminology))
    assert rgb == (12, 34, 56)
    assert entry.startswith(MEDSEGAI_CONTEXT) and "SCT^999000001^Hippocampal tail~SCT^7771000^Left" in entry
