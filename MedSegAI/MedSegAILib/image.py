"""The image type of MedSegAI and its file I/O.

A :class:`Volume` is a voxel array in ``(k, j, i)`` order plus its exact IJK->RAS matrix. Files
are read and written with SimpleITK (NIfTI, NRRD, MHA/MHD, DICOM series folders); SimpleITK
geometry is LPS, converted here and nowhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputImageError
from .fileio import atomic_path
from .geometry import Grid, compose_ijk_to_ras, crop_grid, direction_of, ras_to_lps, spacing_of



@dataclass
class Volume:
    """Voxels ``(k, j, i)`` and their IJK->RAS matrix (see :mod:`.geometry`)."""

    array: np.ndarray
    ijk_to_ras: np.ndarray

    def __post_init__(self) -> None:
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=float)
        if self.array.ndim != 3:
            raise ValueError(f"Volume arrays are (k, j, i); got shape {self.array.shape}")
        if self.ijk_to_ras.shape != (4, 4):
            raise ValueError("ijk_to_ras must be a 4x4 matrix")

    @property
    def grid(self) -> Grid:
        return Grid(tuple(int(s) for s in self.array.shape), self.ijk_to_ras)

    @property
    def spacing(self) -> np.ndarray:
        return spacing_of(self.ijk_to_ras)

    def with_array(self, array: np.ndarray) -> "Volume":
        return Volume(array, self.ijk_to_ras.copy())

    def crop(self, start_ijk, stop_ijk) -> "Volume":
        """The voxels ``start <= (i, j, k) < stop``, each where it was in RAS (a view of the array)."""
        (i0, j0, k0), (i1, j1, k1) = start_ijk, stop_ijk
        return Volume(self.array[k0:k1, j0:j1, i0:i1], crop_grid(self.grid, start_ijk, stop_ijk).ijk_to_ras)


def volume_from_sitk(image: sitk.Image) -> Volume:
    direction_lps = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    ijk_to_lps = compose_ijk_to_ras(image.GetSpacing(), direction_lps, image.GetOrigin())
    return Volume(sitk.GetArrayFromImage(image), ras_to_lps(ijk_to_lps))


def volume_to_sitk(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array), isVector=False)
    set_sitk_geometry(image, volume.grid)
    return image


def set_sitk_geometry(image: sitk.Image, grid: Grid) -> None:
    ijk_to_lps = ras_to_lps(grid.ijk_to_ras)
    image.SetSpacing(tuple(float(s) for s in spacing_of(ijk_to_lps)))
    image.SetDirection(tuple(float(v) for v in direction_of(ijk_to_lps).ravel()))
    image.SetOrigin(tuple(float(v) for v in ijk_to_lps[:3, 3]))


def read_volume(path: str | os.PathLike, allow_vector: bool = False) -> Volume:
    """Read one 3D scalar volume from a file or a DICOM series folder.

    Raises:
        InputImageError: the path is missing or unreadable, or the image is 2D, 4D, vector-valued
            or holds NaN/Inf voxels -- with a message naming the file and what to do.
    """
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"input not found: {path}", "check the path; folders are read as DICOM series")
    try:
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reader error"
        raise InputImageError(
            f"cannot read {path}: {first_line}",
            "MedSegAI reads NIfTI (.nii/.nii.gz), NRRD, MetaImage (.mha/.mhd) and DICOM series folders",
        ) from None
    return _checked_volume(image, path, allow_vector)


def _read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputImageError(f"no DICOM series in folder {folder}", "point to a folder holding one DICOM series")
    # The series with the most slices is the volume; localizers and scouts have few files.
    files = max((reader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len)
    _check_slice_spacing(folder, files)
    reader.SetFileNames(files)
    return reader.Execute()


def _check_slice_spacing(folder: Path, files) -> None:
    """Refuse series with missing slices or variable slice spacing: stacking them on a regular
    grid would silently misplace anatomy (ITK only warns)."""
    if len(files) < 3:
        return
    positions = []
    normal = None
    for name in files:
        header = sitk.ImageFileReader()
        header.SetFileName(name)
        header.ReadImageInformation()
        if not (header.HasMetaDataKey("0020|0032") and header.HasMetaDataKey("0020|0037")):
            return
        if normal is None:
            row_col = np.array([float(v) for v in header.GetMetaData("0020|0037").split("\\")])
            normal = np.cross(row_col[:3], row_col[3:])
        positions.append(float(np.dot(normal, [float(v) for v in header.GetMetaData("0020|0032").split("\\")])))
    gaps = np.diff(np.sort(positions))
    if gaps.min() <= 1e-3 or (gaps.max() - gaps.min()) > 0.01 * max(gaps.mean(), 1e-6) + 1e-3:
        raise InputImageError(
            f"DICOM series in {folder} has uneven slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm; "
            "missing or duplicate slices?)",
            "check that the folder holds one complete series; re-export it from PACS if slices are missing",
        )


def _checked_volume(image: sitk.Image, path: Path, allow_vector: bool) -> Volume:
    dim = image.GetDimension()
    if dim == 2 or (dim == 3 and image.GetSize()[2] == 1):
        raise InputImageError(
            f"{path} is a 2D image {image.GetSize()[:2]}; MedSegAI segments 3D volumes",
            "load the whole series (a folder of DICOM slices) or a 3D file",
        )
    if dim == 4:
        if image.GetSize()[3] != 1:
            raise InputImageError(
                f"{path} is a 4D image with {image.GetSize()[3]} time points or channels",
                "extract one 3D volume (e.g. one time point) or give each channel as a separate input",
            )
        image = image[:, :, :, 0]
    if image.GetNumberOfComponentsPerPixel() != 1 and not allow_vector:
        raise InputImageError(
            f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel (vector or RGB image)",
            "the model expects one scalar channel; convert to a scalar volume or give channels as separate inputs",
        )
    volume = volume_from_sitk(image)
    if volume.array.dtype.kind == "f" and not np.isfinite(volume.array).all():
        bad = int((~np.isfinite(volume.array)).sum())
        raise InputImageError(
            f"{path} holds {bad} NaN or infinite voxels",
            "fix the export (or replace them, e.g. with the background value) before segmenting",
        )
    return volume


def write_volume(volume: Volume, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write a volume with its exact geometry; the file appears only once it is complete."""
    path = Path(path)
    with atomic_path(path) as tmp:
        sitk.WriteImage(volume_to_sitk(volume), str(tmp), compress)
    return path


def resample(volume: Volume, grid: Grid, interpolation: str = "linear", default: float = 0.0) -> Volume:
    """Resample ``volume`` onto ``grid`` in physical space (any orientations).

    ``interpolation``: ``"nearest"``, ``"linear"`` or ``"bspline"``.
    """
    if volume.grid.same_as(grid):
        return volume.with_array(volume.array.copy())
    interpolators = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline}
    reference = sitk.Image(*grid.size_ijk, sitk.sitkUInt8)
    set_sitk_geometry(reference, grid)
    source = volume_to_sitk(volume)
    pixel = source.GetPixelID() if interpolation == "nearest" else sitk.sitkFloat32
    out = sitk.Resample(source, reference, sitk.Transform(), interpolators[interpolation], default, pixel)
    return Volume(sitk.GetArrayFromImage(out), grid.ijk_to_ras.copy())
