"""Spatial preprocessing: lossless reorientation to RAS, then resampling to the model spacing.

:class:`SpatialPlan` records both steps for one input grid so that results computed on the model
grid go back to the exact input grid (:meth:`SpatialPlan.labels_to_source`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import Grid, Reorientation, grid_with_spacing
from ..image import Volume, resample
from .score_resampling import first_argmax, resample_argmax

# Resampling below this relative spacing difference changes nothing a model could see, and
# skipping it keeps results on native-resolution inputs free of interpolation.
SPACING_TOLERANCE = 0.02


@dataclass(frozen=True)
class SpatialPlan:
    source: Grid
    reorientation: Reorientation
    model_grid: Grid

    @classmethod
    def for_grid(cls, source: Grid, target_spacing=None) -> "SpatialPlan":
        reorientation = Reorientation.to_ras(source)
        canonical = reorientation.target
        model_grid = canonical
        if target_spacing is not None:
            ratio = np.asarray(target_spacing, float) / canonical.spacing
            if np.any(np.abs(ratio - 1.0) > SPACING_TOLERANCE):
                model_grid = grid_with_spacing(canonical, target_spacing)
        return cls(source, reorientation, model_grid)

    @property
    def resamples(self) -> bool:
        return not self.model_grid.same_as(self.reorientation.target)

    def image_to_model(self, volume: Volume, interpolation: str = "linear") -> np.ndarray:
        """An input volume (on any grid) as a float32 ``(k, j, i)`` array on the model grid.

        Outside the volume's field of view voxels take its minimum (air in CT, background in MR),
        not 0, which would be soft tissue in Hounsfield units.
        """
        background = float(volume.array.min())
        if volume.grid.same_as(self.source):
            canonical = Volume(np.ascontiguousarray(self.reorientation.apply(volume.array)),
                               self.reorientation.target.ijk_to_ras)
            if not self.resamples:
                return canonical.array.astype(np.float32, copy=False)
            return resample(canonical, self.model_grid, interpolation, background).array.astype(np.float32, copy=False)
        # secondary inputs: resampled in physical space straight onto the model grid
        return resample(volume, self.model_grid, interpolation, background).array.astype(np.float32, copy=False)

    def labels_to_model(self, labels: Volume) -> np.ndarray:
        """A label map on the source grid, on the model grid (nearest neighbour)."""
        canonical = Volume(np.ascontiguousarray(self.reorientation.apply(labels.array)), self.reorientation.target.ijk_to_ras)
        if not self.resamples:
            return canonical.array
        return resample(canonical, self.model_grid, "nearest").array

    def labels_to_source(self, probabilities: np.ndarray, channel_values: np.ndarray) -> np.ndarray:
        """Per-class scores ``(C, k, j, i)`` on the model grid -> label map on the source grid.

        When the model grid differs from the canonical one, the class scores are interpolated
        linearly onto the canonical grid and the argmax is taken there, slab by slab
        (:func:`.score_resampling.resample_argmax`). Finally the lossless reorientation is inverted.
        """
        values = np.asarray(channel_values)
        dtype = np.uint8 if values.max() < 256 else np.uint16
        if not self.resamples:
            canonical = values.astype(dtype)[first_argmax(probabilities)]
        else:
            canonical = resample_argmax(probabilities, values, self.model_grid, self.reorientation.target, dtype)
        return self.reorientation.invert(canonical)
