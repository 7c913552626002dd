"""Training cases: image volumes, a label map, and the mapping to the model's label values.

A case is read with the core's readers, its label map is remapped to model values on the source
grid (this is also the reference for evaluation), and both go through
``MedSegAILib.preprocessing.prepare_case`` -- exactly the preprocessing inference applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from MedSegAILib.bundle.card import Preprocessing
from MedSegAILib.geometry import ras_to_lps
from MedSegAILib.image import Volume, read_volume, resample
from MedSegAILib.preprocessing import PreparedCase, prepare_case


@dataclass(frozen=True)
class LabelMapping:
    """Source label value -> model label value. Source values not listed become background (0).

    Several source values may map to one model value (merging, e.g. cervical, thoracic and lumbar
    vertebral column into one "vertebral column").

    Example:
        >>> LabelMapping({2: 1, 3: 1, 5: 2}).apply(np.array([0, 2, 3, 4, 5])).tolist()
        [0, 1, 1, 0, 2]
    """

    source_to_model: Mapping[int, int]

    def __post_init__(self) -> None:
        if any(v < 0 or v > 65535 for v in self.source_to_model.values()):
            raise ValueError("model label values must lie in 0..65535")

    @property
    def model_values(self) -> list[int]:
        return sorted({v for v in self.source_to_model.values() if v})

    def apply(self, array: np.ndarray) -> np.ndarray:
        dtype = np.uint8 if max(self.source_to_model.values(), default=0) < 256 else np.uint16
        out = np.zeros(array.shape, dtype=dtype)
        for source, model in self.source_to_model.items():
            out[array == source] = model
        return out


@dataclass(frozen=True)
class Segment:
    """One segment of a ``.seg.nrrd``: its label value, name and terminology codes."""

    value: int
    name: str
    color: tuple[int, int, int]
    terminology: dict

    def type_code(self) -> tuple[str, str, str] | None:
        t = self.terminology.get("type")
        return tuple(t) if t else None

    def modifier_code(self) -> tuple[str, str, str] | None:
        m = self.terminology.get("typeModifier")
        return tuple(m) if m else None

    def matches(self, type_value: str, modifier_value: str | None = None) -> bool:
        """Whether this segment's terminology type (and type modifier) has these SNOMED CT values."""
        t, m = self.type_code(), self.modifier_code()
        return bool(t and t[1] == type_value and (m[1] if m else None) == modifier_value)


@dataclass
class LabelMap:
    volume: Volume  # (k, j, i) label values, IJK->RAS
    segments: tuple[Segment, ...] = ()

    def values_of(self, type_value: str, modifier_value: str | None = None) -> list[int]:
        """Label values of the segments with this terminology; raises if there is none."""
        found = [s.value for s in self.segments if s.matches(type_value, modifier_value)]
        if not found:
            names = ", ".join(f"{s.name} ({s.type_code()}, {s.modifier_code()})" for s in self.segments)
            raise ValueError(f"no segment with type {type_value} and modifier {modifier_value}; segments: {names}")
        return found


def read_label_map(path: str | Path) -> LabelMap:
    """Read a label map: a ``.seg.nrrd`` (with its segments' names and terminology, via slicerio)
    or any image file the core reads (values only)."""
    path = Path(path)
    if not path.name.lower().endswith(".seg.nrrd"):
        return LabelMap(read_volume(path))
    import slicerio

    seg = slicerio.read_segmentation(str(path))
    voxels = np.asarray(seg["voxels"])
    if voxels.ndim != 3:
        raise ValueError(f"{path}: segmentations with several layers (overlapping segments) are not supported")
    ijk_to_ras = ras_to_lps(np.asarray(seg["ijkToLPS"], dtype=float))  # the LPS<->RAS flip is its own inverse
    volume = Volume(np.ascontiguousarray(voxels.transpose(2, 1, 0)), ijk_to_ras)  # (i, j, k) -> (k, j, i)
    segments = tuple(
        Segment(int(s["labelValue"]), s.get("name", s["id"]), tuple(int(round(c * 255)) for c in s.get("color", (0, 0, 0))),
                dict(s.get("terminology", {})))
        for s in seg["segments"] if int(s.get("layer", 0)) == 0)
    return LabelMap(volume, segments)


@dataclass(frozen=True)
class CaseSource:
    """Where a case comes from: input images (in the card's input order) and a label map."""

    name: str
    images: tuple[Path, ...]
    labels: Path
    mapping: LabelMapping


@dataclass
class LoadedCase:
    """A case ready for training and evaluation.

    Attributes:
        volumes: the input volumes as read (what a user would segment).
        reference: model label values on ``volumes[0]``'s grid (the evaluation reference).
        prepared: network input ``(C, X, Y, Z)`` and labels ``(X, Y, Z)`` on the model grid.
    """

    name: str
    volumes: list[Volume]
    reference: Volume
    prepared: PreparedCase

    @property
    def model_spacing(self) -> np.ndarray:
        """Voxel spacing of the model grid in network layout order (x, y, z)."""
        return self.prepared.plan.model_grid.spacing


def load_case(source: CaseSource, preprocessing: Preprocessing) -> LoadedCase:
    volumes = [read_volume(p) for p in source.images]
    label_map = read_label_map(source.labels)
    return case_from_volumes(source.name, volumes, label_map.volume, source.mapping, preprocessing)


def case_from_volumes(name: str, volumes: Sequence[Volume], labels: Volume, mapping: LabelMapping,
                      preprocessing: Preprocessing) -> LoadedCase:
    """Remap ``labels`` to model values, bring them onto the first volume's grid (nearest neighbour)
    if they are not there already, and prepare the case with the core's preprocessing."""
    reference = labels.with_array(mapping.apply(labels.array))
    grid = volumes[0].grid
    if not reference.grid.same_as(grid):
        reference = resample(reference, grid, "nearest")
    prepared = prepare_case(list(volumes), preprocessing, reference)
    return LoadedCase(name, list(volumes), reference, prepared)


def label_counts(cases: Iterable[LoadedCase]) -> dict[int, int]:
    """Voxels per model label value on the model grid, over all cases (a quick sanity check)."""
    counts: dict[int, int] = {}
    for case in cases:
        values, n = np.unique(case.prepared.labels, return_counts=True)
        for v, c in zip(values.tolist(), n.tolist()):
            counts[v] = counts.get(v, 0) + c
    return counts
