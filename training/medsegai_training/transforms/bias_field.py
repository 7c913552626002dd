"""Smooth multiplicative bias field (MRI coil inhomogeneity): ``image * exp(smooth log-field)``.

The log-field is drawn on a coarse control grid spanning the volume and spread by a cubic
B-spline, so the field is positive, smooth, and within ``exp(+-max_log_amplitude)``.

Example:
    >>> params = sample_bias_field(np.random.default_rng(0), control_points=4, max_log_amplitude=0.3)
    >>> field = bias_field(params, (32, 32, 32))
    >>> bool(field.min() >= np.exp(-0.3) and field.max() <= np.exp(0.3))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._checks import check_control_points, check_non_negative
from ._separable import upsample_control_grid


@dataclass(frozen=True, eq=False)
class BiasFieldParams:
    log_control: np.ndarray  # (cx, cy, cz) natural-log field values at the control points


def sample_bias_field(rng: np.random.Generator, control_points: int, max_log_amplitude: float) -> BiasFieldParams:
    """Control values uniform in ``[-max_log_amplitude, max_log_amplitude]`` on a ``control_points``^3 grid."""
    check_control_points("control_points", control_points)
    check_non_negative("max_log_amplitude", max_log_amplitude)
    grid = rng.uniform(-max_log_amplitude, max_log_amplitude, (int(control_points),) * 3)
    return BiasFieldParams(grid.astype(np.float32))


def bias_field(params: BiasFieldParams, shape: Sequence[int]) -> np.ndarray:
    """The multiplicative field (float32, positive) on a grid of ``shape``."""
    return np.exp(upsample_control_grid(params.log_control, shape))


def apply_bias_field(image: np.ndarray, params: BiasFieldParams) -> np.ndarray:
    """``image`` (C, X, Y, Z) times the field (the same field for every channel)."""
    return image * bias_field(params, image.shape[1:])
