"""Per-label clean-up on the final label map: keep the largest components, drop small islands,
fill holes. Voxel volumes come from the input grid, so "0.5 mL" means 0.5 mL on every scan."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .bundle.card import PostProcessing


def label_components(mask: np.ndarray, face_only: bool = False) -> tuple[np.ndarray, int]:
    """Connected components of a 3D boolean ``mask``, numbered 1..n in raster order (as
    ``scipy.ndimage.label``): 26-connected (Slicer's islands effect), or 6-connected with
    ``face_only``. ITK's filter runs multi-threaded: 1.4-2.2x faster than ndimage here."""
    image = sitk.GetImageFromArray(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8))
    labelled = sitk.ConnectedComponent(image, not face_only)
    return sitk.GetArrayFromImage(labelled), int(sitk.GetArrayViewFromImage(labelled).max(initial=0))


def keep_largest_components(mask: np.ndarray, count: int = 1) -> np.ndarray:
    labelled, n = label_components(mask)
    if n <= count:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    kept = np.zeros(n + 1, dtype=bool)  # a lookup table: much faster than np.isin on big volumes
    kept[np.argsort(-sizes, kind="stable")[:count]] = True  # equal sizes: the first in raster order
    return kept[labelled]


def remove_small_islands(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    if min_voxels <= 1:
        return mask
    labelled, n = label_components(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labelled.ravel())
    small = sizes < min_voxels
    small[0] = False
    return mask & ~small[labelled]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed background, in one labelling pass (same result as scipy's
    ``binary_fill_holes``, which dilates iteratively and is slow on large organs)."""
    background, n = label_components(~mask, face_only=True)
    enclosed = np.ones(n + 1, dtype=bool)
    enclosed[0] = False
    for face in (background[[0, -1]], background[:, [0, -1]], background[:, :, [0, -1]]):
        enclosed[face.ravel()] = False
    return mask | enclosed[background]


def postprocess_label(labels: np.ndarray, value: int, spec: PostProcessing, voxel_volume_mm3: float,
                      box: tuple[slice, ...] | None = None) -> None:
    """Apply ``spec`` to label ``value`` of ``labels`` in place, within ``box`` (the label's bounding
    box; found here when not given). Voxels removed from the label become background; holes are
    filled only where the map is background, never over another label."""
    if box is None:
        boxes = ndimage.find_objects((labels == value).astype(np.uint8))
        box = boxes[0] if boxes else None
    if box is None:
        return
    # one voxel of margin, so that background around the label connects to the box's border
    box = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, labels.shape))
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
    active = {v: s for v, s in specs.items() if s.largest_components or s.min_island_ml > 0 or s.fill_holes}
    if not active:
        return labels
    # every label's bounding box in one pass; cleaning one label only shrinks it or fills inside its box
    boxes = ndimage.find_objects(labels, max_label=max(active))
    for value, spec in active.items():
        if value >= 1 and boxes[value - 1] is not None:
            postprocess_label(labels, value, spec, voxel_volume_mm3, boxes[value - 1])
    return labels
