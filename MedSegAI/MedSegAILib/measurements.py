"""Per-segment measurements: voxel and surface volume, area, centroid, extent, maximum diameter
and intensity statistics of the input image. Written as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from .fileio import write_text_atomic
from .label_regions import centroid_ras, label_boxes, whole_box
from .surfaces import SurfaceParameters, label_surface, surface_area_volume, surface_points

PERCENTILES = (5, 25, 75, 95)


@dataclass
class SegmentMeasurement:
    name: str
    label_value: int
    voxel_count: int
    volume_mm3: float
    volume_ml: float
    surface_area_mm2: float
    surface_volume_mm3: float
    centroid_ras: list[float]
    bbox_ras_min: list[float]
    bbox_ras_max: list[float]
    max_diameter_mm: float
    intensity: dict[str, float] = field(default_factory=dict)

    def flat(self) -> dict:
        d = asdict(self)
        intensity = d.pop("intensity")
        for key in ("centroid_ras", "bbox_ras_min", "bbox_ras_max"):
            for axis, v in zip("RAS", d.pop(key)):
                d[f"{key}_{axis}"] = v
        d.update({f"intensity_{k}": v for k, v in intensity.items()})
        return d


def max_diameter(points: np.ndarray) -> float:
    """Largest distance between two points (Feret diameter), via the convex hull."""
    if len(points) < 2:
        return 0.0
    try:
        candidates = points[ConvexHull(points).vertices] if len(points) > 4 else points
    except QhullError:  # flat or degenerate point set: all points are candidates
        candidates = points
    if len(candidates) > 4000:  # hull of a huge, finely tessellated surface: thin it out
        candidates = candidates[:: len(candidates) // 4000 + 1]
    return float(pdist(candidates).max())


def intensity_statistics(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    # one partition for the median and the percentiles; sums in float64 without a float64 copy
    q = np.percentile(values, (50, *PERCENTILES))
    stats = {"min": values.min(), "max": values.max(), "mean": values.mean(dtype=np.float64),
             "std": values.std(dtype=np.float64), "median": q[0]}
    stats.update({f"p{p:02d}": x for p, x in zip(PERCENTILES, q[1:])})
    return {k: float(x) for k, x in stats.items()}


def measure_segment(labels: np.ndarray, ijk_to_ras: np.ndarray, value: int, name: str,
                    image: np.ndarray | None = None,
                    surface_params: SurfaceParameters = SurfaceParameters(), surface=None,
                    box: tuple[slice, ...] | None = None) -> SegmentMeasurement:
    """Measure label ``value``; ``image`` (same grid) adds intensity statistics. ``surface``: the
    label's closed surface when the caller already built it (it is built otherwise). ``box``:
    index slices that hold every voxel of the label (its bounding box), so only they are read."""
    region = box or whole_box(labels.shape)
    mask = labels[region] == value
    count = int(np.count_nonzero(mask))
    voxel_mm3 = float(abs(np.linalg.det(np.asarray(ijk_to_ras)[:3, :3])))
    poly = surface if surface is not None else label_surface(labels, ijk_to_ras, value, surface_params, box)
    area, surface_volume = surface_area_volume(poly)
    points = surface_points(poly)
    if count:
        centroid = centroid_ras(mask, ijk_to_ras, tuple(r.start for r in region))
        bounds_min, bounds_max = points.min(axis=0), points.max(axis=0)
    else:
        centroid = bounds_min = bounds_max = np.full(3, np.nan)
    return SegmentMeasurement(
        name=name, label_value=int(value), voxel_count=count, volume_mm3=count * voxel_mm3,
        volume_ml=count * voxel_mm3 / 1000.0, surface_area_mm2=area, surface_volume_mm3=surface_volume,
        centroid_ras=[float(x) for x in centroid], bbox_ras_min=[float(x) for x in bounds_min],
        bbox_ras_max=[float(x) for x in bounds_max], max_diameter_mm=max_diameter(points),
        intensity=intensity_statistics(image[region][mask]) if image is not None else {},
    )


def measure(labels: np.ndarray, ijk_to_ras: np.ndarray, names: dict[int, str], image: np.ndarray | None = None,
            surface_params: SurfaceParameters = SurfaceParameters(), surfaces: dict | None = None,
            threads: int = 1, boxes: dict[int, tuple[slice, ...] | None] | None = None) -> list[SegmentMeasurement]:
    """One row per label of ``names``, measured by ``threads`` threads. ``surfaces`` and ``boxes``:
    the labels' closed surfaces and bounding boxes, when the caller already has them."""
    surfaces = surfaces or {}
    boxes = boxes if boxes is not None else label_boxes(labels, names)
    empty = whole_box((0,) * labels.ndim)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(lambda v: measure_segment(labels, ijk_to_ras, v, names[v], image, surface_params,
                                                       surfaces.get(v), boxes[v] or empty), names))


def measurements_csv(rows: list[SegmentMeasurement]) -> str:
    flat = [r.flat() for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def write_measurements(rows: list[SegmentMeasurement], csv_path: Path | None, json_path: Path | None,
                       metadata: dict | None = None) -> None:
    if csv_path is not None:
        write_text_atomic(csv_path, measurements_csv(rows))
    if json_path is not None:
        doc = {**(metadata or {}), "segments": [asdict(r) for r in rows]}
        write_text_atomic(json_path, json.dumps(_finite_or_none(doc), indent=2, allow_nan=False))


def _finite_or_none(value):
    """JSON has no NaN: empty segments have no centroid, written as null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value
