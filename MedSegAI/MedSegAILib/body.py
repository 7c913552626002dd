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
import SimpleITK as sitk

from .label_regions import label_boxes


def axial_axis(ijk_to_ras: np.ndarray) -> int:
    """Array axis of a ``(k, j, i)`` volume whose steps run most nearly along the body's S axis
    (0 for the usual axial series, also when its slices are tilted or stored inferior first)."""
    directions = np.asarray(ijk_to_ras, dtype=float)[:3, :3]  # columns: the i, j and k steps in RAS
    along_s = np.abs(directions[2]) / np.linalg.norm(directions, axis=0)
    return 2 - int(np.argmax(along_s))


def air_reaching_edge(air: np.ndarray) -> np.ndarray:
    """The part of a 2D boolean ``air`` mask that is edge-connected to the slice's border.

    Edge (4-)connectivity, so that air does not leak into the body through a diagonal gap in a thin
    body wall."""
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(air.view(np.uint8)), False))
    touching = np.zeros(int(components.max(initial=0)) + 1, dtype=bool)
    for edge in (components[0], components[-1], components[:, 0], components[:, -1]):
        touching[edge] = True
    touching[0] = False
    return touching[components]


def keep_inside_body(labels: np.ndarray, image: np.ndarray, axis: int, thresholds: Mapping[int, float]) -> None:
    """Set to 0, in place, the voxels of each label value in ``thresholds`` that lie in air outside the
    body: below the label's threshold (HU) in ``image`` and connected, within their slice across
    ``axis``, to the slice's border. ``labels`` and ``image`` share one ``(k, j, i)`` grid.

    Only the slices through the labels' bounding boxes are looked at, each alone (about 4 ms for a
    512 x 512 slice; no whole-volume mask is made)."""
    if labels.shape != image.shape:
        raise ValueError(f"labels {labels.shape} and image {image.shape} are not on one grid")
    boxes = label_boxes(labels, thresholds)
    slab_labels = np.moveaxis(labels, axis, 0)  # views: assignments below write into ``labels``
    slab_image = np.moveaxis(image, axis, 0)
    for threshold in sorted(set(thresholds.values())):
        values = [v for v, t in thresholds.items() if t == threshold and boxes[v] is not None]
        if not values:
            continue
        start = min(boxes[v][axis].start for v in values)
        stop = max(boxes[v][axis].stop for v in values)
        for index in range(start, stop):
            in_slice = slab_labels[index]
            restricted = np.isin(in_slice, values)
            if restricted.any():
                in_slice[restricted & air_reaching_edge(slab_image[index] < threshold)] = 0
