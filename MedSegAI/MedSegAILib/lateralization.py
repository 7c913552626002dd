"""Left and right from the mid-sagittal plane, for structures a network predicts without a side.

A network that must tell a left putamen from a right one has to work the side out from context,
since the two look like mirror images. On symmetric training data (a symmetric template, flips)
that is slow to learn: the first brain-structure model (DeepLabv3+, 600 iterations), scored on its
own training image, found the right putamen (Dice 0.66) and missed the left (0.21), and on Colin27
its left structures were its worst. Which side a bilateral structure lies on is geometry, not
appearance, so such models predict one class per structure ("putamen") and the side is assigned
here: voxels left of the mid-sagittal plane get the pair's left label.

The plane is ``x = c`` in RAS about which the predicted structures best mirror themselves: the
voxels of each structure are counted in bins of 1 mm along x and ``CELL_MM`` along y and z, each
row of x bins is convolved with itself, and the sum peaks at ``2c``, where a left part meets its
right part. That holds wherever the head sits in the scan and on any voxel grid (flipped,
permuted, oblique), since ``x`` comes from each voxel's physical position. A plain x-centroid of
the structures was 5.8 mm off on the symmetric MNI template itself: false positives on one side
pull a centroid, they find no mirror partner. Rows per y/z cell, not one x profile per structure:
projected onto x alone, any two blobs on one side mirror each other about the point between them,
and a false positive somewhat larger than one side of a pair, 16 mm from it along y, moved the
plane by 10-16 mm. On the six structure pairs of the Neuromorphometrics atlas in MNI space, turned
by up to 15 degrees of yaw or 10 of roll, with or without an 8.6-15 mL one-sided false positive in
the parietal cortex, the plane was at most 2.4 mm from the true one at the structures (15 degrees
of yaw; no false positive moved it), against up to 4.1 mm with one x profile per structure (0.9 mm
without false positives; ``python -m medsegai_training.midline_robustness``). A single pair alone,
40 mm apart and turned by 10 degrees, is too little: its halves then fall in different cells.
It assumes the head's left-right axis is the scanner's x axis; a head turned by a few degrees
moves the plane by a few millimetres away from the centre.

The plane also tells true structures from false positives: a left thalamus has a right one at its
mirror image, a stray blob in the cortex has nothing there. :func:`keep_mirrored_components` keeps
on each side the component that mirrors onto the other side, where "keep the largest" keeps
whichever is bigger. On Colin27 the 1500-iteration brain-structure model's right thalamus scored
Dice 0.00 under the largest-component rule: an 8.6 mL false positive in the parietal cortex, 52 mm
above, outgrew it while the left thalamus was found at 0.81.

Mirroring cannot reject false positives that mirror each other. On the symmetric MNI template, its own
training image, the brain-structure models of two seeds out of three found both thalami (16,000 voxels
of the true thalami labelled thalamus) and still scored 0.00 there: a pair of 11-19 mL "thalamus" blobs
about 80 mm away, low in the frontal lobe, mirrored as well and was larger. A card's ``position_prior`` gives
each paired label the offset of its centroid from the brain's centroid (the first input's nonzero
voxels) and a length scale, both from the training atlas; a component's mirrored overlap and size are
then weighted by ``1 / (1 + (d / radius) ** 2)``, ``d`` the distance of its centroid from the
expected position. A blob 80 mm away with the thalamus's 14 mm scale counts 3 %, the true structure a
few millimetres off almost fully.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .label_regions import label_boxes, union_box
from .postprocessing import label_components

SLAB_SLICES = 32
BIN_MM = 1.0
CELL_MM = 4.0  # y/z cells of the mirror profiles: coarse enough for a head turned by a few degrees
MIRROR_CHUNK_VOXELS = 1 << 20  # voxels mirrored at once: 4 float64 rows of coordinates, 32 MiB


def mirror_centre(profiles: np.ndarray, first_bin_x: float, bin_mm: float = BIN_MM) -> float:
    """The x about which ``profiles`` (rows of counts in bins of ``bin_mm`` along x from
    ``first_bin_x``, any leading shape: one row per structure and y/z cell) best mirror themselves:
    bins ``a`` and ``b`` mirror about the centre of ``(a + b) / 2``, so the sum of each row's
    self-convolution peaks at the mirror plane's ``a + b``."""
    rows = profiles.reshape(-1, profiles.shape[-1]).astype(float)
    rows = rows[rows.any(axis=1)]
    size = 2 * rows.shape[1] - 1
    # the sum of the rows convolved with themselves, by FFT; counts are integers, so rint undoes its rounding error
    overlap = np.fft.irfft(np.sum(np.fft.rfft(rows, n=size) ** 2, axis=0), n=size)
    return float(first_bin_x + (np.argmax(np.rint(overlap)) / 2 + 0.5) * bin_mm)


def _ras_by_slab(box: tuple[slice, ...], ijk_to_ras: np.ndarray, axes: Sequence[int] = (0,)):
    """``(start, stop, coordinates)`` per slab of ``SLAB_SLICES`` slices of ``box``: the RAS
    ``axes`` (0: x, 1: y, 2: z) of its voxels, slab by slab (a whole large box in float64 would
    cost 8 bytes per voxel and axis at once)."""
    m = ijk_to_ras
    k0, j0, i0 = (s.start for s in box)
    _, j, i = np.ogrid[0:1, j0:box[1].stop, i0:box[2].stop]
    in_plane = [m[a, 0] * i + m[a, 1] * j + m[a, 3] for a in axes]
    depth = box[0].stop - k0
    for start in range(0, depth, SLAB_SLICES):
        stop = min(start + SLAB_SLICES, depth)
        k = np.arange(k0 + start, k0 + stop, dtype=float)[:, None, None]
        yield start, stop, [np.broadcast_to(p + m[a, 2] * k, (stop - start, *p.shape[1:]))
                            for a, p in zip(axes, in_plane)]


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
    size = max(int(region.max()), int(rights.max())) + 1
    to_left = np.arange(size, dtype=labels.dtype)
    to_left[rights] = [left for _, left in pairs]
    structure = np.full(size, -1)
    structure[rights] = np.arange(len(rights))
    m = np.asarray(ijk_to_ras, dtype=float)
    corners = np.array([m[:3] @ (i, j, k, 1.0) for k in (box[0].start, box[0].stop - 1)
                        for j in (box[1].start, box[1].stop - 1) for i in (box[2].start, box[2].stop - 1)])
    first = corners.min(axis=0)
    bins = (np.ceil((corners.max(axis=0) - first) / (BIN_MM, CELL_MM, CELL_MM)) + 1).astype(np.int64)
    shape = (len(rights), bins[1], bins[2], bins[0])  # structure, y cell, z cell, x bin
    profiles = np.zeros(int(np.prod(shape)), dtype=np.int64)
    for start, stop, (x, y, z) in _ras_by_slab(box, m, axes=(0, 1, 2)):
        which = structure[region[start:stop]]
        inside = which >= 0
        cell = [((c[inside] - f) / width).astype(np.int64)
                for c, f, width in zip((x, y, z), first, (BIN_MM, CELL_MM, CELL_MM))]
        index = np.ravel_multi_index((which[inside], cell[1], cell[2], cell[0]), shape)
        profiles += np.bincount(index, minlength=profiles.size)
    midline_x = mirror_centre(profiles.reshape(shape), first[0])
    for start, stop, (x,) in _ras_by_slab(box, m):
        slab = region[start:stop]
        np.copyto(slab, to_left[slab], where=(structure[slab] >= 0) & (x < midline_x))
    return midline_x


def mirror_ijk(ijk_to_ras: np.ndarray, midline_x: float) -> np.ndarray:
    """The 4x4 map from a voxel index ``(i, j, k, 1)`` to the (fractional) index of its mirror image
    about the plane ``x = midline_x`` in RAS, on the same grid."""
    m = np.asarray(ijk_to_ras, dtype=float)
    reflect = np.diag([-1.0, 1.0, 1.0, 1.0])
    reflect[0, 3] = 2.0 * midline_x
    return np.linalg.inv(m) @ reflect @ m


def mirror_overlaps(components: np.ndarray, count: int, origin: tuple[int, ...], to_mirror: np.ndarray,
                    partner: np.ndarray, partner_origin: tuple[int, ...]) -> np.ndarray:
    """For components ``1..count`` of ``components`` (a ``(k, j, i)`` box whose first voxel is
    ``origin`` on the full grid), how many of their voxels have their mirror image (``to_mirror``,
    from :func:`mirror_ijk`; rounded to the nearest voxel) on ``partner``, a boolean box whose
    first voxel is ``partner_origin``. Index 0 of the result is unused."""
    overlap = np.zeros(count + 1, dtype=np.int64)
    k, j, i = np.nonzero(components)
    ids = components[k, j, i]
    start_kji, limit_kji = np.array(partner_origin)[:, None], np.array(partner.shape)[:, None]
    for s in range(0, ids.size, MIRROR_CHUNK_VOXELS):
        e = s + MIRROR_CHUNK_VOXELS
        ijk1 = np.stack([i[s:e] + origin[2], j[s:e] + origin[1], k[s:e] + origin[0], np.ones(ids[s:e].size)])
        kji = np.rint(to_mirror[2::-1] @ ijk1).astype(np.int64) - start_kji  # rows k, j, i in the partner's box
        inside = np.all((kji >= 0) & (kji < limit_kji), axis=0)
        hit = np.zeros(inside.size, dtype=bool)
        hit[inside] = partner[kji[0, inside], kji[1, inside], kji[2, inside]]
        overlap += np.bincount(ids[s:e][hit], minlength=count + 1)
    return overlap


def component_centroids_ras(components: np.ndarray, count: int, origin: tuple[int, ...],
                            ijk_to_ras: np.ndarray) -> np.ndarray:
    """RAS centroids ``(count + 1, 3)`` of components ``1..count`` of ``components`` (a ``(k, j, i)``
    box whose first voxel is ``origin`` on the grid of ``ijk_to_ras``); row 0 is unused."""
    k, j, i = np.nonzero(components)
    ids = components[k, j, i]
    size = np.maximum(np.bincount(ids, minlength=count + 1), 1)
    mean = [np.bincount(ids, weights=axis, minlength=count + 1) / size + start
            for axis, start in ((i, origin[2]), (j, origin[1]), (k, origin[0]))]
    return (np.asarray(ijk_to_ras, dtype=float) @ np.stack([*mean, np.ones(count + 1)]))[:3].T


def position_weights(centroids_ras: np.ndarray, expected_ras: Sequence[float], radius_mm: float) -> np.ndarray:
    """``1 / (1 + (d / radius_mm) ** 2)`` for each centroid, ``d`` its distance (mm) from ``expected_ras``.

    Example:
        >>> position_weights(np.array([[0.0, 0.0, 0.0], [0.0, 14.0, 0.0], [60.0, 0.0, 0.0]]), [0, 0, 0], 14.0).round(2)
        array([1.  , 0.5 , 0.05])
    """
    distance = np.linalg.norm(np.asarray(centroids_ras, dtype=float) - np.asarray(expected_ras, dtype=float), axis=1)
    return 1.0 / (1.0 + (distance / radius_mm) ** 2)


def keep_mirrored_components(labels: np.ndarray, ijk_to_ras: np.ndarray, pairs: Sequence[tuple[int, int]],
                             midline_x: float,
                             position_prior: Mapping[int, tuple[Sequence[float], float]] | None = None,
                             reference_ras: Sequence[float] | None = None) -> None:
    """In ``labels`` (``(k, j, i)``, changed in place, after :func:`split_at_midline`), keep of each
    side of each pair only the 26-connected component with the most voxels whose mirror image about
    ``x = midline_x`` lies on the other side's structure; of components that tie (none mirrors onto
    the other side, say, or it is absent), the largest. Removed voxels become background. The
    choice for both sides is made from the map as it was, so neither side's choice depends on the
    other's.

    ``position_prior``: label value -> (expected RAS offset of its centroid from ``reference_ras``,
    length scale), both in mm; the overlaps and sizes of that label's components are weighted by
    :func:`position_weights` before the choice (see the module docstring)."""
    position_prior = position_prior or {}
    if position_prior and reference_ras is None:
        raise ValueError("a position prior needs the reference point it is relative to")
    to_mirror = mirror_ijk(ijk_to_ras, midline_x)
    removals = []
    boxes = label_boxes(labels, [value for pair in pairs for value in pair])  # one pass over the map
    for pair in pairs:
        for value, partner_value in (pair, pair[::-1]):
            box, partner_box = boxes[value], boxes[partner_value]
            if box is None:
                continue
            components, count = label_components(labels[box] == value)
            if count < 2:
                continue
            origin = tuple(b.start for b in box)
            size = np.bincount(components.ravel(), minlength=count + 1).astype(float)
            overlap = np.zeros(count + 1)
            if partner_box is not None:
                overlap = mirror_overlaps(components, count, origin, to_mirror, labels[partner_box] == partner_value,
                                          tuple(b.start for b in partner_box)).astype(float)
            if value in position_prior:
                offset, radius = position_prior[value]
                weight = position_weights(component_centroids_ras(components, count, origin, ijk_to_ras),
                                          np.asarray(reference_ras, dtype=float) + offset, radius)
                size, overlap = size * weight, overlap * weight
            best = 1 + int(np.lexsort((size[1:], overlap[1:]))[-1])
            removals.append((box, (components != best) & (components > 0)))
    for box, removed in removals:
        labels[box][removed] = 0
