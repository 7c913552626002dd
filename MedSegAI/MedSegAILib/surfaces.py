"""Closed surfaces from label maps with the same VTK pipeline and parameters as 3D Slicer.

Mirrors ``vtkBinaryLabelmapToClosedSurfaceConversionRule`` (flying-edges method): pad if the
label touches the border, discrete flying edges in IJK, optional decimation, windowed-sinc
smoothing, IJK->RAS transform, consistent normals. So areas and volumes match what the user sees
in Slicer. Labels are cropped to their bounding box first (index coordinates are kept, so the
surface is identical) to stay fast on large volumes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# VTK's classes from their own modules: ``import vtk`` loads every VTK module (0.8 s against 0.3 s)
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkCommonTransforms import vtkTransform
from vtkmodules.vtkFiltersCore import vtkDecimatePro, vtkMassProperties, vtkPolyDataNormals, vtkWindowedSincPolyDataFilter
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D, vtkTransformPolyDataFilter
from vtkmodules.vtkImagingCore import vtkImageConstantPad
from vtkmodules.vtkIOGeometry import vtkOBJWriter, vtkSTLWriter

from .fileio import atomic_path
from .label_regions import label_boxes, nonzero_box, whole_box


@dataclass(frozen=True)
class SurfaceParameters:
    """Slicer's conversion parameters; defaults are Slicer's."""

    smoothing_factor: float = 0.5
    decimation_factor: float = 0.0
    compute_normals: bool = True


def _image_from_mask(mask: np.ndarray, start_kji: tuple[int, int, int]) -> vtkImageData:
    image = vtkImageData()
    nk, nj, ni = mask.shape
    k0, j0, i0 = start_kji
    image.SetExtent(i0, i0 + ni - 1, j0, j0 + nj - 1, k0, k0 + nk - 1)
    scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(mask, dtype=np.uint8).ravel(), deep=True,
                                         array_type=VTK_UNSIGNED_CHAR)
    scalars.SetName("ImageScalars")  # Slicer removes this array from the surface; so do we
    image.GetPointData().SetScalars(scalars)
    return image


def label_surface(labels: np.ndarray, ijk_to_ras: np.ndarray, label_value: int,
                  params: SurfaceParameters = SurfaceParameters(),
                  box: tuple[slice, ...] | None = None) -> vtkPolyData:
    """Closed surface (RAS, mm) of the voxels of ``labels`` equal to ``label_value``; empty
    polydata when there are none. ``box``: index slices known to hold every voxel of the label
    (e.g. from :func:`.label_regions.label_boxes`), so that only they are searched."""
    region = box or whole_box(labels.shape)
    tight = nonzero_box(labels[region] == label_value)
    if tight is None:
        return vtkPolyData()
    first = [r.start + t.start for r, t in zip(region, tight)]
    stop = [r.start + t.stop for r, t in zip(region, tight)]
    # crop with a one-voxel margin of zeros; where the label touches the volume border the margin
    # is missing and the image is padded, exactly like Slicer pads the whole labelmap
    lo = [max(0, f - 1) for f in first]
    hi = [min(n, s + 1) for n, s in zip(labels.shape, stop)]
    crop = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == label_value
    touches_border = any(f == 0 or s == n for f, s, n in zip(first, stop, labels.shape))
    image = _image_from_mask(crop, tuple(lo))
    if touches_border:
        pad = vtkImageConstantPad()
        pad.SetInputData(image)
        e = image.GetExtent()
        pad.SetOutputWholeExtent(e[0] - 1, e[1] + 1, e[2] - 1, e[3] + 1, e[4] - 1, e[5] + 1)
        pad.Update()
        image = pad.GetOutput()

    surface = vtkDiscreteFlyingEdges3D()
    surface.SetInputData(image)
    surface.ComputeGradientsOff()
    surface.ComputeNormalsOff()
    surface.SetValue(0, 1)
    surface.Update()
    poly: vtkPolyData = surface.GetOutput()

    if params.decimation_factor > 0:
        decimate = vtkDecimatePro()
        decimate.SetInputData(poly)
        decimate.SetFeatureAngle(60)
        decimate.SplittingOff()
        decimate.PreserveTopologyOn()
        decimate.SetMaximumError(1)
        decimate.SetTargetReduction(params.decimation_factor)
        decimate.Update()
        poly = decimate.GetOutput()

    if params.smoothing_factor > 0:
        smoother = vtkWindowedSincPolyDataFilter()
        smoother.SetInputData(poly)
        smoother.SetNumberOfIterations(int(20 + params.smoothing_factor * 40))
        smoother.SetPassBand(10.0 ** (-4.0 * params.smoothing_factor))
        smoother.BoundarySmoothingOff()
        smoother.FeatureEdgeSmoothingOff()
        smoother.NonManifoldSmoothingOn()
        smoother.NormalizeCoordinatesOn()
        smoother.Update()
        poly = smoother.GetOutput()

    transform = vtkTransform()
    matrix = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(ijk_to_ras[r][c]))
    transform.SetMatrix(matrix)
    to_world = vtkTransformPolyDataFilter()
    to_world.SetInputData(poly)
    to_world.SetTransform(transform)
    to_world.Update()
    poly = to_world.GetOutput()

    if params.compute_normals:
        normals = vtkPolyDataNormals()
        normals.SetInputData(poly)
        normals.ConsistencyOn()
        normals.SplittingOff()
        normals.Update()
        poly = normals.GetOutput()

    result = vtkPolyData()
    result.DeepCopy(poly)
    result.GetPointData().RemoveArray("ImageScalars")
    return result


def label_surfaces(labels: np.ndarray, ijk_to_ras: np.ndarray, values: list[int],
                   params: SurfaceParameters = SurfaceParameters(), threads: int = 1,
                   boxes: dict[int, tuple[slice, ...] | None] | None = None) -> dict[int, vtkPolyData]:
    """:func:`label_surface` of each of ``values``, built by ``threads`` threads (VTK releases
    the GIL in its filters: 4 surfaces of a 512x512x600 CT took 6.8 s on 2 threads, 11.5 s on
    one). ``boxes``: the labels' bounding boxes, when the caller has them."""
    boxes = boxes if boxes is not None else label_boxes(labels, values)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        built = pool.map(lambda v: label_surface(labels, ijk_to_ras, v, params, boxes[v]), values)
        return dict(zip(values, built))


def surface_area_volume(poly: vtkPolyData) -> tuple[float, float]:
    """Surface area (mm²) and enclosed volume (mm³) of a closed triangle surface (vtkMassProperties,
    as Slicer's closed-surface statistics)."""
    if poly.GetNumberOfPolys() == 0:
        return 0.0, 0.0
    props = vtkMassProperties()
    props.SetInputData(poly)
    props.Update()
    return props.GetSurfaceArea(), props.GetVolume()


def surface_points(poly: vtkPolyData) -> np.ndarray:
    if poly.GetNumberOfPoints() == 0:
        return np.zeros((0, 3))
    return numpy_support.vtk_to_numpy(poly.GetPoints().GetData()).astype(float)


def write_surface(poly: vtkPolyData, path: str | Path, coordinate_system: str = "LPS") -> Path:
    """Write STL (binary) or OBJ; LPS by default like Slicer's model export, which records the
    space in the file (``SPACE=LPS`` in the STL header, a comment in OBJ)."""
    path = Path(path)
    data = poly
    if coordinate_system == "LPS":
        flip = vtkTransform()
        flip.Scale(-1, -1, 1)
        f = vtkTransformPolyDataFilter()
        f.SetInputData(poly)
        f.SetTransform(flip)
        f.Update()
        data = f.GetOutput()
    elif coordinate_system != "RAS":
        raise ValueError("coordinate_system is LPS or RAS")
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".stl":
            writer = vtkSTLWriter()
            writer.SetFileTypeToBinary()
            writer.SetHeader(f"SPACE={coordinate_system}")
        elif suffix == ".obj":
            writer = vtkOBJWriter()
        else:
            raise ValueError("surface files are .stl or .obj")
        writer.SetFileName(str(tmp))
        writer.SetInputData(data)
        if not writer.Write():
            raise OSError(f"VTK could not write {path}")
        if suffix == ".obj":
            text = tmp.read_text()
            tmp.write_text(f"# SPACE={coordinate_system}\n" + text)
    return path


__all__ = ["SurfaceParameters", "label_surface", "label_surfaces", "surface_area_volume", "surface_points", "write_surface"]
