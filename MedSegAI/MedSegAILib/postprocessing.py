"""Per-label clean-up on the final label map: cut thin bridges, keep the largest components, drop
small islands, fill holes. Sizes come from the input grid's spacing, so "0.5 mL" and "15 mm" mean
the same on every scan."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .bundle.card import PostProcessing
from .label_regions import label_boxes


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


def postprocess_label(labels: np.ndarray, value: int, spec: PostProcessing, spacing_kji: Sequence[float],
                      box: tuple[slice, ...]) -> None:
    """Apply ``spec`` to label ``value`` of ``labels`` in place, within ``box`` (the label's bounding
    box). Voxels removed from the label become background; holes are filled only where the map is
    background, never over another label."""
    # one voxel of margin, so that background around the label connects to the box's border
    box = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, labels.shape))
    view = labels[box]
    mask = view == value
    voxel_volume_mm3 = float(np.prod(spacing_kji))
    min_voxels = int(np.ceil(spec.min_island_ml * 1000.0 / voxel_volume_mm3)) if spec.min_island_ml > 0 else 0
    cleaned = mask
    if spec.opening_mm > 0:
        cleaned = cut_thin_bridges(mask, spec.opening_mm, spacing_kji, spec.largest_components or None)
    cleaned = keep_components(cleaned, spec.largest_components or None, min_voxels)
    view[mask & ~cleaned] = 0
    if spec.fill_holes:
        filled = fill_holes(cleaned) & (view == 0)
        view[filled] = value


def postprocess(labels: np.ndarray, specs: dict[int, PostProcessing], spacing_kji: Sequence[float]) -> np.ndarray:
    """Clean each label of the ``(k, j, i)`` map ``labels`` by its spec, in place; ``spacing_kji`` in mm."""
    active = {v: s for v, s in specs.items()
              if v >= 1 and (s.largest_components or s.min_island_ml > 0 or s.fill_holes or s.opening_mm > 0)}
    if not active:
        return labels
    # cleaning one label only shrinks it or fills inside its box, so boxes found up front stay valid
    for value, box in label_boxes(labels, active).items():
        if box is not None:
            postprocess_label(labels, value, active[value], spacing_kji, box)
    return labels
