"""Dice per label, measured through the real segmentation pipeline.

The prediction comes from ``MedSegAILib.pipeline.segment`` run on an exported bundle -- the same
preprocessing, sliding window, resampling back to the input grid and post-processing a user gets
-- and is compared with the reference on the input's own grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from MedSegAILib.bundle import Bundle
from MedSegAILib.pipeline import SegmentationOptions, segment

from .data import LoadedCase


def dice(prediction: np.ndarray, reference: np.ndarray, value: int) -> float:
    """Dice of label ``value``; 1.0 when both are empty.

    Example:
        >>> dice(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 1)
        0.6666666666666666
    """
    p, r = prediction == value, reference == value
    denominator = int(p.sum()) + int(r.sum())
    return 1.0 if denominator == 0 else 2.0 * int((p & r).sum()) / denominator


@dataclass
class Evaluation:
    case: str
    dice: dict[str, float]  # label name -> Dice
    seconds: float  # wall time of segment()
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def mean_dice(self) -> float:
        return float(np.mean(list(self.dice.values()))) if self.dice else float("nan")


def evaluate_case(bundle: Bundle, case: LoadedCase, threads: int | None = None) -> Evaluation:
    """Segment ``case`` with ``bundle`` on the CPU and score every label against its reference."""
    start = time.perf_counter()
    result = segment(case.volumes, bundle, SegmentationOptions(device="cpu", threads=threads, allow_empty=True))
    seconds = time.perf_counter() - start
    if not result.labels.grid.same_as(case.reference.grid):
        raise AssertionError("segment() returned labels off the input grid")
    scores = {label.name: dice(result.labels.array, case.reference.array, label.value) for label in bundle.card.labels}
    return Evaluation(case.name, scores, seconds, dict(result.seconds), list(result.warnings))
