"""Planning mixed-modality data sets: every channel is normalised by its own modality.

The first channel's normalisation is the card default (``preprocessing.normalization``); a channel
normalised differently carries ``model.inputs[i].normalization``; ``nonzero`` follows the share of
exact zeros in the channel's background, which the fingerprint measures.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medsegai_training.cli import main
from medsegai_training.data import load_case
from medsegai_training.dataset import load_dataset
from medsegai_training.planning import Fingerprint, card_document, make_plan, read_plan
from MedSegAILib.bundle import parse_card
from MedSegAILib.bundle.card import Normalization
from MedSegAILib.preprocessing import prepare_case
from msd_support import sphere_case, to_image

SPACING = (1.5, 1.5, 2.0)
ZSCORE = {"type": "percentile_zscore", "lower": 0.5, "upper": 99.5}


def intensity(zero_fraction: float, low: float = 0.0, high: float = 100.0) -> dict:
    return {"voxels": 100, "percentile_00_5": low, "percentile_99_5": high, "mean": 50.0, "std": 20.0,
            "median": 50.0, "background_zero_fraction": zero_fraction}


def fingerprint(channels: dict[str, dict]) -> Fingerprint:
    return Fingerprint("Dataset009_Mixed", list(channels), {"background": 0, "lesion": 1}, ["c0", "c1", "c2"],
                       [[1.0, 1.0, 1.0]] * 3, [[64, 64, 64]] * 3, list(channels.values()))


def test_ct_and_pet_get_a_window_and_a_zscore():
    plan = make_plan(fingerprint({"CT": intensity(0.001, -57.3, 212.6), "PET": intensity(0.9)}), memory_mb=512)
    assert plan["preprocessing"]["normalization"] == {"type": "ct_window", "window": [-57.3, 212.6]}
    assert plan["model"]["inputs"] == [{"name": "CT", "modality": "CT"},
                                       {"name": "PET", "modality": "PET", "normalization": {**ZSCORE, "nonzero": True}}]
    assert any("each is normalised by its modality" in note for note in plan["notes"])
    card = parse_card(card_document(plan), "plan card")
    assert card.preprocessing.normalization_for(0) == Normalization("ct_window", (-57.3, 212.6))
    assert card.preprocessing.normalization_for(1) == Normalization("percentile_zscore", None, 0.5, 99.5, True)


def test_mr_channels_differ_only_where_the_background_is_zero():
    plan = make_plan(fingerprint({"T1": intensity(0.02), "FLAIR": intensity(0.8), "T2": intensity(0.1)}),
                     memory_mb=512)
    assert plan["preprocessing"]["normalization"] == ZSCORE  # T1: noisy background, all voxels count
    assert [i.get("normalization") for i in plan["model"]["inputs"]] == [None, {**ZSCORE, "nonzero": True}, None]
    assert not any("different modalities" in note for note in plan["notes"])


def test_fingerprints_without_the_zero_fraction_plan_as_before():
    old = {"voxels": 100, "percentile_00_5": 1.0, "percentile_99_5": 9.0, "mean": 5.0, "std": 2.0}
    plan = make_plan(fingerprint({"T1": old, "FLAIR": dict(old)}), memory_mb=512)
    assert plan["preprocessing"]["normalization"] == ZSCORE
    assert plan["model"]["inputs"] == [{"name": "T1", "modality": "MR"}, {"name": "FLAIR", "modality": "MR"}]


def write_ct_pet_dataset(root: Path, cases: int = 2) -> Path:
    """CT (noisy air at -800 HU, no exact zeros) + PET (hot sphere on an exactly-zero background)."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "name": "Dataset010_CtPet", "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0, "lesion": 1}, "numTraining": cases, "file_ending": ".nii.gz"}))
    for n in range(cases):
        ct, label = sphere_case((24, 24, 24), SPACING, seed=n)
        pet = np.where(label > 0, 8.0 + np.random.default_rng(n).normal(0, 1, label.shape), 0.0).astype(np.float32)
        for suffix, array in (("_0000", ct), ("_0001", pet)):
            sitk.WriteImage(to_image(array, SPACING), str(root / "imagesTr" / f"case_{n:03d}{suffix}.nii.gz"), True)
        sitk.WriteImage(to_image(label, SPACING), str(root / "labelsTr" / f"case_{n:03d}.nii.gz"), True)
    return root


def test_plan_command_on_ct_and_pet_and_training_preprocessing(tmp_path):
    root = write_ct_pet_dataset(tmp_path / "ds")
    plan_path = tmp_path / "plan.json"
    assert main(["plan", str(root), "-o", str(plan_path), "--memory-mb", "256", "--base-filters", "4",
                 "--max-stages", "3"]) == 0
    plan = read_plan(plan_path)
    zero_fractions = [c["background_zero_fraction"] for c in plan["fingerprint"]["intensities"]]
    assert zero_fractions == [0.0, 1.0]
    window = plan["preprocessing"]["normalization"]["window"]
    assert plan["preprocessing"]["normalization"]["type"] == "ct_window" and 180 < window[0] < window[1] < 420
    assert plan["model"]["inputs"][1]["normalization"] == {**ZSCORE, "nonzero": True}

    # training loads cases through prepare_case with the plan's card: channel i as input i says
    card = parse_card(card_document(plan), "plan card")
    case = load_case(load_dataset(root).sources()[0], card.preprocessing)
    unnormalised = replace(card.preprocessing, normalization=Normalization("none"), input_normalizations=())
    ct, pet = prepare_case(case.volumes, unnormalised).image
    image = case.prepared.image
    np.testing.assert_allclose(image[0], np.clip((ct - window[0]) / (window[1] - window[0]), 0, 1), atol=1e-6)
    body = pet != 0
    lo, hi = np.percentile(pet[body], [0.5, 99.5])
    clipped = np.clip(pet[body], lo, hi)
    np.testing.assert_allclose(image[1][body], (clipped - clipped.mean()) / clipped.std(), atol=1e-4)
    assert np.all(image[1][~body] == 0)
