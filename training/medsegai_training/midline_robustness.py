"""How far the mid-sagittal plane of :mod:`MedSegAILib.lateralization` moves when the head is turned
and when a one-sided false positive is added, on the six deep grey structure pairs of the
Neuromorphometrics atlas (the brain-structure model's training labels, never Colin27 or AAL) in
MNI space. It prints numbers; it passes or fails nothing.

    .venv/bin/python -m medsegai_training.midline_robustness

Each case is the atlas, paired structures under their right value as the network predicts them,
turned about the grid centre (nearest neighbour), optionally with a ball of thalamus class in the
right parietal cortex (the kind of false positive the brain-structure model made on Colin27).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from MedSegAILib.image import read_volume, resample
from MedSegAILib.lateralization import split_at_midline

from .brain_structures import atlas_mapping, lateral_pairs
from .reference_data import DEEPMRIPREP, DEFAULT_CACHE, NILEARN, fetch

TURNS = ((0, 0), (5, 0), (10, 0), (15, 0), (0, 10), (10, 10))  # (yaw, roll) in degrees
FALSE_POSITIVE_ML = (0.0, 8.6, 15.0)
FALSE_POSITIVE_RAS = (27.0, -41.0, 50.0)  # right superior parietal cortex


def turned(labels: np.ndarray, yaw_deg: float, roll_deg: float) -> tuple[np.ndarray, sitk.Transform]:
    """``labels`` (``(k, j, i)``) turned about the grid centre, ``yaw`` about the k axis and ``roll``
    about the j axis (on the RAS template grid: about z and y), nearest neighbour; and the transform
    from the turned grid's indices to the original's."""
    image = sitk.GetImageFromArray(labels)
    transform = sitk.Euler3DTransform()
    transform.SetCenter([(n - 1) / 2 for n in labels.shape[::-1]])
    transform.SetRotation(0.0, np.deg2rad(roll_deg), np.deg2rad(yaw_deg))
    return sitk.GetArrayFromImage(sitk.Resample(image, image, transform, sitk.sitkNearestNeighbor, 0)), transform


def true_plane_i(transform: sitk.Transform, plane_i: float, j: float, k: float) -> float:
    """The i index, at ``(j, k)`` of the turned grid, where the turned plane ``i = plane_i`` of the
    original grid passes (the transform is affine, so two points give the line)."""
    at = [transform.TransformPoint((i, j, k))[0] for i in (0.0, 1.0)]
    return (plane_i - at[0]) / (at[1] - at[0])


def add_ball(labels: np.ndarray, ijk_to_ras: np.ndarray, centre_ras, volume_ml: float, value: int) -> None:
    """A ball of ``volume_ml`` at ``centre_ras`` painted with ``value`` (1 mm isotropic grid)."""
    centre = (np.linalg.inv(ijk_to_ras) @ [*centre_ras, 1.0])[:3]
    radius = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    k, j, i = np.ogrid[:labels.shape[0], :labels.shape[1], :labels.shape[2]]
    labels[(i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2 < radius ** 2] = value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medsegai_training.midline_robustness",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data-cache", type=Path, default=DEFAULT_CACHE, help="reference data")
    args = p.parse_args(argv)
    template = read_volume(fetch(NILEARN, args.data_cache)["mni152_t1"])
    atlas = resample(read_volume(fetch(DEEPMRIPREP, args.data_cache)["neuromorphometrics"]), template.grid, "nearest")
    labels = atlas_mapping("neuromorphometrics").apply(atlas.array)
    pairs = [(right, left) for right, left in lateral_pairs()]
    for right, left in pairs:
        labels[labels == left] = right
    thalamus = pairs[-1][0]
    to_i = lambda x: (np.linalg.inv(template.ijk_to_ras) @ [x, 0.0, 0.0, 1.0])[0]  # noqa: E731 (RAS axes = grid axes)
    clean_x = split_at_midline(labels.copy(), template.ijk_to_ras, pairs)
    print(f"plane of the atlas as it is: x = {clean_x:.1f} mm, taken as the truth for the turned copies")
    print("| yaw deg | roll deg | one-sided false positive mL | plane x mm | true x at the structures mm | error mm |")
    print("|---|---|---|---|---|---|")
    for yaw, roll in TURNS:
        base, transform = turned(labels, yaw, roll)
        k, j, _ = (float(c.mean()) for c in np.nonzero(base))
        true_x = clean_x + true_plane_i(transform, to_i(clean_x), j, k) - to_i(clean_x)
        for volume_ml in FALSE_POSITIVE_ML:
            case = base.copy()
            if volume_ml:
                add_ball(case, template.ijk_to_ras, FALSE_POSITIVE_RAS, volume_ml, thalamus)
            x = split_at_midline(case, template.ijk_to_ras, pairs)
            print(f"| {yaw} | {roll} | {volume_ml:g} | {x:.1f} | {true_x:.1f} | {abs(x - true_x):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
