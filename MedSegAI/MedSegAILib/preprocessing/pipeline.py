"""From input volumes (and optionally a label map) to the network's input, as the card says."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bundle.card import Preprocessing
from ..image import Volume
from .normalization import normalize
from .spatial import SpatialPlan


@dataclass
class PreparedCase:
    """Network input ``image`` ``(C, X, Y, Z)`` float32 on the model grid (RAS-aligned axes, MONAI
    layout), the optional ``labels`` ``(X, Y, Z)`` on the same grid, and the plan to go back."""

    image: np.ndarray
    plan: SpatialPlan
    labels: np.ndarray | None = None


def to_network_layout(array_kji: np.ndarray) -> np.ndarray:
    """``(..., k, j, i)`` -> ``(..., i, j, k)``: MONAI and the networks index x, y, z."""
    return np.ascontiguousarray(np.moveaxis(array_kji, (-1, -3), (-3, -1)))


def from_network_layout(array_ijk: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(array_ijk, (-1, -3), (-3, -1)))


def prepare_case(volumes: list[Volume], spec: Preprocessing, labels: Volume | None = None) -> PreparedCase:
    """Reorient (lossless), resample to the model spacing and normalise every input channel.

    The first volume defines the grid; further volumes (other modalities) are resampled onto it
    in physical space. Volume ``i`` is normalised with ``spec.normalization_for(i)``: its card
    input's own normalisation or the card default. ``labels`` (training) must lie on the first
    volume's grid.
    """
    if spec.input_normalizations and len(volumes) != len(spec.input_normalizations):
        # a count mismatch would pair channels with another input's normalisation
        raise ValueError(f"the model takes {len(spec.input_normalizations)} input(s), got {len(volumes)} volume(s)")
    if labels is not None and not labels.grid.same_as(volumes[0].grid):
        raise ValueError("the label map must lie on the first image's grid; resample it (nearest neighbour) first")
    plan = SpatialPlan.for_grid(volumes[0].grid, spec.target_spacing)
    channels = [normalize(plan.image_to_model(v, spec.interpolation), spec.normalization_for(i))
                for i, v in enumerate(volumes)]
    image = to_network_layout(np.stack(channels))
    label_array = None
    if labels is not None:
        label_array = to_network_layout(plan.labels_to_model(labels))
    return PreparedCase(image, plan, label_array)
