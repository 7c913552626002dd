"""The resolution ceiling of a model grid: how much Dice the target spacing alone costs.

A network that works at a target spacing learns the reference labels as they look on its model grid
(nearest neighbour, :meth:`~MedSegAILib.preprocessing.spatial.SpatialPlan.labels_to_model`), and the
pipeline brings its class scores back to the scan by linear interpolation and argmax
(:meth:`~MedSegAILib.preprocessing.spatial.SpatialPlan.labels_to_source`). Sent through that same
round trip, the reference itself keeps a Dice below 1 wherever the structure is thin or its
boundary finer than the model grid: no network at that spacing can score higher. Computed before
training, it tells whether a disappointing score is the network's or the grid's.

Example: the brain-extraction reference of the 1 mm Colin27 head keeps Dice 0.985 at 3 mm and 0.989
at 2.5 mm; the 3 mm model scored 0.977 on that very head, so the network, not the grid, is the larger
loss there. From the repository root::

    .venv/bin/python -m medsegai_training.resolution_ceiling LABELS.nii.gz --spacing 3 --spacing 2.5
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterable, Sequence

import numpy as np
from MedSegAILib.errors import MedSegAIError
from MedSegAILib.image import Volume, read_volume
from MedSegAILib.preprocessing.spatial import SpatialPlan

from .evaluation import dice

# coarser grids than the planned one that the plan also reports: what a faster model would give up
COARSER_FACTORS = (1.5, 2.0)


def round_trip(labels: Volume, target_spacing: Sequence[float], value: int) -> np.ndarray:
    """Label ``value`` of ``labels`` on the model grid of ``target_spacing`` and back on the labels'
    own grid, the way a perfect network's scores would come back (a boolean ``(k, j, i)`` mask).

    One label against the rest keeps the score array at two channels whatever the label count.
    """
    plan = SpatialPlan.for_grid(labels.grid, target_spacing)
    on_model = plan.labels_to_model(labels) == value
    scores = np.stack([~on_model, on_model]).astype(np.float32)
    return plan.labels_to_source(scores, np.array([0, 1])) == 1


def label_ceilings(labels: Volume, target_spacing: Sequence[float], values: Iterable[int]) -> dict[int, float]:
    """Dice of each label value after :func:`round_trip` (1.0 for a value absent from ``labels``)."""
    return {int(v): dice(round_trip(labels, target_spacing, v), labels.array == v, True) for v in values}


def dataset_ceilings(label_volumes: Sequence[Volume], spacings: Sequence[Sequence[float]],
                     labels: dict[str, int]) -> list[dict]:
    """Per spacing, each label's mean ceiling over ``label_volumes`` (a plan's ``resolution_ceiling``)."""
    rows = []
    for spacing in spacings:
        per_case = [label_ceilings(v, spacing, labels.values()) for v in label_volumes]
        rows.append({"spacing": [round(float(s), 4) for s in spacing],
                     "dice": {name: round(float(np.mean([c[value] for c in per_case])), 4)
                              for name, value in labels.items()}})
    return rows


def candidate_spacings(target: Sequence[float]) -> list[list[float]]:
    """The planned spacing and the coarser ones of :data:`COARSER_FACTORS`."""
    return [list(target)] + [[s * f for s in target] for f in COARSER_FACTORS]


def ceiling_notes(rows: list[dict], threshold: float = 0.95) -> list[str]:
    """Plan notes for the labels whose ceiling at the planned spacing (first row) is below ``threshold``."""
    low = {name: d for name, d in rows[0]["dice"].items() if d < threshold} if rows else {}
    if not low:
        return []
    listed = ", ".join(f"{name} {d:.3f}" for name, d in sorted(low.items(), key=lambda x: x[1]))
    return [f"at the target spacing {rows[0]['spacing']} mm the reference itself keeps only Dice {listed} after the "
            "round trip to the model grid (resolution_ceiling): no network at this spacing scores higher; a finer "
            "target_spacing raises the ceiling"]


def plan_ceiling(plan: dict, label_volumes: Sequence[Volume], case_names: Sequence[str]) -> dict:
    """The ``resolution_ceiling`` section of a training plan, from a few of its cases' label maps."""
    labels = {name: value for name, value in plan["dataset"]["labels"].items() if value != 0}
    rows = dataset_ceilings(label_volumes, candidate_spacings(plan["preprocessing"]["target_spacing"]), labels)
    return {"how": "Dice of the reference labels after the round trip a perfect network makes: nearest neighbour "
                   "onto the model grid, linear class scores and argmax back (medsegai_training.resolution_ceiling)",
            "cases": list(case_names), "by_spacing": rows}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medsegai_training.resolution_ceiling",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("labels", nargs="+", help="label maps (NIfTI, NRRD, ...)")
    p.add_argument("--spacing", action="append", nargs="+", type=float, required=True, metavar="MM",
                   help="target spacing: one value (isotropic) or three (x y z); repeat for several")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spacings = []
    for s in args.spacing:
        if len(s) not in (1, 3) or min(s) <= 0:
            print(f"error: --spacing takes one or three positive numbers, got {s}", file=sys.stderr)
            return 2
        spacings.append(s * 3 if len(s) == 1 else s)
    for path in args.labels:
        try:
            volume = read_volume(path)
        except MedSegAIError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        values = [int(v) for v in np.unique(volume.array) if v != 0]
        for spacing in spacings:
            ceilings = label_ceilings(volume, spacing, values)
            shown = ", ".join(f"{v}: {d:.4f}" for v, d in ceilings.items())
            print(f"{path} at {spacing} mm: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
