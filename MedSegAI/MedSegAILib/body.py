"""The patient's body on CT, for labels that can only lie inside it.

Lung and the air around the patient are both near -1000 HU; a network that has seen few scans can call
outside air "lung", and the largest-component clean-up then keeps the outside air, which is the larger
blob (``medsegai-ct-chest-demo`` on slices it never trained on). Anatomy rules that out: in every
axial slice the lungs, airways and bowel gas are enclosed by the body wall, while the air around the
patient reaches the edge of the slice. A label whose card asks for it (``postprocessing.inside_body_hu``)
loses its voxels in that outside air before any other clean-up.

The rule works per axial slice, not in 3D: in 3D the outside air reaches the lungs through the nose,
mouth and trachea, and through the trachea's cut at the top of a chest scan. Its limit: where the field
of view cuts through a lung, that slice's lung touches the edge and is taken for outside air.

Example::

    >>> import numpy as np
    >>> ct = np.full((1, 9, 9), -1000, dtype=np.int16)           # one axial slice of air
    >>> ct[0, 1:8, 1:8] = 40                                       # the body
    >>> ct[0, 3:6, 3:6] = -900                                     # a lung inside it
    >>> labels = np.where(ct < -500, 1, 0).astype(np.uint8)       # a network calling all air "lung"
    >>> keep_inside_body(labels, ct, axis=0, thresholds={1: -500})
    >>> int(labels.sum())
    9
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .label_regions import label_boxes
from .postprocessing import label_components


def axial_axis(ijk_to_ras: np.ndarray) -> int:
    """Array axis of a ``(k, j, i)`` volume whose steps run most nearly along the body's S axis
    (0 for the usual axial series, also when its slices are tilted or stored inferior first)."""
    directions = np.asarray(ijk_to_ras, dtype=float)[:3, :3]  # columns: the i, j and k steps in RAS
    along_s = np.abs(directions[2]) / np.linalg.norm(directions, axis=0)
    return 2 - int(np.argmax(along_s))


SLICES_PER_LABELLING = 16  # 512 x 512 slices: ~8 MB of mask and 32 MB of component numbers at a time


def solid_box(air: np.ndarray) -> tuple[slice, slice] | None:
    """In-plane bounding box of everything that is not air in a ``(n, rows, cols)`` stack; None where
    every voxel is air.

    Air outside the box reaches the slice's border along its row or column, which lie wholly outside
    it; air on the box's own border touches such air. So air in the box reaches the slice's border
    exactly when it reaches the box's."""
    solid = ~air
    rows = np.flatnonzero(solid.any(axis=(0, 2)))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(solid.any(axis=(0, 1)))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def air_reaching_edge(air: np.ndarray) -> np.ndarray:
    """The part of a boolean ``air`` mask, one 2D slice or a ``(n, rows, cols)`` stack of them, that is
    edge-connected, within its own slice, to the slice's border.

    Edge (4-)connectivity, so that air does not leak into the body through a diagonal gap in a thin
    body wall. A stack is labelled in one 3D pass (face connectivity) with empty slices between its
    slices, so that no component crosses from one slice to the next."""
    if air.ndim == 2:
        return air_reaching_edge(air[np.newaxis])[0]
    outside = air.copy()  # air outside the box reaches the border
    box = solid_box(air)
    if box is None:
        return outside
    in_box = (slice(None),) + box
    cropped = air[in_box]
    separated = np.zeros((2 * len(air) - 1,) + cropped.shape[1:], dtype=np.uint8)
    separated[::2] = cropped
    components = label_components(separated, face_only=True)[0][::2]
    touching = np.zeros(int(components.max(initial=0)) + 1, dtype=bool)
    for edge in (components[:, 0], components[:, -1], components[:, :, 0], components[:, :, -1]):
        touching[edge] = True
    touching[0] = False
    outside[in_box] = touching[components]
    return outside


def keep_inside_body(labels: np.ndarray, image: np.ndarray, axis: int, thresholds: Mapping[int, float],
                     boxes: Mapping[int, tuple[slice, ...] | None] | None = None) -> None:
    """Set to 0, in place, the voxels of each label value in ``thresholds`` that lie in air outside the
    body: below the label's threshold (HU) in ``image`` and connected, within their slice across
    ``axis``, to the slice's border. ``labels`` and ``image`` share one ``(k, j, i)`` grid.

    Only the slices through the labels' bounding boxes are looked at, a few at a time (no
    whole-volume mask is made). ``boxes``: boxes holding each label of ``thresholds`` (None: absent),
    when the caller has them (:func:`.label_regions.label_boxes`)."""
    if labels.shape != image.shape:
        raise ValueError(f"labels {labels.shape} and image {image.shape} are not on one grid")
    boxes = boxes if boxes is not None else label_boxes(labels, thresholds)
    slab_labels = np.moveaxis(labels, axis, 0)  # views: assignments below write into ``labels``
    slab_image = np.moveaxis(image, axis, 0)
    for threshold in sorted(set(thresholds.values())):
        values = [v for v, t in thresholds.items() if t == threshold and boxes[v] is not None]
        if not values:
            continue
        start = min(boxes[v][axis].start for v in values)
        stop = max(boxes[v][axis].stop for v in values)
        for first in range(start, stop, SLICES_PER_LABELLING):
            chunk = slab_labels[first:min(first + SLICES_PER_LABELLING, stop)]
            restricted = chunk == values[0]  # a comparison per value: np.isin sorts
            for value in values[1:]:
                restricted |= chunk == value
            if restricted.any():
                chunk[restricted & air_reaching_edge(slab_image[first:first + len(chunk)] < threshold)] = 0
