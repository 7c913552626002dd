"""Gaussian blur with per-axis widths in millimetres (the same physical blur at any spacing).

Example:
    >>> image = np.zeros((1, 21, 21, 21), np.float32); image[0, 10, 10, 10] = 1
    >>> blurred = apply_blur(image, BlurParams((2.0, 2.0, 2.0)), spacing=(1.0, 1.0, 2.0))
    >>> round(float(blurred.sum()), 3), bool(blurred[0, 10, 10, 10] < 1)
    (1.0, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ._checks import check_range


@dataclass(frozen=True)
class BlurParams:
    sigma_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # Gaussian standard deviation per axis


def sample_blur(rng: np.random.Generator, sigma_range_mm: Sequence[float]) -> BlurParams:
    """An independent width per axis, uniform in ``sigma_range_mm``."""
    check_range("sigma_range_mm", sigma_range_mm, minimum=0.0)
    return BlurParams(tuple(float(s) for s in rng.uniform(*sigma_range_mm, size=3)))


def apply_blur(image: np.ndarray, params: BlurParams, spacing: Sequence[float]) -> np.ndarray:
    """Blur each channel of ``image`` (C, X, Y, Z); returns float32."""
    sigma_voxels = np.asarray(params.sigma_mm, dtype=float) / np.asarray(spacing, dtype=float)
    out = np.empty(image.shape, dtype=np.float32)
    for channel, blurred in zip(image, out):
        ndimage.gaussian_filter(channel, sigma_voxels, output=blurred, mode="nearest")
    return out
