"""SNOMED CT look-up of data set label names, and its use in ``medsegai-train plan``."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

from medsegai_training import planning, snomed_lookup
from medsegai_training.cli import main
from medsegai_training.planning import APPLY_CONFIDENCE, Fingerprint, card_document, make_plan
from medsegai_training.snomed_lookup import (CONFLICTING_SIDES, NAME_CONFIDENCE, SPELLING_CONFIDENCE, TYPO_CONFIDENCE,
                                             lookup, normalize, table, unmatched_reason)
from MedSegAILib.bundle import parse_card
from msd_support import write_dataset

GA = "Segmentation category and type - 3D Slicer General Anatomy list"
DM = "Segmentation category and type - DICOM master list"
ANATOMY = ("SCT", "123037004", "Anatomical Structure")
LEFT, RIGHT = ("SCT", "7771000", "Left"), ("SCT", "24028007", "Right")
# Slicer's lists as the trame-slicer wheel ships them; the repository does not hold them (.cache is ignored)
LISTS = Path(__file__).resolve().parents[2] / ".cache" / "terminologies"


def fingerprint(labels: dict) -> Fingerprint:
    return Fingerprint("Dataset007_Test", ["CT"], labels, ["a", "b", "c"], [[1.0, 1.0, 1.0]] * 3, [[64, 64, 64]] * 3,
                       [{"voxels": 100, "percentile_00_5": -50.0, "percentile_99_5": 200.0, "mean": 90.0, "std": 40.0}])


def test_known_names_get_the_codes_and_colours_of_slicers_lists():
    liver = lookup("liver")
    assert (liver.context, liver.category, liver.type, liver.modifier, liver.color) == \
        (GA, ANATOMY, ("SCT", "10200004", "Liver"), None, (221, 130, 101))
    assert liver.confidence == NAME_CONFIDENCE and "concept's name" in liver.explanation
    upper = lookup("lung_upper_lobe_right")
    assert (upper.type, upper.modifier, upper.color) == \
        (("SCT", "45653009", "Upper lobe of lung"), RIGHT, (172, 138, 115))
    middle = lookup("lung_middle_lobe_right")  # a concept that includes the side: no modifier
    assert (middle.type, middle.modifier) == (("SCT", "72481006", "Middle lobe of right lung"), None)
    hippocampus = lookup("Hippocampus_L")  # not in the General Anatomy list: DICOM master, which has no colour
    assert (hippocampus.context, hippocampus.type, hippocampus.modifier, hippocampus.color) == \
        (DM, ("SCT", "5366008", "Hippocampus"), LEFT, None)
    thalamus = lookup("Left-Thalamus-Proper")  # the two lists code the thalamus differently; the entry's own list's
    assert (thalamus.context, thalamus.type[1], thalamus.color) == (GA, "119406000", (122, 101, 38))
    tumour = lookup("Tumour")
    assert (tumour.context, tumour.category, tumour.type) == \
        (DM, ("SCT", "49755003", "Morphologically Altered Structure"), ("SCT", "108369006", "Neoplasm"))
    assert lookup("metastases").type[1] == "14799000" and lookup("edema").type[1] == "79654002"
    assert lookup("brain").type[1] == "12738006" and lookup("Brain-Stem").type[1] == "119238007"
    assert lookup("kidney_left").terminology() == {"context": GA, "category": list(ANATOMY),
                                                   "type": ["SCT", "64033007", "Kidney"], "modifier": list(LEFT)}


@pytest.mark.parametrize("name", ["left kidney", "kidney_left", "Kidney_L", "L_kidney", "lt kidney", "kidney-lt",
                                  "LeftKidney", "kidneyLeft", "KIDNEY LEFT", "lh_kidney", "left_kidneys"])
def test_left_spellings(name):
    match = lookup(name)
    assert (match.type[1], match.modifier, match.color) == ("64033007", LEFT, (185, 102, 83)), name


@pytest.mark.parametrize("name", ["right kidney", "kidney_right", "Kidney_R", "R-kidney", "rt kidney", "KidneyRight"])
def test_right_spellings(name):
    assert lookup(name).modifier == RIGHT, name


def test_side_letters_count_only_at_either_end_and_must_agree():
    assert normalize("l_kidney_r") == (("kidney",), CONFLICTING_SIDES)
    assert lookup("left_right_kidney") is None
    assert unmatched_reason("left_right_kidney") == "it names both left and right"
    assert normalize("vertebra_l_1") == (("1", "l", "vertebra"), None)  # "l" in the middle is not a side
    assert lookup("kidneys").modifier is None  # no side, no modifier


def test_synonyms_and_plurals():
    pairs = [("pallidum", "globus pallidus"), ("Right-Pallidum", "globus_pallidus_right"),
             ("caudate", "caudate nucleus"), ("vertebral column", "spine"), ("spinal_column", "Spine"),
             ("grey matter", "gray matter"), ("GM", "gray matter"), ("oesophagus", "esophagus"),
             ("gall_bladder", "gallbladder"), ("urinary_bladder", "bladder"), ("small_bowel", "small intestine"),
             ("ribs", "rib"), ("hippocampi", "hippocampus"), ("lumbar vertebrae", "lumbar spine"),
             ("adrenal_glands", "adrenal gland"), ("costal_cartilages", "costal cartilage"),
             ("Left-Accumbens-area", "nucleus accumbens left"), ("CSF", "cerebrospinal fluid"),
             ("3rd-Ventricle", "third ventricle"), ("heart_atrium_left", "left atrium"),
             ("postcava", "inferior vena cava"), ("clavicula_left", "left clavicle")]
    for a, b in pairs:
        ma, mb = lookup(a), lookup(b)
        assert ma is not None and mb is not None, (a, b)
        assert (ma.type, ma.modifier) == (mb.type, mb.modifier), (a, b)
    assert lookup("pallidum").confidence == SPELLING_CONFIDENCE and "'pallidum'" in lookup("pallidum").explanation
    assert lookup("pancreas").type[2] == "Pancreas"  # its final s is no plural


@pytest.mark.parametrize("name,reason", [
    ("sphere", "not in the look-up table"),
    ("enhancing tumor", "not in the look-up table"),  # a qualified finding: the user must choose
    ("vertebrae_L1", "not in the look-up table"),  # no single-vertebra codes in the table
    ("prostate/uterus", "not in the look-up table"),
    ("ilium", "not in the look-up table"),  # five letters: too short to correct to "ileum"-like words
    ("hip_left", "ambiguous: hip bone, hip joint or hip region"),
    ("ventricles", "ambiguous: a brain ventricle or a heart ventricle"),
    ("LV", "ambiguous: left ventricle of the heart or lateral ventricle of the brain"),
    ("cancer", "ambiguous: a primary or a secondary malignant neoplasm"),
    ("liver_left", f"Liver has no left modifier in {GA}"),
    ("lung_middle_lobe_left", f"Middle lobe of right lung has no left modifier in {GA}"),
    ("L", "no structure is named"),
])
def test_unknown_and_ambiguous_names_are_not_guessed(name, reason):
    assert lookup(name) is None
    assert unmatched_reason(name) == reason


def test_one_typo_in_a_long_word_is_corrected_with_a_lower_confidence():
    match = lookup("hipocampus_r")
    assert (match.type[1], match.modifier, match.confidence) == ("5366008", RIGHT, TYPO_CONFIDENCE)
    assert "after correcting 'hipocampus' to 'hippocampus'" in match.explanation
    assert lookup("pancrease").type[1] == "15776009"
    assert TYPO_CONFIDENCE < APPLY_CONFIDENCE <= SPELLING_CONFIDENCE  # planning offers typo matches, never applies them
    assert lookup("hippocmpuss") is None  # two edits
    assert unmatched_reason("hipocampus_r") is None


def test_every_spelling_names_one_entry_and_ambiguous_names_none():
    entries = table()[0]
    assert len(entries) >= 80
    seen: dict = {}
    for entry in entries:
        for name in entry.names:
            key = normalize(name)
            assert key[1] != CONFLICTING_SIDES, name
            assert seen.setdefault(key, entry.type) == entry.type, f"{name!r} names {seen[key]} and {entry.type}"
            if entry.sides:  # a structure with Left / Right modifiers is spelled without a side
                assert key[1] is None, name
    for name in json.loads(snomed_lookup.TABLE_PATH.read_text())["ambiguous"]:
        assert lookup(name) is None and unmatched_reason(name).startswith("ambiguous: "), name
    assert lookup("left ventricle").type[2] == "Left Ventricle"  # a table spelling wins over "ventricle"
    groups = {json_entry["group"] for json_entry in json.loads(snomed_lookup.TABLE_PATH.read_text())["structures"]}
    assert groups == {"abdomen", "thorax", "skeleton", "tissue", "brain", "finding"}


@pytest.mark.skipif(not LISTS.is_dir(), reason="Slicer's terminology lists are not in .cache/terminologies")
def test_table_is_a_copy_of_slicers_lists():
    data = json.loads(snomed_lookup.TABLE_PATH.read_text())
    lists = {context: json.loads((LISTS / name).read_text())["SegmentationCodes"]["Category"]
             for context, name in data["sources"].items()}

    def code(d):
        return [d["CodingSchemeDesignator"], d["CodeValue"], d["CodeMeaning"]]

    for entry in data["structures"]:
        category = next(c for c in lists[entry["context"]] if code(c) == entry["category"])
        types = [t for t in category["Type"] if code(t) == entry["type"]]
        assert types, entry["type"]
        t = next((x for x in types if "recommendedDisplayRGBValue" in x), types[0])
        assert entry["color"] == t.get("recommendedDisplayRGBValue"), entry["type"]
        sides = {m["CodeValue"]: m for m in t.get("Modifier", []) if m["CodeValue"] in (LEFT[1], RIGHT[1])}
        assert {s["modifier"][1] for s in entry.get("laterality", {}).values()} == set(sides), entry["type"]
        for s in entry.get("laterality", {}).values():
            assert s["modifier"] == code(sides[s["modifier"][1]])
            assert s["color"] == sides[s["modifier"][1]].get("recommendedDisplayRGBValue")
        assert entry["type"][2].lower() in entry["names"]


def test_docstring_examples():
    for module in (snomed_lookup, planning):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_plan_labels_get_codes_or_a_placeholder_and_a_note():
    labels = {"background": 0, "liver": 1, "kidney_left": 2, "Hippocampus_L": 3, "hip_left": 4, "blob": 5,
              "hipocampus": 6}
    plan = make_plan(fingerprint(labels), memory_mb=512)
    by_name = {x["name"]: x for x in plan["model"]["labels"]}
    assert by_name["liver"] == {"value": 1, "name": "liver", "color": [221, 130, 101], "terminology": {
        "context": GA, "category": list(ANATOMY), "type": ["SCT", "10200004", "Liver"]}}
    assert by_name["kidney_left"]["terminology"]["modifier"] == list(LEFT)
    assert by_name["kidney_left"]["color"] == [185, 102, 83]
    assert by_name["Hippocampus_L"]["color"] == list(planning.PALETTE[2])  # the list has no colour: the palette's
    for name in ("hip_left", "blob", "hipocampus"):
        assert by_name[name]["terminology"]["type"][0] == "99MEDSEGAI", name
    review = plan["label_terminology"]
    assert review["liver"] == f"SCT 10200004 Liver: the concept's name ({GA})"
    assert review["hip_left"] == "placeholder 99MEDSEGAI (ambiguous: hip bone, hip joint or hip region): edit it"
    assert review["hipocampus"].startswith(
        "placeholder 99MEDSEGAI (did you mean SCT 5366008 Hippocampus? after correcting 'hipocampus'")
    note = next(n for n in plan["notes"] if "SNOMED CT" in n)
    assert note.startswith("3 of 6 labels have no SNOMED CT code yet: 'hip_left', 'blob', 'hipocampus'")
    assert "model.labels[].terminology" in note
    card = parse_card(card_document(plan), "plan card")
    assert card.labels[1].terminology.modifier.meaning == "Left" and card.labels[2].terminology.context == DM

    known = make_plan(fingerprint({"background": 0, "liver": 1, "tumour": 2}), memory_mb=512)
    assert any(n.startswith("every label got SNOMED CT codes") for n in known["notes"])


def test_plan_command_lists_the_labels_to_edit(tmp_path, capsys):
    ds = write_dataset(tmp_path / "ds", cases=2, labels={"background": 0, "Liver": 1, "lesion": 2})
    assert main(["plan", str(ds), "-o", str(tmp_path / "plan.json"), "--memory-mb", "256", "--base-filters", "4",
                 "--max-stages", "3"]) == 0
    out = capsys.readouterr().out
    assert "note: 1 of 2 labels have no SNOMED CT code yet: 'lesion'" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [x["terminology"]["type"][1] for x in plan["model"]["labels"]] == ["10200004", "lesion"]
