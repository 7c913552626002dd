"""Write a segmentation result: ``.seg.nrrd``, NIfTI label map with labels JSON, surfaces and
measurements. Every file is written atomically."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .bundle import Label
from .fileio import write_text_atomic
from .image import Volume, write_volume
from .label_regions import label_boxes
from .pipeline import SegmentationResult
from .process_hygiene import physical_cores
from .segnrrd import SegmentInfo, write_seg_nrrd
from .terminology import labels_document, terminology_entry


@dataclass(frozen=True)
class OutputOptions:
    seg_nrrd: bool = True
    nifti: bool = False
    surfaces: tuple[str, ...] = ()  # "stl", "obj"
    measurements: bool = True
    smoothing: float = 0.5
    threads: int | None = None  # for surfaces and measurements; None: physical cores


def segment_infos(labels: list[Label]) -> list[SegmentInfo]:
    return [SegmentInfo(label.value, label.name, label.name, label.color_float, terminology_entry(label.terminology))
            for label in labels]


def safe_file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "segment"


def write_outputs(result: SegmentationResult, image: Volume, out_dir: Path, case: str,
                  options: OutputOptions = OutputOptions()) -> list[Path]:
    """Write the outputs of one case into ``out_dir``; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    labels = result.labels
    if options.seg_nrrd:
        path = out_dir / f"{case}.seg.nrrd"
        write_seg_nrrd(path, labels.array, labels.ijk_to_ras, segment_infos(result.found), options.smoothing)
        written.append(path)
    if options.nifti:
        written.append(write_volume(labels, out_dir / f"{case}_labels.nii.gz"))
        written.append(write_text_atomic(out_dir / f"{case}_labels.json", labels_document(result.card, result.found)))
    if options.surfaces or options.measurements:
        written += _write_surface_outputs(result, image, case, out_dir, options)
    return written


def _write_surface_outputs(result: SegmentationResult, image: Volume, case: str, out_dir: Path,
                           options: OutputOptions) -> list[Path]:
    """Surface files and the measurement table, which share one surface per label."""
    # imported here: label-only runs need not pay for VTK's import
    from .measurements import measure, write_measurements
    from .surfaces import SurfaceParameters, label_surfaces, write_surface

    labels, written = result.labels, []
    values = [x.value for x in result.found]
    threads = options.threads or physical_cores()
    boxes = result.boxes if set(values) <= set(result.boxes) else label_boxes(labels.array, values)
    # normals only shade the written files; areas, volumes and diameters do not use them
    params = SurfaceParameters(smoothing_factor=options.smoothing, compute_normals=bool(options.surfaces))
    surfaces = label_surfaces(labels.array, labels.ijk_to_ras, values, params, threads, boxes)
    for fmt in options.surfaces:
        folder = out_dir / f"{case}_surfaces"
        for label in result.found:
            written.append(write_surface(surfaces[label.value], folder / f"{safe_file_stem(label.name)}.{fmt}"))
    if options.measurements:
        rows = measure(labels.array, labels.ijk_to_ras, {x.value: x.name for x in result.found}, image.array, params,
                       surfaces, threads, boxes)
        csv_path, json_path = out_dir / f"{case}_measurements.csv", out_dir / f"{case}_measurements.json"
        write_measurements(rows, csv_path, json_path, {"model": result.card.id, "version": result.card.version,
                                                       "case": case})
        written += [csv_path, json_path]
    return written
