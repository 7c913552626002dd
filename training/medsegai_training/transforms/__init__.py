"""Augmentation transforms, one per module, each split into parameters, sampling and application.

Every module has a parameter dataclass, a ``sample_*(rng, ...)`` drawing random parameters and a
deterministic ``apply_*(...)`` (a pure function of the input and the parameters), so each
operation can be tested, reproduced or reused on its own (``medsegai_training.augmentation``
composes them for training patches, ``medsegai_training.synthesis`` for synthetic images).
Images are float32 ``(C, X, Y, Z)`` on the RAS model grid, labels integer ``(X, Y, Z)``; sizes
in physical units are in millimetres.

* :mod:`.spatial`         3D affine (rotation, scaling, shear) + elastic deformation, one resampling
* :mod:`.flip`            flips, with a left/right label swap table
* :mod:`.scale_shift`     global intensity scale and shift
* :mod:`.gamma`           gamma contrast on min-max normalised intensities
* :mod:`.blur`            Gaussian blur, widths in mm
* :mod:`.bias_field`      smooth multiplicative bias field
* :mod:`.low_resolution`  coarser acquisition simulated on the same grid
* :mod:`.noise`           additive Gaussian noise
"""

from .bias_field import BiasFieldParams, apply_bias_field, bias_field, sample_bias_field
from .blur import BlurParams, apply_blur, sample_blur
from .flip import FlipParams, apply_flip, label_swap_table, sample_flip
from .gamma import GammaParams, apply_gamma, sample_gamma
from .low_resolution import AXES_MODES, LowResolutionParams, apply_low_resolution, sample_low_resolution
from .noise import NoiseParams, apply_noise, sample_noise
from .scale_shift import ScaleShiftParams, apply_scale_shift, sample_scale_shift
from .spatial import (SCALING_MODES, AffineParams, AffineRanges, ElasticParams, SpatialParams, apply_spatial,
                      elastic_control_points, required_input_size, sample_affine, sample_elastic)

__all__ = [
    "AXES_MODES", "SCALING_MODES",
    "AffineParams", "AffineRanges", "ElasticParams", "SpatialParams", "apply_spatial", "elastic_control_points",
    "required_input_size", "sample_affine", "sample_elastic",
    "FlipParams", "apply_flip", "label_swap_table", "sample_flip",
    "ScaleShiftParams", "apply_scale_shift", "sample_scale_shift",
    "GammaParams", "apply_gamma", "sample_gamma",
    "BlurParams", "apply_blur", "sample_blur",
    "BiasFieldParams", "apply_bias_field", "bias_field", "sample_bias_field",
    "LowResolutionParams", "apply_low_resolution", "sample_low_resolution",
    "NoiseParams", "apply_noise", "sample_noise",
]
