"""Preprocessing shared by inference and training: one code path, so they cannot drift apart."""

from .normalization import ct_window, normalize, percentile_zscore
from .pipeline import PreparedCase, prepare_case
from .spatial import SpatialPlan

__all__ = ["PreparedCase", "SpatialPlan", "ct_window", "normalize", "percentile_zscore", "prepare_case"]
