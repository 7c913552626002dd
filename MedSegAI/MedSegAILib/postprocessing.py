"""Per-label clean-up on the final label map: keep the largest components, drop small islands,
fill holes. Voxel volumes come from the input grid, so "0.5 mL" means 0.5 mL on every scan."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .bundle.card import PostProcessing

_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)  # 26-neighbourhood, as Slicer's islands effect


def keep_largest_components(mask: np.ndarray, count: int = 1) -> np.ndarray:
    labelled, n = ndimage.label(mask, structure=_CONNECTIVITY)
    if n <= count:
        return mask
    sizes = np.bincount(labelled.ravel())[1:]
    keep = np.argsort(sizes)[::-1][:count] + 1
    return np.isin(labelled, keep)


def remove_small_islands(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    if min_voxels <= 1:
        return mask
    labelled, n = ndimage.label(mask, structure=_CONNECTIVITY)
    if n == 0:
        return mask
    sizes = np.bincount(labelled.ravel())
    small = sizes < min_voxels
    small[0] = False
    return mask & ~small[labelled]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed background, in one labelling pass (same result as scipy's
    ``binary_fill_holes``, which dilates iteratively and is slow on large organs)."""
    background, _ = ndimage.label(~mask)
    border = np.unique(np.concatenate([
        background[[0, -1]].ravel(), background[:, [0, -1]].ravel(), background[:, :, [0, -1]].ravel()]))
    return mask | ((background > 0) & ~np.isin(background, border))


def _bounding_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    coords = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != d))) for d in range(3)]
    if any(c.size == 0 for c in coords):
        return None
    return tuple(slice(max(0, c[0] - margin), min(mask.shape[d], c[-1] + 1 + margin)) for d, c in enumerate(coords))


def postprocess_label(labels: np.ndarray, value: int, spec: PostProcessing, voxel_volume_mm3: float) -> None:
    """Apply ``spec`` to label ``value`` of ``labels`` in place. Voxels removed from the label
    become background; holes are filled only where the map is background, never over another label."""
    box = _bounding_box(labels == value)
    if box is None:
        return
    view = labels[box]
    mask = view == value
    cleaned = mask
    if spec.largest_components:
        cleaned = keep_largest_components(cleaned, spec.largest_components)
    if spec.min_island_ml > 0:
        cleaned = remove_small_islands(cleaned, int(np.ceil(spec.min_island_ml * 1000.0 / voxel_volume_mm3)))
    view[mask & ~cleaned] = 0
    if spec.fill_holes:
        filled = fill_holes(cleaned) & (view == 0)
        view[filled] = value


def postprocess(labels: np.ndarray, specs: dict[int, PostProcessing], voxel_volume_mm3: float) -> np.ndarray:
    for value, spec in specs.items():
        if spec.largest_components or spec.min_island_ml > 0 or spec.fill_holes:
            postprocess_label(labels, value, spec, voxel_volume_mm3)
    return labels
