"""Auto-configuration: fingerprint -> plan (a pure function), and the plan as a valid model card."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsegai_training.cli import train_config
from medsegai_training.dataset import load_dataset
from medsegai_training.planning import (Fingerprint, card_document, compute_fingerprint, estimate_training_bytes,
                                        make_plan, modality_of, network_for_patch, read_plan, target_spacing,
                                        total_strides, write_plan)
from MedSegAILib.bundle import parse_card
from msd_support import write_dataset


def fingerprint(spacings, sizes, channel="CT", labels=None, intensity=None) -> Fingerprint:
    return Fingerprint("Dataset007_Test", [channel], labels or {"background": 0, "liver": 1, "tumour": 2},
                       [f"c{i}" for i in range(len(spacings))], [list(s) for s in spacings], [list(s) for s in sizes],
                       [intensity or {"voxels": 100, "percentile_00_5": -57.3, "percentile_99_5": 212.6,
                                      "mean": 90.0, "std": 40.0}])


def test_target_spacing_is_the_median_or_the_10th_percentile_on_the_coarse_axis():
    assert target_spacing([[1, 1, 2], [1.2, 1.2, 2.5], [0.8, 0.8, 3]]) == [1.0, 1.0, 2.5]
    # anisotropic (5 / 0.8 > 3): z takes its 10th percentile
    spacings = [[0.8, 0.8, 5.0]] * 8 + [[0.8, 0.8, 1.0]] * 2
    assert target_spacing(spacings) == pytest.approx([0.8, 0.8, float(np.percentile([5.0] * 8 + [1.0] * 2, 10))])
    # ... but never finer than the other axes
    assert target_spacing([[2.0, 2.0, 7.0]] * 6 + [[2.0, 2.0, 0.5]] * 4)[2] == 2.0


def test_network_strides_follow_size_and_anisotropy():
    filters, strides = network_for_patch((128, 128, 128), (1, 1, 1), base_filters=32, max_filters=320, max_stages=5)
    assert filters == [32, 64, 128, 256, 320]
    assert strides == [[1, 1, 1]] + [[2, 2, 2]] * 4
    # z is small: halved while >= 8 voxels (16 -> 8 -> 4), then no more
    _, strides = network_for_patch((64, 64, 16), (1, 1, 1), max_stages=5)
    assert strides == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 1], [2, 2, 1]]
    # thick slices: z is not downsampled until the in-plane voxels reach half its size
    _, strides = network_for_patch((128, 128, 32), (0.8, 0.8, 4.0), max_stages=5)
    assert strides == [[1, 1, 1], [2, 2, 1], [2, 2, 1], [2, 2, 2], [2, 2, 2]]
    _, strides = network_for_patch((8, 8, 8), (1, 1, 1), max_stages=5)
    assert strides == [[1, 1, 1], [2, 2, 2]]


def test_plan_fits_the_memory_budget_and_divides_by_the_strides():
    fp = fingerprint([[0.8, 0.8, 2.5]] * 5, [[512, 512, 120]] * 5)
    small = make_plan(fp, memory_mb=1024)
    large = make_plan(fp, memory_mb=8192)
    for plan, budget in ((small, 1024), (large, 8192)):
        t, n = plan["training"], plan["network"]["args"]
        assert plan["memory"]["estimated_training_mb"] <= budget
        assert all(p % m == 0 for p, m in zip(t["patch_size"], total_strides(n["strides"])))
        assert len(n["filters"]) == len(n["strides"]) <= 5 and n["out_channels"] == 3
        assert t["batch_size"] >= 2 and plan["inference"]["patch_size"] == t["patch_size"]
    assert np.prod(large["training"]["patch_size"]) > np.prod(small["training"]["patch_size"])
    assert small["preprocessing"]["target_spacing"] == [0.8, 0.8, 2.5]
    # the physical extent of the patch stays roughly balanced (largest mm axis is shrunk first)
    extent = np.array(small["training"]["patch_size"]) * [0.8, 0.8, 2.5]
    assert extent.max() / extent.min() < 2.5


def test_batch_grows_with_budget_but_not_past_5_percent_of_the_data():
    fp = fingerprint([[1, 1, 1]] * 100, [[64, 64, 64]] * 100)
    plan = make_plan(fp, memory_mb=64000, base_filters=8, max_batch=64)
    patch = np.prod(plan["training"]["patch_size"])
    assert plan["training"]["patch_size"] == [64, 64, 64]
    assert 2 < plan["training"]["batch_size"] <= 0.05 * 100 * 64 ** 3 / patch
    few = make_plan(fingerprint([[1, 1, 1]] * 3, [[64, 64, 64]] * 3), memory_mb=64000, base_filters=8)
    assert few["training"]["batch_size"] == 2  # minimum


def test_memory_estimate_grows_with_patch_batch_and_filters():
    f, s = network_for_patch((64, 64, 64), (1, 1, 1))
    est = lambda patch=(64, 64, 64), batch=2, filters=f: estimate_training_bytes(patch, batch, filters, s)  # noqa: E731
    per_sample = est(batch=3) - est(batch=2)
    assert per_sample > 0 and est(batch=4) - est(batch=2) == pytest.approx(2 * per_sample, rel=1e-6)  # linear in batch
    assert est(patch=(128, 64, 64)) - est() == pytest.approx(2 * per_sample, rel=0.01)  # activations scale with voxels
    assert est(filters=[2 * x for x in f]) > est()


def test_normalisation_by_modality():
    ct = make_plan(fingerprint([[1, 1, 1]] * 3, [[64, 64, 64]] * 3), memory_mb=512)
    assert ct["preprocessing"]["normalization"] == {"type": "ct_window", "window": [-57.3, 212.6]}
    assert ct["model"]["modality"] == "CT"
    mr = make_plan(fingerprint([[1, 1, 1]] * 3, [[64, 64, 64]] * 3, channel="T2"), memory_mb=512)
    assert mr["preprocessing"]["normalization"] == {"type": "percentile_zscore", "lower": 0.5, "upper": 99.5}
    assert mr["model"]["modality"] == "MR"
    assert [modality_of(x) for x in ("CT", "ADC", "FLAIR", "PET", "CBCT", "whatever")] == \
        ["CT", "MR", "MR", "PET", "CBCT", "other"]


def test_plan_is_pure_json_and_a_valid_card(tmp_path):
    fp = fingerprint([[1, 1, 1]] * 3, [[64, 64, 64]] * 3)
    plan = make_plan(fp.as_dict(), memory_mb=512)
    assert plan == make_plan(fp, memory_mb=512)  # same input, same plan
    path = write_plan(plan, tmp_path / "plan.json")
    assert read_plan(path) == json.loads(json.dumps(plan))
    card = parse_card(card_document(read_plan(path)), "plan card")
    assert [x.name for x in card.labels] == ["liver", "tumour"] and card.num_classes == 3
    assert card.preprocessing.target_spacing == (1.0, 1.0, 1.0)
    # a cut volume is padded by repeating its border, and validation in training pads the same way
    assert card.inference.padding == "replicate"
    assert train_config(plan).validation_padding == "replicate"
    plan["inference"]["padding"] = "constant"
    assert train_config(plan).validation_padding == "constant"
    with pytest.raises(ValueError, match="not a MedSegAI training plan"):
        (tmp_path / "x.json").write_text("{}")
        read_plan(tmp_path / "x.json")


def test_fingerprint_of_a_generated_dataset(tmp_path):
    root = write_dataset(tmp_path / "ds", cases=3, spacing=(1.5, 1.5, 2.0))
    fp = compute_fingerprint(load_dataset(root))
    assert fp.cases == ["case_000", "case_001", "case_002"]
    assert fp.spacings == [[1.5, 1.5, 2.0]] * 3 and fp.sizes == [[24, 24, 24]] * 3
    intensity = fp.intensities[0]
    # foreground is the bright sphere: 300 HU with noise sigma 30
    assert 280 < intensity["mean"] < 320 and 20 < intensity["std"] < 40
    assert 180 < intensity["percentile_00_5"] < 260 and 340 < intensity["percentile_99_5"] < 420
    plan = make_plan(fp, memory_mb=256, base_filters=4, max_stages=3)
    assert plan["network"]["args"]["filters"] == [4, 8, 16]
    assert plan["training"]["patch_size"] == [24, 24, 24]
    assert plan["preprocessing"]["normalization"]["type"] == "ct_window"
