"""``medsegai measure``: the measurement table for an existing label map or ``.seg.nrrd``."""

from __future__ import annotations

import argparse
from pathlib import Path

from typing import TYPE_CHECKING

from ..errors import InputImageError
from .reporting import Reporter

if TYPE_CHECKING:
    from ..image import Volume


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("segmentation", type=Path, help="label map (NIfTI, NRRD, ...) or Slicer .seg.nrrd")
    p.add_argument("--image", type=Path, help="image for intensity statistics (resampled onto the label grid if needed)")
    p.add_argument("--csv", type=Path, help="write CSV here (default: print to stdout)")
    p.add_argument("--json", type=Path, help="write JSON here")
    p.add_argument("--smoothing", type=float, default=0.5, help="surface smoothing factor (Slicer's default 0.5)")
    p.add_argument("--threads", type=int, help="labels measured at once (default: physical cores)")


def read_segmentation(path: Path) -> tuple[Volume, dict[int, str]]:
    """Label map and ``{label value: name}``; ``.seg.nrrd`` names come from its header."""
    import numpy as np

    from ..image import Volume, read_volume
    if path.name.lower().endswith(".seg.nrrd"):
        import slicerio

        seg = slicerio.read_segmentation(str(path))
        voxels = seg["voxels"]
        if voxels.ndim != 3:
            raise InputImageError(f"{path} has overlapping segments in several layers",
                                  "export one layer, or measure in Slicer's Segment Statistics")
        ijk_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(seg["ijkToLPS"], dtype=float)
        names = {int(s["labelValue"]): s.get("name", s["id"]) for s in seg["segments"]}
        return Volume(np.ascontiguousarray(voxels.transpose(2, 1, 0)), ijk_to_ras), names
    volume = read_volume(path)
    if volume.array.dtype.kind == "f" and not np.all(np.mod(volume.array, 1) == 0):
        raise InputImageError(f"{path} is not a label map (non-integer voxels)", "give an integer label map")
    values = [int(v) for v in np.unique(volume.array) if v != 0]
    if values and values[0] < 0:
        raise InputImageError(f"{path} has negative label values ({values[0]})",
                              "give a label map whose segments are numbered from 1 (0 is background)")
    return Volume(volume.array.astype(np.int32), volume.ijk_to_ras), {v: f"label {v}" for v in values}


def run(args: argparse.Namespace, reporter: Reporter) -> int:
    from ..image import read_volume, resample
    from ..measurements import measure, measurements_csv, write_measurements
    from ..process_hygiene import physical_cores
    from ..surfaces import SurfaceParameters

    labels, names = read_segmentation(args.segmentation)
    image = None
    if args.image:
        img = read_volume(args.image)
        image = img.array if img.grid.same_as(labels.grid) else resample(img, labels.grid, "linear").array
    # no surface files here, so no normals (they only shade rendered surfaces)
    params = SurfaceParameters(smoothing_factor=args.smoothing, compute_normals=False)
    rows = measure(labels.array, labels.ijk_to_ras, names, image, params, threads=args.threads or physical_cores())
    if args.csv or args.json:
        write_measurements(rows, args.csv, args.json, {"segmentation": str(args.segmentation)})
    if not args.csv:
        reporter.out.write(measurements_csv(rows))
    return 0
