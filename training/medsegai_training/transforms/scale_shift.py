"""Global intensity scale and shift: ``image * scale + shift``.

Example:
    >>> apply_scale_shift(np.ones((1, 2, 2, 2), np.float32), ScaleShiftParams(2.0, -0.5)).max()
    np.float32(1.5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._checks import check_non_negative, check_range


@dataclass(frozen=True)
class ScaleShiftParams:
    scale: float = 1.0
    shift: float = 0.0  # in the image's (normalised) units


def sample_scale_shift(rng: np.random.Generator, scale_range: Sequence[float], max_shift: float) -> ScaleShiftParams:
    """Scale uniform in ``scale_range``, then shift uniform in ``[-max_shift, max_shift]``."""
    check_range("scale_range", scale_range)
    check_non_negative("max_shift", max_shift)
    scale = float(rng.uniform(*scale_range))
    return ScaleShiftParams(scale, float(rng.uniform(-max_shift, max_shift)))


def apply_scale_shift(image: np.ndarray, params: ScaleShiftParams) -> np.ndarray:
    """``image * scale + shift`` in float32 arithmetic."""
    out = image * np.float32(params.scale)
    out += np.float32(params.shift)
    return out
