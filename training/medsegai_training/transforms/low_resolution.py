"""Low-resolution simulation: resample to a coarser spacing along some axes and back, so the
image looks acquired at that resolution (thick slices, coarse in-plane matrix) on the same grid.

Along each coarsened axis the image is averaged into fewer samples with a Gaussian slice profile
whose full width at half maximum is the new spacing, then linearly interpolated back; the two
steps are one ``n x n`` matrix per axis (see :mod:`._separable`).

Example:
    >>> image = np.random.default_rng(0).random((1, 32, 32, 32), dtype=np.float32)
    >>> params = LowResolutionParams((0.0, 0.0, 4.0))  # 4 mm slices, x and y unchanged
    >>> coarse = apply_low_resolution(image, params, spacing=(1.0, 1.0, 1.0))
    >>> coarse.shape, bool(coarse.std() < image.std())
    ((1, 32, 32, 32), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ._checks import check_choice, check_range
from ._separable import apply_separable

AXES_MODES = ("one", "all", "random")
"""``one``: one random axis is coarsened (thick slices); ``all``: every axis to the same spacing;
``random``: either, with equal probability."""

_FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))


@dataclass(frozen=True)
class LowResolutionParams:
    """Simulated spacing per axis in mm; an axis whose value is not coarser than the image's
    spacing (e.g. 0) is left as it is."""

    spacing_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)


def sample_low_resolution(rng: np.random.Generator, spacing_range_mm: Sequence[float],
                          axes: str = "random") -> LowResolutionParams:
    """A spacing uniform in ``spacing_range_mm`` for the axes chosen by ``axes`` (see :data:`AXES_MODES`)."""
    check_range("spacing_range_mm", spacing_range_mm, positive=True)
    check_choice("axes", axes, AXES_MODES)
    if axes == "random":
        axes = "one" if rng.random() < 0.5 else "all"
    spacing = float(rng.uniform(*spacing_range_mm))
    if axes == "all":
        return LowResolutionParams((spacing,) * 3)
    target = [0.0, 0.0, 0.0]
    target[int(rng.integers(3))] = spacing
    return LowResolutionParams(tuple(target))


@lru_cache(maxsize=256)
def low_resolution_matrix(n: int, n_low: int) -> np.ndarray:
    """``n x n`` float32 matrix: down to ``n_low`` samples (Gaussian profile) and linearly back up."""
    factor = n / n_low
    centres = (np.arange(n_low) + 0.5) * factor - 0.5  # low-res sample centres, in high-res voxels
    sigma = factor / _FWHM_PER_SIGMA
    down = np.exp(-0.5 * ((np.arange(n)[None, :] - centres[:, None]) / sigma) ** 2)
    down /= down.sum(axis=1, keepdims=True)
    positions = np.clip((np.arange(n) + 0.5) / factor - 0.5, 0, n_low - 1)  # high-res voxels, in low-res samples
    below = np.floor(positions).astype(int)
    above = np.minimum(below + 1, n_low - 1)
    fraction = positions - below
    up = np.zeros((n, n_low))
    np.add.at(up, (np.arange(n), below), 1 - fraction)
    np.add.at(up, (np.arange(n), above), fraction)
    matrix = (up @ down).astype(np.float32)
    matrix.flags.writeable = False  # cached and shared
    return matrix


def apply_low_resolution(image: np.ndarray, params: LowResolutionParams, spacing: Sequence[float]) -> np.ndarray:
    """Simulate ``params.spacing_mm`` on ``image`` (C, X, Y, Z) of voxel ``spacing``; same shape, float32."""
    matrices = []
    for n, current, target in zip(image.shape[1:], spacing, params.spacing_mm):
        n_low = max(1, int(round(n * current / target))) if target > current else n
        matrices.append(low_resolution_matrix(n, n_low) if n_low < n else None)
    return apply_separable(np.asarray(image, dtype=np.float32), matrices)
