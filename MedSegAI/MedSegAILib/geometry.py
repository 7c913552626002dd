"""Voxel-grid geometry: IJK->RAS matrices, LPS/RAS conversion and lossless reorientation.

Conventions used everywhere in MedSegAI:

* voxel arrays are indexed ``(k, j, i)`` like SimpleITK's ``GetArrayFromImage`` and Slicer's
  ``arrayFromVolume``;
* a grid's geometry is one 4x4 ``ijk_to_ras`` matrix whose upper-left 3x3 block holds the
  direction cosines multiplied by the spacing (one column per voxel axis) and whose last column
  is the RAS position of voxel (0, 0, 0) -- exactly Slicer's ``IJKToRAS`` matrix;
* files on disk are LPS (DICOM, NRRD, MetaImage and SimpleITK), converted once at the I/O boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Grid:
    """A voxel grid: array shape ``(k, j, i)`` and its IJK->RAS matrix."""

    shape: tuple[int, int, int]
    ijk_to_ras: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return spacing_of(self.ijk_to_ras)

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        return (self.shape[2], self.shape[1], self.shape[0])

    def same_as(self, other: "Grid", tol: float = 1e-4) -> bool:
        return self.shape == other.shape and np.allclose(self.ijk_to_ras, other.ijk_to_ras, atol=tol)


def spacing_of(ijk_to_ras: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(ijk_to_ras)[:3, :3], axis=0)


def direction_of(ijk_to_ras: np.ndarray) -> np.ndarray:
    """Unit direction cosines (columns = voxel axes) in RAS."""
    m = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    return m / spacing_of(ijk_to_ras)


def compose_ijk_to_ras(spacing, direction_ras, origin_ras) -> np.ndarray:
    """Build IJK->RAS from spacing (i, j, k), a 3x3 RAS direction (columns) and the RAS origin."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(direction_ras, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)
    m[:3, 3] = np.asarray(origin_ras, dtype=float)
    return m


def ras_to_lps(matrix: np.ndarray) -> np.ndarray:
    """Convert an IJK->RAS matrix to IJK->LPS (and back: the operation is its own inverse)."""
    return LPS_TO_RAS @ np.asarray(matrix, dtype=float)


def orientation_code(ijk_to_ras: np.ndarray) -> str:
    """Closest anatomical orientation of the i, j, k axes, e.g. ``"RAS"`` or ``"LPS"`` (the letter
    names the direction each axis points *to*, the RAS convention of nibabel and MONAI)."""
    perm, signs = closest_axes(ijk_to_ras)
    letters = {0: "LR", 1: "PA", 2: "IS"}
    code = [""] * 3
    for ras_axis, voxel_axis in enumerate(perm):
        code[voxel_axis] = letters[ras_axis][1 if signs[ras_axis] > 0 else 0]
    return "".join(code)


def closest_axes(ijk_to_ras: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """For each RAS axis, the voxel axis (0=i, 1=j, 2=k) closest to it and the sign of that axis.

    Assignment is greedy on the largest absolute direction cosine, which is unambiguous for
    any real scanner orientation (oblique up to 45 degrees per axis pair).
    """
    cos = np.abs(direction_of(ijk_to_ras))  # rows: RAS axes, columns: voxel axes
    d = direction_of(ijk_to_ras)
    perm = [-1, -1, -1]
    free_rows, free_cols = {0, 1, 2}, {0, 1, 2}
    for _ in range(3):
        best = max(((r, c) for r in free_rows for c in free_cols), key=lambda rc: cos[rc])
        perm[best[0]] = best[1]
        free_rows.discard(best[0])
        free_cols.discard(best[1])
    signs = tuple(1 if d[r, perm[r]] >= 0 else -1 for r in range(3))
    return tuple(perm), signs  # type: ignore[return-value]


@dataclass(frozen=True)
class Reorientation:
    """A lossless axis permutation and flip that brings a grid to the closest RAS orientation.

    Arrays are ``(k, j, i)``. :meth:`apply` maps source arrays to the canonical grid and
    :meth:`invert` maps canonical arrays back voxel-for-voxel, so a result computed in the
    canonical grid lands on the source grid with no interpolation.
    """

    source: Grid
    perm: tuple[int, int, int]  # canonical axis r (x, y, z) takes source voxel axis perm[r] (i, j, k)
    flip: tuple[bool, bool, bool]  # canonical axis r is flipped

    @classmethod
    def to_ras(cls, grid: Grid) -> "Reorientation":
        perm, signs = closest_axes(grid.ijk_to_ras)
        return cls(grid, perm, tuple(s < 0 for s in signs))

    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flip)

    @property
    def target(self) -> Grid:
        size_ijk = self.source.size_ijk
        new_size = [size_ijk[p] for p in self.perm]
        # index map canonical -> source: src[perm[r]] = flip ? n-1-dst[r] : dst[r]
        t = np.zeros((4, 4))
        t[3, 3] = 1.0
        for r, p in enumerate(self.perm):
            if self.flip[r]:
                t[p, r] = -1.0
                t[p, 3] = new_size[r] - 1
            else:
                t[p, r] = 1.0
        return Grid((new_size[2], new_size[1], new_size[0]), self.source.ijk_to_ras @ t)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Source ``(..., k, j, i)`` array -> canonical ``(..., z, y, x)`` array (a view when possible)."""
        lead = array.ndim - 3
        ijk = np.moveaxis(array, (-1, -2, -3), (-3, -2, -1))  # (..., i, j, k)
        xyz = np.transpose(ijk, list(range(lead)) + [lead + p for p in self.perm])
        for r, f in enumerate(self.flip):
            if f:
                xyz = np.flip(xyz, axis=lead + r)
        return np.moveaxis(xyz, (-1, -2, -3), (-3, -2, -1))

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Canonical ``(..., z, y, x)`` array -> source ``(..., k, j, i)`` array."""
        lead = array.ndim - 3
        xyz = np.moveaxis(array, (-1, -2, -3), (-3, -2, -1))
        for r, f in enumerate(self.flip):
            if f:
                xyz = np.flip(xyz, axis=lead + r)
        inverse = np.argsort(self.perm)
        ijk = np.transpose(xyz, list(range(lead)) + [lead + int(q) for q in inverse])
        return np.ascontiguousarray(np.moveaxis(ijk, (-1, -2, -3), (-3, -2, -1)))


def grid_with_spacing(grid: Grid, target_spacing) -> Grid:
    """The grid covering the same field of view as ``grid`` with voxels of about ``target_spacing``.

    Sizes are rounded (at least one voxel) and the spacing is then adjusted so that the outer
    voxel edges stay exactly where they were; directions are kept.
    """
    spacing = grid.spacing
    target = np.asarray(target_spacing, dtype=float)
    size = np.asarray(grid.size_ijk, dtype=float)
    new_size = np.maximum(1, np.round(size * spacing / target)).astype(int)
    new_spacing = size * spacing / new_size
    direction = direction_of(grid.ijk_to_ras)
    # keep the corner of voxel 0 (at -0.5 voxel) fixed: origin moves by half the spacing change
    origin = grid.ijk_to_ras[:3, 3] + direction @ ((new_spacing - spacing) / 2.0)
    m = compose_ijk_to_ras(new_spacing, direction, origin)
    return Grid((int(new_size[2]), int(new_size[1]), int(new_size[0])), m)


def crop_grid(grid: Grid, start_ijk, stop_ijk) -> Grid:
    """Sub-grid of voxels ``start <= ijk < stop``."""
    m = grid.ijk_to_ras.copy()
    m[:3, 3] = (grid.ijk_to_ras @ np.r_[np.asarray(start_ijk, float), 1.0])[:3]
    size = np.asarray(stop_ijk) - np.asarray(start_ijk)
    return Grid((int(size[2]), int(size[1]), int(size[0])), m)


def ras_box_to_ijk_slices(grid: Grid, ras_min, ras_max) -> tuple[np.ndarray, np.ndarray]:
    """Voxel index bounds ``[start, stop)`` (i, j, k) of the grid's voxels whose centres lie in the
    axis-aligned RAS box, clipped to the grid. Works for oblique grids (box corners are mapped)."""
    lo, hi = np.minimum(ras_min, ras_max), np.maximum(ras_min, ras_max)
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    ijk = (np.linalg.inv(grid.ijk_to_ras) @ corners.T)[:3].T
    start = np.clip(np.ceil(ijk.min(axis=0) - 1e-6), 0, grid.size_ijk).astype(int)
    stop = np.clip(np.floor(ijk.max(axis=0) + 1e-6) + 1, 0, grid.size_ijk).astype(int)
    return start, stop


def voxel_centres_in_ras_box(grid: Grid, ras_min, ras_max) -> np.ndarray:
    """Boolean ``(k, j, i)`` mask of the voxels whose centres lie inside the axis-aligned RAS box."""
    lo, hi = np.minimum(ras_min, ras_max), np.maximum(ras_min, ras_max)
    inside = np.ones(grid.shape, dtype=bool)
    k, j, i = np.ogrid[: grid.shape[0], : grid.shape[1], : grid.shape[2]]
    for axis in range(3):
        row = grid.ijk_to_ras[axis]
        coordinate = row[0] * i + row[1] * j + row[2] * k + row[3]
        inside &= (coordinate >= lo[axis] - 1e-6) & (coordinate <= hi[axis] + 1e-6)
    return inside
