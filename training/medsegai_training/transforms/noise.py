"""Additive Gaussian noise.

The noise realisation is as large as the image, so it is not stored in the parameters: it is
drawn from the generator passed to :func:`apply_noise` (reproducible for a given generator state).

Example:
    >>> rng = np.random.default_rng(0)
    >>> noisy = apply_noise(np.zeros((1, 8, 8, 8), np.float32), NoiseParams(0.1), rng)
    >>> noisy.dtype, round(float(noisy.std()), 1)
    (dtype('float32'), 0.1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import check_non_negative


@dataclass(frozen=True)
class NoiseParams:
    std: float = 0.0  # standard deviation, in the image's units


def sample_noise(rng: np.random.Generator, max_std: float) -> NoiseParams:
    """Standard deviation uniform in ``[0, max_std]``."""
    check_non_negative("max_std", max_std)
    return NoiseParams(float(rng.uniform(0, max_std)))


def apply_noise(image: np.ndarray, params: NoiseParams, rng: np.random.Generator) -> np.ndarray:
    """``image`` plus Gaussian noise of ``params.std`` drawn from ``rng``."""
    return image + rng.normal(0.0, params.std, size=image.shape).astype(np.float32)
