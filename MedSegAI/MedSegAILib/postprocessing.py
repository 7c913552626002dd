"""Per-label clean-up on the final label map: keep the largest components, drop small islands,
fill holes. Voxel volumes come from the input grid, so "0.5 mL" means 0.5 mL on every scan."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .bundle.card import PostProcessing
from .label_regions import label_boxes


def _itk_mask(mask: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8))


def label_components(mask: np.ndarray, face_only: bool = False) -> tuple[np.ndarray, int]:
    """Connected components of a 3D boolean ``mask``, numbered 1..n in raster order (as
    ``scipy.ndimage.label``): 26-connected (Slicer's islands effect), or 6-connected with
    ``face_only``. ITK's filter runs multi-threaded: 1.4-2.2x faster than ndimage here."""
    labelled = sitk.ConnectedComponent(_itk_mask(mask), not face_only)
    return sitk.GetArrayFromImage(labelled), int(sitk.GetArrayViewFromImage(labelled).max(initial=0))


def keep_components(mask: np.ndarray, largest: int | None = None, min_voxels: int = 0) -> np.ndarray:
    """``mask`` without the components beyond the ``largest`` biggest (None: all) and without those
    under ``min_voxels`` (26-connected), from one labelling. Of equally large components, the
    first in raster order counts as larger."""
    if largest is None and min_voxels <= 1:
        return mask
    components = sitk.ConnectedComponent(_itk_mask(mask), True)
    # renumbered by decreasing size (ties keep their raster-order numbers' order), those under the
    # minimum dropped: kept are then 1..largest. All in ITK, 1.3-3x faster than counting and
    # looking up the labels in numpy on the ribs of a 512x512x600 CT
    ranked = sitk.RelabelComponent(components, max(min_voxels, 0), True)
    kept = sitk.BinaryThreshold(ranked, 1, largest if largest is not None else np.iinfo(np.uint32).max, 1, 0)
    return sitk.GetArrayFromImage(kept).view(bool)


def keep_largest_components(mask: np.ndarray, count: int = 1) -> np.ndarray:
    return keep_components(mask, largest=count)


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
                      box: tuple[slice, ...]) -> None:
    """Apply ``spec`` to label ``value`` of ``labels`` in place, within ``box`` (the label's bounding
    box). Voxels removed from the label become background; holes are filled only where the map is
    background, never over another label."""
    # one voxel of margin, so that background around the label connects to the box's border
    box = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, labels.shape))
    view = labels[box]
    mask = view == value
    min_voxels = int(np.ceil(spec.min_island_ml * 1000.0 / voxel_volume_mm3)) if spec.min_island_ml > 0 else 0
    cleaned = keep_components(mask, spec.largest_components or None, min_voxels)
    view[mask & ~cleaned] = 0
    if spec.fill_holes:
        filled = fill_holes(cleaned) & (view == 0)
        view[filled] = value


def postprocess(labels: np.ndarray, specs: dict[int, PostProcessing], voxel_volume_mm3: float) -> np.ndarray:
    active = {v: s for v, s in specs.items()
              if v >= 1 and (s.largest_components or s.min_island_ml > 0 or s.fill_holes)}
    if not active:
        return labels
    # cleaning one label only shrinks it or fills inside its box, so boxes found up front stay valid
    for value, box in label_boxes(labels, active).items():
        if box is not None:
            postprocess_label(labels, value, active[value], voxel_volume_mm3, box)
    return labels
