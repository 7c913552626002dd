"""Where labels are in a label map: bounding boxes and centres, computed without visiting more of
the map than needed (a 512x512x600 CT has 157 M voxels: every full pass over it costs 0.1-1 s)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import SimpleITK as sitk


def label_boxes(labels: np.ndarray, values: Iterable[int]) -> dict[int, tuple[slice, ...] | None]:
    """Bounding box (index slices) of each label value in ``values`` (None where it is absent),
    all from one pass over ``labels``: per-label work then touches only its box.

    ITK's label shape statistics, multi-threaded: 0.22 s against 0.51 s for scipy's
    ``find_objects`` on a 512x512x600 map, and a run on ONNX Runtime then never imports
    ``scipy.ndimage`` (0.4 s of start-up)."""
    values = [int(v) for v in values]
    if any(v < 1 for v in values):
        raise ValueError(f"label values must be >= 1 (0 is background); got {sorted(values)}")
    if not values:
        return {}
    if labels.dtype.kind not in "ub" or labels.dtype.itemsize > 4:  # ITK label types: unsigned, <= 32 bit
        labels = labels.astype(np.uint32)
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.ComputePerimeterOff()
    statistics.ComputeFeretDiameterOff()
    statistics.ComputeOrientedBoundingBoxOff()
    statistics.Execute(sitk.GetImageFromArray(labels.view(np.uint8) if labels.dtype == bool else labels))
    present = set(statistics.GetLabels())
    boxes: dict[int, tuple[slice, ...] | None] = {}
    for v in values:
        if v not in present:
            boxes[v] = None
            continue
        box = statistics.GetBoundingBox(v)  # ITK order: start x, y, z, then size x, y, z
        start, size = box[:labels.ndim][::-1], box[labels.ndim:][::-1]
        boxes[v] = tuple(slice(int(a), int(a + n)) for a, n in zip(start, size))
    return boxes


def whole_box(shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The box of a whole array of ``shape``."""
    return tuple(slice(0, n) for n in shape)


def nonzero_box(array: np.ndarray) -> tuple[slice, ...] | None:
    """Tight bounding box of the non-zero voxels of a 3D ``array`` (None if there are none), from
    its projections on the three axes."""
    coords = [np.flatnonzero(array.any(axis=tuple(a for a in range(3) if a != d))) for d in range(3)]
    if any(c.size == 0 for c in coords):
        return None
    return tuple(slice(int(c[0]), int(c[-1]) + 1) for c in coords)


def union_box(boxes: Iterable[tuple[slice, ...] | None]) -> tuple[slice, ...] | None:
    """The smallest box holding every box of ``boxes`` (None entries are skipped; None if all are)."""
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return tuple(slice(min(b[d].start for b in present), max(b[d].stop for b in present)) for d in range(3))


def centroid_index(mask: np.ndarray) -> np.ndarray:
    """Centre (k, j, i) of the true voxels of a 3D boolean ``mask``, from its projections on the
    three axes (20x faster than ``ndimage.center_of_mass``, which weights every voxel by its
    index per axis)."""
    counts = mask.view(np.uint8)
    per_kj = counts.sum(axis=2, dtype=np.int64)
    profiles = (per_kj.sum(axis=1), per_kj.sum(axis=0), counts.sum(axis=(0, 1), dtype=np.int64))
    total = profiles[0].sum()
    return np.array([np.dot(np.arange(p.size), p) / total for p in profiles])


def centroid_ras(mask: np.ndarray, ijk_to_ras: np.ndarray, origin_kji: tuple[int, ...] = (0, 0, 0)) -> np.ndarray:
    """RAS centre (mm) of the true voxels of ``mask``, a ``(k, j, i)`` box whose first voxel is
    ``origin_kji`` on the grid of ``ijk_to_ras``."""
    kji = centroid_index(mask) + np.asarray(origin_kji)
    return (np.asarray(ijk_to_ras, dtype=float) @ np.r_[kji[::-1], 1.0])[:3]
