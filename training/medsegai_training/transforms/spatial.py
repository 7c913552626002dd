"""Spatial transform: a 3D affine (rotation, scaling, shear) in millimetres, optionally composed
with an elastic deformation, applied as ONE resampling of the image (linear) and labels (nearest).

Geometry is defined in millimetres, so voxels of any anisotropy (1 x 1 x 1 mm brain MRI, 3 x 3 x
10 mm chest CT) rotate correctly. The transform maps each output (training patch) position to the
input position it samples, both measured from the patch centres:

    input_mm = R @ Sh @ diag(1 / scales) @ output_mm  (+ elastic displacement, in input mm)

with ``R = Rz @ Ry @ Rx`` (right-handed rotations about the RAS axes; the content turns the
opposite way to the sampling grid) and ``Sh`` the identity plus the shear coefficients. A
``scale`` above 1 magnifies the content.

Example:
    >>> rng = np.random.default_rng(0)
    >>> ranges = AffineRanges(max_rotation_deg=(15.0, 15.0, 15.0), scale_range=(0.85, 1.15), scaling="isotropic")
    >>> params = SpatialParams(sample_affine(rng, ranges), sample_elastic(rng, 5, 3.0))
    >>> size = required_input_size((32, 32, 32), (1.0, 1.0, 1.0), ranges, 3.0)
    >>> image, labels = np.zeros((1,) + size, np.float32), np.zeros(size, np.uint8)
    >>> apply_spatial(image, labels, params, (1.0, 1.0, 1.0), (32, 32, 32))[0].shape
    (1, 32, 32, 32)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ._checks import check_choice, check_control_points, check_non_negative, check_range
from ._separable import upsample_control_grid

SCALING_MODES = ("in-plane", "isotropic", "anisotropic")
"""``in-plane``: one factor for x and y, z unscaled (thick slices keep their spacing);
``isotropic``: one factor for all axes; ``anisotropic``: an independent factor per axis."""

# rotation angles tried per rotated axis when bounding how far a patch corner can move
_ROTATION_GRID_STEPS = 7


@dataclass(frozen=True)
class AffineRanges:
    """The random affine transforms that :func:`sample_affine` may draw.

    Args:
        max_rotation_deg: per axis (x, y, z), rotations are uniform in ``[-max, max]`` degrees.
        scale_range: scale factors are uniform in this range.
        scaling: which axes are scaled, one of :data:`SCALING_MODES`.
        max_shear: shear coefficients are uniform in ``[-max_shear, max_shear]``.
    """

    max_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale_range: tuple[float, float] = (1.0, 1.0)
    scaling: str = "in-plane"
    max_shear: float = 0.0

    def __post_init__(self) -> None:
        if len(self.max_rotation_deg) != 3 or not all(0 <= a <= 180 for a in self.max_rotation_deg):
            raise ValueError(f"max_rotation_deg must be three angles in [0, 180], got {self.max_rotation_deg}")
        check_range("scale_range", self.scale_range, positive=True)
        check_choice("scaling", self.scaling, SCALING_MODES)
        check_non_negative("max_shear", self.max_shear)


@dataclass(frozen=True)
class AffineParams:
    """One affine transform: rotations about x, y, z (degrees), scale per axis, shear coefficients
    ``(xy, xz, yx, yz, zx, zy)`` (``xy`` adds ``xy * y`` to x)."""

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scales: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shear: tuple[float, float, float, float, float, float] = (0.0,) * 6


@dataclass(frozen=True, eq=False)
class ElasticParams:
    """An elastic displacement: ``(3, cx, cy, cz)`` control values in mm (component k along axis k),
    spread over the output patch by a cubic B-spline."""

    control_displacement_mm: np.ndarray


@dataclass(frozen=True, eq=False)
class SpatialParams:
    affine: AffineParams = AffineParams()
    elastic: ElasticParams | None = None


def _rotation(angles_deg: Sequence[float]) -> np.ndarray:
    """``Rz @ Ry @ Rx`` (output-to-input), with ``math`` trigonometry (reproducible to the bit)."""
    cx, cy, cz = (math.cos(math.radians(a)) for a in angles_deg)
    sx, sy, sz = (math.sin(math.radians(a)) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def voxel_matrix(params: AffineParams, spacing: Sequence[float]) -> np.ndarray:
    """The 3 x 3 matrix mapping output voxel offsets (from the patch centre) to input voxel offsets."""
    spacing = np.asarray(spacing, dtype=float)
    shear = np.eye(3)
    shear[[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]] = params.shear
    linear = _rotation(params.rotation_deg) @ shear
    # mm -> voxels: entry (i, j) is scaled by spacing[j] / spacing[i]. The diagonal ratio is exactly
    # 1 and is left out, and the operations run in the order of the previous in-plane augmenter,
    # so identity stays exact and its configurations reproduce their output bit for bit.
    matrix = linear * spacing[None, :] / spacing[:, None]
    np.fill_diagonal(matrix, np.diag(linear))
    return matrix / np.asarray(params.scales, dtype=float)[None, :]


def _scale_factor_count(scaling: str) -> int:
    return 3 if scaling == "anisotropic" else 1


def _per_axis_scales(scaling: str, factors: Sequence[float]) -> tuple[float, float, float]:
    """The scale of x, y and z from the ``_scale_factor_count(scaling)`` drawn ``factors``."""
    if scaling == "anisotropic":
        return tuple(float(f) for f in factors)
    factor = float(factors[0])
    return (factor, factor, 1.0) if scaling == "in-plane" else (factor, factor, factor)


def sample_affine(rng: np.random.Generator, ranges: AffineRanges) -> AffineParams:
    """Draw an affine transform; axes and terms that ``ranges`` leave fixed consume no randomness."""
    rotation = tuple(float(rng.uniform(-a, a)) if a > 0 else 0.0 for a in ranges.max_rotation_deg)
    factors = rng.uniform(*ranges.scale_range, size=_scale_factor_count(ranges.scaling))
    scales = _per_axis_scales(ranges.scaling, factors)
    shear = tuple(float(v) for v in rng.uniform(-ranges.max_shear, ranges.max_shear, 6)) if ranges.max_shear > 0 \
        else (0.0,) * 6
    return AffineParams(rotation, scales, shear)


def elastic_control_points(shape: Sequence[int], spacing: Sequence[float],
                           control_spacing_mm: float) -> tuple[int, ...]:
    """Control points per axis so that they are at most ``control_spacing_mm`` apart over a grid of
    ``shape`` voxels of ``spacing`` (at least 2: the end points)."""
    if not control_spacing_mm > 0:
        raise ValueError(f"control_spacing_mm must be positive, got {control_spacing_mm}")
    return tuple(max(2, math.ceil((n - 1) * s / control_spacing_mm) + 1) for n, s in zip(shape, spacing))


def sample_elastic(rng: np.random.Generator, control_points: int | Sequence[int],
                   max_displacement_mm: float) -> ElasticParams:
    """Draw control displacements uniform in ``[-max, max]`` mm on a grid of ``control_points``
    (one count for every axis, or one per axis)."""
    counts = (control_points,) * 3 if isinstance(control_points, int) else tuple(control_points)
    for count in counts:
        check_control_points("control_points", count)
    check_non_negative("max_displacement_mm", max_displacement_mm)
    grid = rng.uniform(-max_displacement_mm, max_displacement_mm, (3,) + counts)
    return ElasticParams(grid.astype(np.float32))


def _sampling_coordinates(matrix: np.ndarray, offset: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    # float64 and summed in the order scipy's affine_transform uses internally (the previous
    # augmenter resampled with it): the same configuration gives the same voxels, bit for bit
    axes = [np.arange(n, dtype=float) for n in shape]
    coords = np.empty((3,) + shape)
    for i in range(3):
        coords[i] = ((matrix[i, 0] * axes[0][:, None, None] + matrix[i, 1] * axes[1][None, :, None])
                     + matrix[i, 2] * axes[2][None, None, :]) + offset[i]
    return coords


def apply_spatial(image: np.ndarray, labels: np.ndarray, params: SpatialParams, spacing: Sequence[float],
                  output_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``image`` (C, X, Y, Z) linearly and ``labels`` (X, Y, Z) by nearest neighbour onto
    ``output_shape``, centred on the input; positions outside the input repeat its edge.

    Returns float32 image and labels of the input's dtype.
    """
    output_shape = tuple(int(n) for n in output_shape)
    spacing = np.asarray(spacing, dtype=float)
    matrix = voxel_matrix(params.affine, spacing)
    centre_in = (np.asarray(image.shape[1:], float) - 1) / 2
    centre_out = (np.asarray(output_shape, float) - 1) / 2
    coords = _sampling_coordinates(matrix, centre_in - matrix @ centre_out, output_shape)
    if params.elastic is not None:
        displacement = upsample_control_grid(params.elastic.control_displacement_mm, output_shape)
        coords += displacement / spacing[:, None, None, None].astype(np.float32)
    resampled = np.empty((image.shape[0],) + output_shape, dtype=np.float32)
    for channel, out in zip(image, resampled):
        ndimage.map_coordinates(channel, coords, output=out, order=1, mode="nearest")
    return resampled, ndimage.map_coordinates(labels, coords, order=0, mode="nearest")


def required_input_size(patch_size: Sequence[int], spacing: Sequence[float], ranges: AffineRanges | None,
                        max_displacement_mm: float = 0.0) -> tuple[int, int, int]:
    """The input size from which every transform within ``ranges`` (``None``: no affine) plus an
    elastic displacement up to ``max_displacement_mm`` samples only real voxels of the input.

    An axis that no transform moves keeps the patch size: thick slices are never interpolated.
    """
    patch = np.asarray(patch_size, dtype=float)
    spacing = np.asarray(spacing, dtype=float)
    half = (patch - 1) / 2
    corners = np.array(list(itertools.product(*[(-h, h) for h in half])))
    extent = half.copy()
    if ranges is not None:
        angle_grid = [np.linspace(-a, a, _ROTATION_GRID_STEPS) if a > 0 else [0.0] for a in ranges.max_rotation_deg]
        low, high = ranges.scale_range
        scale_options = [_per_axis_scales(ranges.scaling, factors)
                         for factors in itertools.product((low, high), repeat=_scale_factor_count(ranges.scaling))]
        # the corner positions are linear in each 1/scale, so their extremes lie at the range ends;
        # rotations are tried on a grid (the +3 voxels below leave room for the steps in between)
        extent = np.zeros(3)
        for angles in itertools.product(*angle_grid):
            for scales in scale_options:
                m = voxel_matrix(AffineParams(tuple(angles), scales), spacing)
                extent = np.maximum(extent, np.abs(corners @ m.T).max(axis=0))
        if ranges.max_shear > 0:
            # the shear adds R O v to a corner's offset R v (v: the scaled corner offset in mm, O: the
            # off-diagonal shear terms), and |(R O v)_i| <= ||O v|| <= max_shear * ||sums of the other |v_j|||
            v = half * spacing / min(low, 1.0)
            off_diagonal_sums = v.sum() - v
            extent += ranges.max_shear * np.sqrt((off_diagonal_sums ** 2).sum()) / spacing
    extent += max_displacement_mm / spacing
    size = [p if e <= h + 1e-9 else max(p, int(math.ceil(2 * e)) + 3)
            for p, h, e in zip(patch_size, half, extent)]
    return tuple(int(s) for s in size)
