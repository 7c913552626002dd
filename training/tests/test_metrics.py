"""Metrics against analytic cases: parallel slabs, shifted boxes, offset spheres, empty masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medsegai_training.metrics import label_metrics, summarize, summarize_folds, surface, volume_metrics


def slab(shape, k):
    m = np.zeros(shape, bool)
    m[k] = True
    return m


def ball(shape, centre_mm, radius_mm, spacing):
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre_mm)) <= radius_mm ** 2


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.7, 0.9)])
def test_parallel_slabs_are_exactly_their_distance_apart(spacing):
    a, b = slab((20, 16, 16), 5), slab((20, 16, 16), 8)  # 1-voxel slabs, 3 slices apart
    m = label_metrics(a, b, spacing)
    assert m.dice == 0.0
    assert m.hd95 == pytest.approx(3 * spacing[0]) and m.hd == pytest.approx(3 * spacing[0])
    assert m.assd == pytest.approx(3 * spacing[0])
    assert m.sensitivity == 0.0 and m.volume_error == 0.0


def test_shifted_boxes():
    a = np.zeros((40, 40, 40), bool)
    a[10:30, 10:30, 10:30] = True
    b = np.roll(a, 4, axis=2)  # 4 voxels along i
    spacing = (2.0, 1.0, 0.5)
    m = label_metrics(a, b, spacing)
    assert m.hd == pytest.approx(4 * 0.5)  # the end faces are 4 voxels apart
    assert 0 < m.assd < m.hd95 <= m.hd
    assert m.dice == pytest.approx(16 / 20)  # overlap 16 of 20 voxels along i
    assert m.volume_error == 0.0 and m.sensitivity == pytest.approx(0.8)
    assert m.specificity == pytest.approx(1 - 20 * 20 * 4 / (40 ** 3 - 20 ** 3))
    assert m.volume_pred_ml == pytest.approx(20 ** 3 * 2.0 * 1.0 * 0.5 / 1000)
    same = label_metrics(a, a, spacing)
    assert (same.dice, same.hd95, same.hd, same.assd, same.volume_error) == (1.0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0)])
def test_offset_spheres(spacing):
    radius, offset = 10.0, 4.0
    shape = tuple(int(48 / s) for s in spacing)
    centre = np.array([24.0, 24.0, 24.0])
    a = ball(shape, centre, radius, spacing)
    b = ball(shape, centre + [0.0, 0.0, offset], radius, spacing)
    m = label_metrics(a, b, spacing)
    # two spheres of radius R, centres d apart: intersection pi (4R + d)(2R - d)^2 / 12
    intersection = math.pi * (4 * radius + offset) * (2 * radius - offset) ** 2 / 12
    assert m.dice == pytest.approx(intersection / (4 / 3 * math.pi * radius ** 3), abs=0.02)
    # farthest surface point: the pole opposite the shift, exactly d from the other sphere
    assert m.hd == pytest.approx(offset, abs=max(spacing))
    assert m.hd95 <= m.hd and m.hd95 > 0.5 * offset
    # mean of |R - |p - c_B|| over the sphere surface, d << R: about d / 2
    assert m.assd == pytest.approx(offset / 2, abs=0.6 * max(spacing))
    assert abs(m.volume_error) < 0.03


def test_empty_masks_have_defined_values():
    empty, full = np.zeros((8, 8, 8), bool), np.zeros((8, 8, 8), bool)
    full[2:5, 2:5, 2:5] = True
    both = label_metrics(empty, empty, (1, 1, 1))
    assert (both.dice, both.hd95, both.assd, both.sensitivity, both.volume_error) == (1.0, 0.0, 0.0, None, None)
    assert both.specificity == 1.0
    missed = label_metrics(empty, full, (1, 1, 1))
    assert (missed.dice, missed.hd95, missed.assd, missed.sensitivity, missed.volume_error) == (0.0, None, None, 0.0,
                                                                                               -1.0)
    spurious = label_metrics(full, empty, (1, 1, 1))
    assert (spurious.dice, spurious.hd95, spurious.sensitivity, spurious.volume_error) == (0.0, None, None, None)
    assert spurious.specificity == pytest.approx(1 - 27 / 512)


def test_surface_counts_the_border_as_outside():
    m = np.ones((5, 5, 5), bool)
    assert surface(m).sum() == 5 ** 3 - 3 ** 3


def test_label_maps_and_summary():
    reference = np.zeros((20, 20, 20), np.uint8)
    reference[2:8, 2:8, 2:8] = 1
    reference[12:18, 12:18, 12:18] = 2
    prediction = reference.copy()
    prediction[prediction == 2] = 0  # label 2 missed
    per_label = volume_metrics(prediction, reference, {"a": 1, "b": 2}, (1.0, 1.0, 1.0))
    assert per_label["a"].dice == 1.0 and per_label["b"].dice == 0.0 and per_label["b"].hd95 is None
    summary = summarize([per_label, {k: v.as_dict() for k, v in per_label.items()}])
    assert summary["a"]["dice"]["mean"] == 1.0 and summary["a"]["dice"]["n"] == 2
    assert summary["b"]["hd95"] == {"n": 0, "undefined": 2}


def test_fold_summary_is_over_fold_means_and_skips_undefined_folds():
    cube, empty = np.zeros((6, 6, 6), int), np.zeros((6, 6, 6), int)
    cube[1:4, 1:4, 1:4] = 1
    both, reference_empty = (volume_metrics(cube, r, {"a": 1}, (1, 1, 1)) for r in (cube, empty))
    folds = [summarize([both, reference_empty]), summarize([reference_empty])]
    overall = summarize_folds(folds)["a"]
    assert overall["dice"] == {"mean": 0.25, "std": 0.25, "n": 2}  # fold means 0.5 and 0.0
    assert overall["hd95"] == {"mean": 0.0, "std": 0.0, "n": 1}  # undefined in every case of fold 1
    assert overall["sensitivity"]["n"] == 1
