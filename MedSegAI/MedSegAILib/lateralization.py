"""Left and right from the mid-sagittal plane, for structures a network predicts without a side.

A network that must tell a left putamen from a right one has to work the side out from context,
since the two look like mirror images. On symmetric training data (a symmetric template, flips)
that is slow to learn: the first brain-structure model (DeepLabv3+, 600 iterations), scored on its
own training image, found the right putamen (Dice 0.66) and missed the left (0.21), and on Colin27
its left structures were its worst. Which side a bilateral structure lies on is geometry, not
appearance, so such models predict one class per structure ("putamen") and the side is assigned
here: voxels left of the mid-sagittal plane get the pair's left label.

The plane is ``x = c`` in RAS, with ``c`` the x-centroid of all voxels of the paired structures:
they come in mirror pairs, so their centroid lies on the midline wherever the head sits in the
scan, and on any voxel grid (flipped, permuted, oblique), since ``x`` comes from each voxel's
physical position. It assumes the head's left-right axis is the scanner's x axis; a head turned
by a few degrees moves the plane by a few millimetres away from the centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .label_regions import centroid_index, label_boxes, union_box

SLAB_SLICES = 32


def split_at_midline(labels: np.ndarray, ijk_to_ras: np.ndarray, pairs: Sequence[tuple[int, int]]) -> float | None:
    """In ``labels`` (``(k, j, i)``, changed in place), give every voxel of a pair's right value
    that lies left of the mid-sagittal plane the pair's left value. ``pairs``: ``(right value,
    left value)``; before the split every paired structure carries its right value. Returns the
    plane's RAS x (mm), or None when no paired structure is present."""
    rights = np.array([right for right, _ in pairs], dtype=np.int64)
    box = union_box(label_boxes(labels, rights.tolist()).values())
    if box is None:
        return None
    region = labels[box]
    to_left = np.arange(max(int(region.max()), int(rights.max())) + 1, dtype=labels.dtype)
    to_left[rights] = [left for _, left in pairs]
    paired = to_left[region] != region
    m = np.asarray(ijk_to_ras, dtype=float)
    k0, j0, i0 = (s.start for s in box)
    kc, jc, ic = centroid_index(paired) + (k0, j0, i0)
    midline_x = float(m[0] @ (ic, jc, kc, 1.0))
    _, j, i = np.ogrid[0:1, j0:box[1].stop, i0:box[2].stop]
    in_plane_x = m[0, 0] * i + m[0, 1] * j + m[0, 3]
    # slab by slab: RAS x of a whole large box in float64 would cost 8 bytes per voxel at once
    for start in range(0, region.shape[0], SLAB_SLICES):
        stop = min(start + SLAB_SLICES, region.shape[0])
        k = np.arange(k0 + start, k0 + stop, dtype=float)[:, None, None]
        slab = region[start:stop]
        np.copyto(slab, to_left[slab], where=paired[start:stop] & (in_plane_x + m[0, 2] * k < midline_x))
    return midline_x
