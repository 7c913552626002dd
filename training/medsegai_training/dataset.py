"""MSD / nnU-Net style data sets: ``dataset.json``, ``imagesTr/`` and ``labelsTr/``, and a check.

Layout (nnU-Net v2; NIfTI or NRRD, any ending SimpleITK reads)::

    Dataset/
      dataset.json        {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1},
                           "file_ending": ".nii.gz", "name": "...", "numTraining": 3}
      imagesTr/<case>_0000.nii.gz   channel 0 of <case> (then _0001, ... for further channels)
      labelsTr/<case>.nii.gz        label map, values as in "labels"

The Medical Segmentation Decathlon spelling of ``dataset.json`` is read too (``"modality"`` for
the channels, ``"labels": {"0": "background", "1": "liver"}``); its 4D multi-channel images are
not (convert them with nnU-Net's converter first). Cases are discovered from the files, so a case
with a missing channel or label is reported, never skipped silently.

:func:`check_dataset` reads every label map and every image header and returns a
:class:`DatasetReport`: geometry mismatches between channels and label (size, spacing, origin,
direction), empty labels, unexpected label values, missing or unreadable files, and spacing and
size statistics. Spacings and sizes are given along the model axes (x, y, z after the lossless
reorientation to RAS that preprocessing applies), so they compare with a plan's target spacing.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from MedSegAILib.geometry import Grid, Reorientation, compose_ijk_to_ras, ras_to_lps

from .data import CaseSource, LabelMapping

DATASET_FILE = "dataset.json"
# geometry tolerances: spacing relative, origin in mm (relative to the smallest voxel side), direction absolute
SPACING_RTOL = 1e-3
ORIGIN_TOL_VOXELS = 1e-2
DIRECTION_ATOL = 1e-3


class DatasetError(ValueError):
    """The data set folder or its ``dataset.json`` cannot be used."""


@dataclass(frozen=True)
class DatasetCase:
    name: str
    images: tuple[Path | None, ...]  # one per channel, None where the file is missing
    label: Path | None

    @property
    def complete(self) -> bool:
        return self.label is not None and all(p is not None for p in self.images)


@dataclass(frozen=True)
class Dataset:
    root: Path
    name: str
    channel_names: tuple[str, ...]  # in channel order
    labels: dict[str, int]  # name -> value, background included
    file_ending: str
    cases: tuple[DatasetCase, ...]
    declared_cases: int | None = None  # "numTraining" of dataset.json
    description: str = ""
    licence: str = ""

    @property
    def foreground_labels(self) -> dict[str, int]:
        return {name: value for name, value in self.labels.items() if value != 0}

    def case(self, name: str) -> DatasetCase:
        for c in self.cases:
            if c.name == name:
                return c
        raise DatasetError(f"no case {name!r} in {self.root}; cases: {', '.join(c.name for c in self.cases)}")

    def sources(self, names: Sequence[str] | None = None) -> list[CaseSource]:
        """Complete cases as :class:`~medsegai_training.data.CaseSource` (label values kept as they are)."""
        chosen = [self.case(n) for n in names] if names else [c for c in self.cases if c.complete]
        mapping = LabelMapping({v: v for v in self.foreground_labels.values()})
        out = []
        for c in chosen:
            if not c.complete:
                raise DatasetError(f"case {c.name} lacks files (run the dataset check)")
            out.append(CaseSource(c.name, tuple(c.images), c.label, mapping))  # type: ignore[arg-type]
        return out


def _labels_from_json(raw: dict) -> dict[str, int]:
    labels = raw.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DatasetError("dataset.json has no 'labels' object")
    out: dict[str, int] = {}
    for key, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise DatasetError(f"label {key!r} is a region (a list of values); regions are not supported")
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit() and not key.isdigit()):
            out[str(key)] = int(value)  # nnU-Net v2: name -> value
        elif str(key).isdigit():
            out[str(value)] = int(key)  # MSD: "value" -> name
        else:
            raise DatasetError(f"cannot read label entry {key!r}: {value!r}")
    if 0 not in out.values():
        out = {"background": 0, **out}
    if len(set(out.values())) != len(out):
        raise DatasetError(f"label values are not unique: {out}")
    return out


def _channels_from_json(raw: dict) -> tuple[str, ...]:
    channels = raw.get("channel_names", raw.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise DatasetError("dataset.json has no 'channel_names' (or MSD 'modality') object")
    keys = sorted(int(k) for k in channels)
    if keys != list(range(len(keys))):
        raise DatasetError(f"channel numbers must be 0..{len(keys) - 1}, got {keys}")
    return tuple(str(channels[str(k)]) for k in keys)


def load_dataset(root: str | Path) -> Dataset:
    """Read ``dataset.json`` and discover the cases of ``imagesTr``/``labelsTr``."""
    root = Path(root)
    path = root / DATASET_FILE
    if not path.is_file():
        raise DatasetError(f"{path} not found: a data set folder holds dataset.json, imagesTr/ and labelsTr/")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from None
    channels = _channels_from_json(raw)
    labels = _labels_from_json(raw)
    ending = str(raw.get("file_ending", ".nii.gz"))
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not images_dir.is_dir():
        raise DatasetError(f"{images_dir} not found")
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    found: dict[str, dict[int, Path]] = {}
    for p in sorted(images_dir.iterdir()):
        m = pattern.match(p.name)
        if m:
            found.setdefault(m.group(1), {})[int(m.group(2))] = p
    label_files = {}
    if labels_dir.is_dir():
        label_files = {p.name[: -len(ending)]: p for p in sorted(labels_dir.iterdir()) if p.name.endswith(ending)}
    cases = []
    for name in sorted(set(found) | set(label_files)):
        images = tuple(found.get(name, {}).get(c) for c in range(len(channels)))
        cases.append(DatasetCase(name, images, label_files.get(name)))
    if not cases:
        raise DatasetError(f"no cases in {images_dir} (files named <case>_0000{ending})")
    declared = raw.get("numTraining")
    return Dataset(root, str(raw.get("name", root.name)), channels, labels, ending, tuple(cases),
                   int(declared) if declared is not None else None, str(raw.get("description", "")),
                   str(raw.get("licence", raw.get("license", ""))))


# ---------------------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class Header:
    """Geometry of a file as SimpleITK reads it (LPS, file axis order)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    components: int = 1

    def grid(self) -> Grid:
        ijk_to_lps = compose_ijk_to_ras(self.spacing, np.reshape(self.direction, (3, 3)), self.origin)
        return Grid((self.size[2], self.size[1], self.size[0]), ras_to_lps(ijk_to_lps))

    def model_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Spacing and size along x, y, z after the lossless reorientation to RAS."""
        target = Reorientation.to_ras(self.grid()).target
        return target.spacing, np.asarray(target.size_ijk)


def read_header(path: Path) -> Header:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return Header(tuple(int(s) for s in reader.GetSize()), tuple(float(s) for s in reader.GetSpacing()),
                  tuple(float(s) for s in reader.GetOrigin()), tuple(float(s) for s in reader.GetDirection()),
                  int(reader.GetNumberOfComponents()))


def geometry_differences(a: Header, b: Header) -> list[str]:
    """What differs between two headers (empty when they share a grid)."""
    if len(a.size) != len(b.size):
        return [f"dimension {len(a.size)} vs {len(b.size)}"]
    out = []
    if a.size != b.size:
        out.append(f"size {list(a.size)} vs {list(b.size)}")
    if not np.allclose(a.spacing, b.spacing, rtol=SPACING_RTOL, atol=0):
        out.append(f"spacing {_fmt(a.spacing)} vs {_fmt(b.spacing)}")
    if not np.allclose(a.origin, b.origin, rtol=0, atol=ORIGIN_TOL_VOXELS * min(a.spacing)):
        out.append(f"origin {_fmt(a.origin)} vs {_fmt(b.origin)}")
    if not np.allclose(a.direction, b.direction, rtol=0, atol=DIRECTION_ATOL):
        out.append(f"direction {_fmt(a.direction)} vs {_fmt(b.direction)}")
    return out


def _fmt(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


PROBLEM_KINDS = ("missing_file", "unreadable", "geometry_mismatch", "empty_label", "unexpected_label_values",
                 "not_3d")
# problems that make a case unusable for training
BLOCKING = ("missing_file", "unreadable", "geometry_mismatch", "not_3d")


@dataclass
class Problem:
    case: str
    kind: str  # one of PROBLEM_KINDS
    message: str


@dataclass
class CaseCheck:
    name: str
    spacing: list[float] | None = None  # x, y, z (model axes) in mm
    size: list[int] | None = None  # x, y, z voxels
    label_values: list[int] = field(default_factory=list)
    label_voxels: dict[str, int] = field(default_factory=dict)  # label name -> voxel count
    problems: list[Problem] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not any(p.kind in BLOCKING for p in self.problems)


def _stats(values: np.ndarray) -> dict:
    return {"median": np.median(values, axis=0).round(4).tolist(), "min": values.min(axis=0).round(4).tolist(),
            "max": values.max(axis=0).round(4).tolist()}


@dataclass
class DatasetReport:
    dataset: str
    root: str
    channels: list[str]
    labels: dict[str, int]
    cases: list[CaseCheck]
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [p for c in self.cases for p in c.problems]

    @property
    def ok(self) -> bool:
        """No problem of any kind."""
        return not self.problems

    @property
    def usable_cases(self) -> list[str]:
        return [c.name for c in self.cases if c.usable]

    def statistics(self) -> dict:
        measured = [c for c in self.cases if c.spacing is not None]
        if not measured:
            return {}
        spacing = np.array([c.spacing for c in measured], float)
        size = np.array([c.size for c in measured], float)
        counts = {name: int(sum(c.label_voxels.get(name, 0) for c in self.cases)) for name in self.labels}
        present = {name: sum(1 for c in self.cases if c.label_voxels.get(name, 0) > 0) for name in self.labels}
        return {"cases": len(measured), "spacing_mm": _stats(spacing), "size_voxels": _stats(size),
                "label_voxels": counts, "cases_with_label": present}

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "root": self.root, "channels": self.channels, "labels": self.labels,
                "ok": self.ok, "usable_cases": self.usable_cases, "statistics": self.statistics(),
                "problems": [asdict(p) for p in self.problems], "notes": list(self.notes),
                "cases": [{**{k: v for k, v in asdict(c).items() if k != "problems"}, "usable": c.usable}
                          for c in self.cases]}

    def text(self) -> str:
        lines = [f"data set {self.dataset} ({self.root})",
                 f"  channels: {', '.join(self.channels)}; labels: "
                 + ", ".join(f"{v} {n}" for n, v in sorted(self.labels.items(), key=lambda x: x[1])),
                 f"  cases: {len(self.cases)}, usable for training: {len(self.usable_cases)}"]
        stats = self.statistics()
        if stats:
            for key, unit in (("spacing_mm", "mm"), ("size_voxels", "voxels")):
                s = stats[key]
                lines.append(f"  {key.split('_')[0]} (x, y, z) {unit}: median {_fmt(s['median'])}, "
                             f"min {_fmt(s['min'])}, max {_fmt(s['max'])}")
            lines.append("  cases containing each label: "
                         + ", ".join(f"{n} {k}" for n, k in stats["cases_with_label"].items() if self.labels[n]))
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.ok:
            lines.append("  no problems found")
        else:
            lines.append(f"  {len(self.problems)} problem(s):")
            lines.extend(f"    {p.case}: {p.kind}: {p.message}" for p in self.problems)
        return "\n".join(lines)


def check_case(dataset: Dataset, case: DatasetCase) -> CaseCheck:
    check = CaseCheck(case.name)
    add = lambda kind, message: check.problems.append(Problem(case.name, kind, message))  # noqa: E731
    for c, path in enumerate(case.images):
        if path is None:
            add("missing_file", f"image of channel {c} ({dataset.channel_names[c]}): "
                                f"imagesTr/{case.name}_{c:04d}{dataset.file_ending} not found")
    if case.label is None:
        add("missing_file", f"label map labelsTr/{case.name}{dataset.file_ending} not found")
    headers: dict[str, Header] = {}
    for c, path in enumerate(case.images):
        if path is not None:
            try:
                headers[f"channel {c}"] = read_header(path)
            except RuntimeError as exc:
                add("unreadable", f"{path.name}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}")
    label_image = None
    if case.label is not None:
        try:
            label_image = sitk.ReadImage(str(case.label))
            headers["label"] = Header(tuple(label_image.GetSize()), tuple(label_image.GetSpacing()),
                                      tuple(label_image.GetOrigin()), tuple(label_image.GetDirection()),
                                      label_image.GetNumberOfComponentsPerPixel())
        except RuntimeError as exc:
            add("unreadable", f"{case.label.name}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}")
    for what, h in headers.items():
        if len(h.size) != 3 or h.components != 1 or min(h.size) < 2:
            add("not_3d", f"{what} has size {list(h.size)} with {h.components} component(s); a 3D scalar volume is needed")
    if any(p.kind == "not_3d" for p in check.problems):
        return check
    if headers:
        first_key = next(iter(headers))
        first = headers[first_key]
        spacing, size = first.model_axes()
        check.spacing, check.size = spacing.round(6).tolist(), [int(s) for s in size]
        for what, h in headers.items():
            if what == first_key:
                continue
            diffs = geometry_differences(first, h)
            if diffs:
                add("geometry_mismatch", f"{what} vs {first_key}: " + "; ".join(diffs))
    if label_image is not None:
        array = sitk.GetArrayViewFromImage(label_image)
        if array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
            add("unexpected_label_values", "label map holds non-integer values")
        values, counts = np.unique(array, return_counts=True)
        check.label_values = [int(v) for v in values]
        by_value = dict(zip(check.label_values, (int(n) for n in counts)))
        check.label_voxels = {name: by_value.get(v, 0) for name, v in dataset.labels.items()}
        unexpected = sorted(set(check.label_values) - set(dataset.labels.values()))
        if unexpected:
            add("unexpected_label_values", f"values {unexpected} are not in dataset.json labels "
                                           f"{sorted(dataset.labels.values())} ({sum(by_value[v] for v in unexpected)} voxels)")
        if not any(v != 0 for v in check.label_values):
            add("empty_label", "the label map holds background only")
    return check


def check_dataset(dataset: Dataset | str | Path, cases: Sequence[str] | None = None, progress=None) -> DatasetReport:
    """Check every case (or the named ones); ``progress(i, n, name)`` is called before each."""
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    chosen = [dataset.case(n) for n in cases] if cases else list(dataset.cases)
    checks = []
    for i, case in enumerate(chosen):
        if progress is not None:
            progress(i, len(chosen), case.name)
        checks.append(check_case(dataset, case))
    notes = []
    if dataset.declared_cases is not None and not cases and dataset.declared_cases != len(dataset.cases):
        notes.append(f"dataset.json says numTraining {dataset.declared_cases}, {len(dataset.cases)} case(s) found")
    return DatasetReport(dataset.name, str(dataset.root), list(dataset.channel_names), dict(dataset.labels), checks,
                         notes)
