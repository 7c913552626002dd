"""Per-label clean-up on the final label map: cut thin bridges, keep the largest components, drop
small islands, fill holes. Sizes come from the input grid's spacing, so "0.5 mL" and "15 mm" mean
the same on every scan."""

from __future__ import annotations

from typing import Sequence

import cc3d
import numpy as np
import SimpleITK as sitk

from .bundle.card import PostProcessing
from .label_regions import label_boxes, nonzero_box


def _itk_mask(mask: np.ndarray, spacing_kji: Sequence[float] | None = None) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8))
    if spacing_kji is not None:
        image.SetSpacing([float(s) for s in reversed(spacing_kji)])
    return image


def distance_to(mask: np.ndarray, spacing_kji: Sequence[float]) -> np.ndarray:
    """Euclidean distance (mm) from every voxel to the nearest voxel of ``mask`` (0 on it): ITK's
    multi-threaded Maurer transform, 3-4x faster than scipy's ``distance_transform_edt`` here."""
    distance = sitk.SignedMaurerDistanceMap(_itk_mask(mask, spacing_kji), insideIsPositive=False,
                                            squaredDistance=False, useImageSpacing=True)
    return np.maximum(sitk.GetArrayFromImage(distance), 0.0)


def cut_thin_bridges(mask: np.ndarray, radius_mm: float, spacing_kji: Sequence[float],
                     largest: int | None = None) -> np.ndarray:
    """``mask`` opened by a ball of ``radius_mm``: what the ball cannot reach while staying inside
    is removed, so parts joined by bridges thinner than about ``2 * radius_mm`` come apart. With
    ``largest``, only the ``largest`` biggest of the eroded cores grow back, so a false-positive blob
    tied to the organ by a thin bridge goes. A mask that the ball does not fit into at all is
    returned whole: opening never deletes a structure outright.

    Example: a brain with the eye attached through the optic canal at 3 mm resolution; opened by
    15 mm, the eye comes off (``medsegai-mr-brain-extraction``).
    """
    padded = np.pad(mask, 1)  # beyond the array is background: the ball must not stick out there
    core = distance_to(~padded, spacing_kji) > radius_mm
    if not core.any():
        return mask
    if largest is not None:
        core = keep_components(core, largest=largest)
    grown = distance_to(core, spacing_kji) <= radius_mm
    return (grown & padded)[1:-1, 1:-1, 1:-1]


def label_components(mask: np.ndarray, face_only: bool = False) -> tuple[np.ndarray, int]:
    """Connected components of a 3D boolean ``mask``, numbered 1..n in raster order (as
    ``scipy.ndimage.label``): 26-connected (Slicer's islands effect), or 6-connected with
    ``face_only``. connected-components-3d (``cc3d``, nnU-Net's ``acvl_utils`` uses it too): on the
    masks of a 256 x 256 x 120 chest CT 2-7 ms, against 8-18 ms for ITK's filter and 4x that for
    ``ndimage``; its numbers are unsigned, 16 or 32 bits by the mask's size."""
    labelled, count = cc3d.connected_components(np.ascontiguousarray(mask), connectivity=6 if face_only else 26,
                                                return_N=True)
    return labelled, int(count)


def keep_components(mask: np.ndarray, largest: int | None = None, min_voxels: int = 0) -> np.ndarray:
    """``mask`` without the components beyond the ``largest`` biggest (None: all) and without those
    under ``min_voxels`` (26-connected), from one labelling. Of equally large components, the
    first in raster order counts as larger. Returns ``mask`` itself where nothing is dropped."""
    if largest is None and min_voxels <= 1:
        return mask
    labelled, count = label_components(mask)
    if min_voxels <= 1 and count <= largest:
        return mask
    # sizes and the verdict are read at the mask's voxels only, not over its whole box: on a
    # 512x512x600 CT 1.3-2x faster than ITK's relabelling by size and thresholding
    numbers = labelled[mask]
    sizes = np.bincount(numbers, minlength=count + 1)
    ranked = np.argsort(-sizes[1:], kind="stable")[:largest] + 1  # stable: ties in raster order
    kept = np.zeros(count + 1, dtype=bool)
    kept[ranked[sizes[ranked] >= min_voxels]] = True
    if kept[1:].all():
        return mask
    cleaned = np.zeros_like(mask)
    cleaned[mask] = kept[numbers]
    return cleaned


def keep_largest_components(mask: np.ndarray, count: int = 1) -> np.ndarray:
    return keep_components(mask, largest=count)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed background, in one labelling pass (same result as scipy's
    ``binary_fill_holes``, which dilates iteratively and is slow on large organs). Returns ``mask``
    itself where it has no holes.

    Only the mask's bounding box is labelled: background outside it reaches the array's border in
    a straight line, so no hole lies there, and background on the box's faces touches such
    background, so it is not in a hole either."""
    box = nonzero_box(mask)
    if box is None:
        return mask
    background, count = label_components(~mask[box], face_only=True)
    enclosed = np.ones(count + 1, dtype=bool)
    enclosed[0] = False
    for face in (background[[0, -1]], background[:, [0, -1]], background[:, :, [0, -1]]):
        enclosed[face.ravel()] = False
    if not enclosed.any():
        return mask
    filled = mask.copy()
    filled[box] |= enclosed[background]
    return filled


def postprocess_label(labels: np.ndarray, value: int, spec: PostProcessing, spacing_kji: Sequence[float],
                      box: tuple[slice, ...]) -> None:
    """Apply ``spec`` to label ``value`` of ``labels`` in place, within ``box`` (the label's bounding
    box). Voxels removed from the label become background; holes are filled only where the map is
    background, never over another label."""
    view = labels[box]
    mask = view == value
    voxel_volume_mm3 = float(np.prod(spacing_kji))
    min_voxels = int(np.ceil(spec.min_island_ml * 1000.0 / voxel_volume_mm3)) if spec.min_island_ml > 0 else 0
    cleaned = mask
    if spec.opening_mm > 0:
        cleaned = cut_thin_bridges(mask, spec.opening_mm, spacing_kji, spec.largest_components or None)
    cleaned = keep_components(cleaned, spec.largest_components or None, min_voxels)
    if cleaned is not mask:  # the helpers hand back their input where they change nothing
        view[mask & ~cleaned] = 0
    if spec.fill_holes:
        filled = fill_holes(cleaned)
        if filled is not cleaned:
            view[filled & (view == 0)] = value


def postprocess(labels: np.ndarray, specs: dict[int, PostProcessing], spacing_kji: Sequence[float],
                boxes: dict[int, tuple[slice, ...] | None] | None = None) -> np.ndarray:
    """Clean each label of the ``(k, j, i)`` map ``labels`` by its spec, in place; ``spacing_kji`` in mm.
    ``boxes``: boxes holding each label of ``specs`` (None: absent), when the caller has them."""
    active = {v: s for v, s in specs.items()
              if v >= 1 and (s.largest_components or s.min_island_ml > 0 or s.fill_holes or s.opening_mm > 0)}
    if not active:
        return labels
    # cleaning one label only shrinks it or fills inside its box, so boxes found up front stay valid
    if boxes is None:
        boxes = label_boxes(labels, active)
    for value in active:
        box = boxes[value]
        if box is not None:
            postprocess_label(labels, value, active[value], spacing_kji, box)
    return labels
