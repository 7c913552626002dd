"""Class scores from the model grid back to the scan's (canonical) grid, and their argmax.

The model grid is the canonical grid with another spacing and the same directions, so a voxel
index maps to a model index axis by axis (``m = scale * c + offset``), and trilinear interpolation
is three 1-D linear interpolations. In-plane (i, j) they are two small matrix products with the
interpolation matrices (fast BLAS, where gathering along the innermost axis is slow); along k, a
blend of two planes. It runs slab by slab along k, one slab of every class at a time, then the
argmax: memory stays at the output plus a few slab-sized arrays whatever the scan size, and no
full-resolution float array of any class is ever held.

Border rule, as ITK's linear interpolator: positions are clamped to the outermost voxel centres
(``grid_with_spacing`` keeps the outer voxel edges, so every canonical voxel centre lies within
half a model voxel of the model grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..geometry import Grid

# Output slices (along k) computed at once; 16 slices of a 512x512 scan are 16 MiB per class.
SLAB_SLICES = 16
# Off-diagonal terms of the model <- canonical index map above this are not axis-aligned.
_AXIS_ALIGNED_TOLERANCE = 1e-6


@dataclass(frozen=True)
class AxisInterpolation:
    """Linear interpolation along one axis: output voxel ``c`` is
    ``(1 - weight[c]) * input[lower[c]] + weight[c] * input[upper[c]]``."""

    lower: torch.Tensor
    upper: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def for_axis(cls, n_out: int, scale: float, offset: float, n_in: int) -> "AxisInterpolation":
        """Output index ``c`` samples input position ``scale * c + offset``, clamped to the input.

        Example:
            >>> a = AxisInterpolation.for_axis(4, 0.5, -0.25, 2)  # 2 voxels -> 4, outer edges kept
            >>> a.lower.tolist(), a.upper.tolist(), a.weight.tolist()
            ([0, 0, 0, 1], [1, 1, 1, 1], [0.0, 0.25, 0.75, 0.0])
        """
        position = np.clip(scale * np.arange(n_out, dtype=np.float64) + offset, 0.0, n_in - 1)
        lower = np.floor(position).astype(np.int64)
        upper = np.minimum(lower + 1, n_in - 1)
        return cls(torch.from_numpy(lower), torch.from_numpy(upper),
                   torch.from_numpy((position - lower).astype(np.float32)))

    def matrix(self, n_in: int) -> torch.Tensor:
        """The interpolation as an ``(n_out, n_in)`` matrix (two weights per row)."""
        rows = torch.arange(self.weight.numel())
        m = torch.zeros(self.weight.numel(), n_in)
        m.index_put_((rows, self.lower), 1.0 - self.weight, accumulate=True)
        m.index_put_((rows, self.upper), self.weight, accumulate=True)
        return m

    def apply(self, values: torch.Tensor, dim: int) -> torch.Tensor:
        """``values`` interpolated along ``dim``."""
        shape = [1] * values.dim()
        shape[dim] = self.weight.numel()
        a = values.index_select(dim, self.lower)
        b = values.index_select(dim, self.upper)
        return torch.lerp(a, b, self.weight.view(shape))


def axis_maps(model_grid: Grid, target: Grid) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-axis ``(scale, offset)`` (i, j, k) of the map target index -> model index, or None when
    the grids are not axis-aligned with each other (same axis directions, not flipped)."""
    m = np.linalg.inv(model_grid.ijk_to_ras) @ target.ijk_to_ras
    linear = m[:3, :3]
    off_diagonal = np.abs(linear - np.diag(np.diag(linear))).max()
    if off_diagonal > _AXIS_ALIGNED_TOLERANCE * np.abs(linear).max() or np.any(np.diag(linear) <= 0):
        return None
    return np.diag(linear).copy(), m[:3, 3].copy()


def resample_argmax(scores: np.ndarray, values: np.ndarray, model_grid: Grid, target: Grid,
                    dtype: type = np.uint8) -> np.ndarray:
    """``values[argmax]`` on ``target`` of class scores ``(C, k, j, i)`` on ``model_grid``,
    each score linearly interpolated (see the module docstring).

    Raises:
        ValueError: when the grids are not axis-aligned with each other.
    """
    maps = axis_maps(model_grid, target)
    if maps is None:
        raise ValueError("class scores can only be resampled between axis-aligned grids")
    scale, offset = maps
    (ni, nj, nk), (mi, mj, mk) = target.size_ijk, model_grid.size_ijk
    rows_i = AxisInterpolation.for_axis(ni, scale[0], offset[0], mi).matrix(mi).T.contiguous()  # (mi, ni)
    rows_j = AxisInterpolation.for_axis(nj, scale[1], offset[1], mj).matrix(mj)  # (nj, mj)
    along_k = AxisInterpolation.for_axis(nk, scale[2], offset[2], mk)
    source = torch.from_numpy(np.asarray(scores, dtype=np.float32))
    lookup = torch.from_numpy(np.asarray(values).astype(dtype))
    index_dtype = torch.uint8 if len(values) <= 256 else torch.int16
    out = np.empty((nk, nj, ni), dtype=dtype)
    with torch.inference_mode():
        for k0 in range(0, nk, SLAB_SLICES):
            k1 = min(nk, k0 + SLAB_SLICES)
            # the model planes this slab blends, interpolated in-plane: (C, planes, nj, ni)
            first, last = int(along_k.lower[k0]), int(along_k.upper[k1 - 1])
            planes = torch.matmul(rows_j, torch.matmul(source[:, first:last + 1], rows_i))
            blend = AxisInterpolation(along_k.lower[k0:k1] - first, along_k.upper[k0:k1] - first, along_k.weight[k0:k1])
            # a running maximum over the classes: torch's argmax over the class axis is 20x slower
            best = blend.apply(planes[0], 0)
            label = torch.zeros(best.shape, dtype=index_dtype)
            for c in range(1, planes.shape[0]):
                score = blend.apply(planes[c], 0)
                label.masked_fill_(score > best, c)
                torch.maximum(best, score, out=best)
            out[k0:k1] = lookup[label.long()].numpy()
    return out
