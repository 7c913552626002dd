"""Intensity normalisation, one function per scheme named in the model card."""

from __future__ import annotations

import numpy as np

from ..bundle.card import Normalization


def ct_window(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip Hounsfield units to ``[low, high]`` and scale to ``[0, 1]``."""
    out = np.clip(array.astype(np.float32, copy=False), low, high)
    out -= low
    out /= high - low
    return out


def percentile_zscore(array: np.ndarray, lower: float = 0.5, upper: float = 99.5, nonzero: bool = False) -> np.ndarray:
    """Clip to the ``[lower, upper]`` percentiles, then z-score (MR, arbitrary units).

    With ``nonzero`` the statistics come from non-zero voxels only and zeros stay zero, as
    for skull-stripped images whose background is exactly 0.
    """
    data = array.astype(np.float32, copy=True)
    mask = data != 0 if nonzero else np.ones(data.shape, dtype=bool)
    values = data[mask]
    if values.size == 0:
        return np.zeros_like(data)
    lo, hi = np.percentile(values, [lower, upper])
    np.clip(data, lo, hi, out=data)
    values = data[mask]
    std = float(values.std())
    data -= float(values.mean())
    data /= std if std > 1e-8 else 1.0
    if nonzero:
        data[~mask] = 0.0
    return data


def normalize(array: np.ndarray, spec: Normalization) -> np.ndarray:
    """One channel normalised as ``spec`` says (a card input's normalisation, or the card default)."""
    if spec.type == "ct_window":
        assert spec.window is not None
        return ct_window(array, *spec.window)
    if spec.type == "percentile_zscore":
        return percentile_zscore(array, spec.lower, spec.upper, spec.nonzero)
    if spec.type == "none":
        return array.astype(np.float32, copy=False)
    raise ValueError(f"unknown normalization {spec.type!r}")
