"""Gamma contrast change: each channel is min-max normalised, raised to ``gamma`` and returned to
its original range, so the darkest and brightest values stay where they were.

Example:
    >>> image = np.linspace(0, 2, 5, dtype=np.float32).reshape(1, 5, 1, 1)
    >>> apply_gamma(image, GammaParams(2.0)).ravel().tolist()
    [0.0, 0.125, 0.5, 1.125, 2.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._checks import check_range


@dataclass(frozen=True)
class GammaParams:
    gamma: float = 1.0


def sample_gamma(rng: np.random.Generator, gamma_range: Sequence[float]) -> GammaParams:
    """``gamma`` log-uniform in ``gamma_range`` (so ``(0.7, 1/0.7)`` darkens and brightens the
    mid-tones equally often)."""
    check_range("gamma_range", gamma_range, positive=True)
    low, high = gamma_range
    return GammaParams(math.exp(rng.uniform(math.log(low), math.log(high))))


def apply_gamma(image: np.ndarray, params: GammaParams) -> np.ndarray:
    """Gamma on each channel of ``image`` (C, X, Y, Z); a constant channel stays as it is."""
    low = image.min(axis=(1, 2, 3), keepdims=True)
    span = image.max(axis=(1, 2, 3), keepdims=True) - low
    span[span == 0] = 1
    out = image - low
    out /= span
    np.power(out, np.float32(params.gamma), out=out)
    out *= span
    out += low
    return out
