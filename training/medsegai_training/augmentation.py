"""Training-patch augmentation composed from :mod:`.transforms`.

The sampler cuts a patch larger than the training patch (:attr:`Augmenter.input_size`); the
spatial transform then fills the training patch from real image content, not from padding. The
order is spatial (affine + elastic, one resampling) -> flips -> intensity (blur, bias field,
gamma, low resolution, scale/shift) -> noise last.

The defaults are the light augmentation of the shipped CT demo model, unchanged: in-plane rotation
about z and scaling of x and y (thick slices are never mixed), intensity scale/shift, noise, no
flips. Everything else is off until a recipe switches it on; a feature that is off draws no
random numbers, so the default configuration reproduces the earlier augmenter bit for bit.

Example (a brain MRI recipe on a 1 mm RAS grid with FreeSurfer-style left/right labels):
    >>> config = AugmentationConfig(
    ...     affine_probability=0.8, max_rotation_deg=(15.0, 15.0, 15.0), scale_range=(0.85, 1.15),
    ...     elastic_probability=0.5, elastic_magnitude_mm=4.0, elastic_control_spacing_mm=32.0,
    ...     flip_probability=0.5, flip_axes=(0,), label_swap={17: 53, 53: 17, 2: 41, 41: 2},
    ...     gamma_probability=0.3, gamma_range=(0.7, 1.5), bias_field_probability=0.3,
    ...     blur_probability=0.2, low_resolution_probability=0.2, noise_probability=0.3, noise_std=0.05)
    >>> augmenter = Augmenter(config, patch_size=(80, 80, 80), spacing=(1.0, 1.0, 1.0))
    >>> augmenter.input_size  # room for the worst-case rotation, zoom-out and displacement
    (146, 149, 146)
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Sequence

import numpy as np

from .transforms import (AXES_MODES, AffineParams, AffineRanges, SpatialParams, apply_bias_field, apply_blur,
                         apply_flip, apply_gamma, apply_low_resolution, apply_noise, apply_scale_shift,
                         apply_spatial, elastic_control_points, label_swap_table, required_input_size,
                         sample_affine, sample_bias_field, sample_blur, sample_elastic, sample_flip, sample_gamma,
                         sample_low_resolution, sample_noise, sample_scale_shift)
from .transforms._checks import (check_choice, check_control_points, check_non_negative, check_probability,
                                 check_range)
from .transforms.flip import LEFT_RIGHT_AXIS


@dataclass(frozen=True, kw_only=True)
class AugmentationConfig:
    """What to apply to training patches and how strongly; every ``*_probability`` is per patch.

    Spatial:
        affine_probability: chance of a random affine transform.
        max_rotation_deg: one number: rotation about z only, up to that many degrees (in-plane);
            three numbers: the maximum about x, y and z.
        scale_range: scale factors (above 1 magnifies).
        scaling: ``in-plane`` (x and y, one factor), ``isotropic`` or ``anisotropic`` (one per
            axis); ``None``: in-plane with one rotation angle, isotropic with three.
        max_shear: shear coefficients up to this (0: none).
        elastic_probability, elastic_magnitude_mm, elastic_control_spacing_mm: chance, largest
            control-point displacement and control-point spacing (both in mm) of a smooth
            elastic deformation.
    Flips:
        flip_probability: chance of flipping each of ``flip_axes`` (0, 1, 2 = x/R-L, y/A-P, z/S-I).
        label_swap: ``(left, right)`` label value pairs exchanged when x is flipped (one or both
            directions; a ``{left: right, ...}`` dict is accepted too).
        symmetric_labels: declare that no label has a side, so x may be flipped without a swap.
    Intensity (in normalised units):
        intensity_probability, intensity_scale_range, intensity_shift: global scale and shift.
        gamma_probability, gamma_range: gamma, log-uniform in the range.
        blur_probability, blur_sigma_mm: Gaussian blur, per-axis sigma range in mm.
        bias_field_probability, bias_field_strength, bias_field_control_points: multiplicative
            bias field within ``exp(+-strength)``, on a coarse grid of control points per axis.
        low_resolution_probability, low_resolution_spacing_mm, low_resolution_axes: simulated
            acquisition spacing range (mm) and axes (``one``, ``all`` or ``random``).
        noise_probability, noise_std: Gaussian noise, standard deviation up to ``noise_std``.
    """

    affine_probability: float = 0.3
    max_rotation_deg: float | tuple[float, float, float] = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    scaling: str | None = None
    max_shear: float = 0.0
    elastic_probability: float = 0.0
    elastic_magnitude_mm: float = 4.0
    elastic_control_spacing_mm: float = 32.0

    flip_probability: float = 0.0
    flip_axes: tuple[int, ...] = (0,)
    label_swap: tuple[tuple[int, int], ...] = ()
    symmetric_labels: bool = False

    intensity_probability: float = 0.5
    intensity_scale_range: tuple[float, float] = (0.9, 1.1)
    intensity_shift: float = 0.05  # in normalised units (0.05 of a [-1000, 1000] HU window = 100 HU)
    gamma_probability: float = 0.0
    gamma_range: tuple[float, float] = (0.7, 1.5)
    blur_probability: float = 0.0
    blur_sigma_mm: tuple[float, float] = (0.0, 1.0)
    bias_field_probability: float = 0.0
    bias_field_strength: float = 0.3
    bias_field_control_points: int = 4
    low_resolution_probability: float = 0.0
    low_resolution_spacing_mm: tuple[float, float] = (1.5, 4.0)
    low_resolution_axes: str = "random"
    noise_probability: float = 0.2
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        self._normalise_sequences()
        for f in fields(self):
            if f.name.endswith("_probability"):
                check_probability(f.name, getattr(self, f.name))
        self.affine_ranges  # validates the affine settings
        check_non_negative("elastic_magnitude_mm", self.elastic_magnitude_mm)
        if not self.elastic_control_spacing_mm > 0:
            raise ValueError(f"elastic_control_spacing_mm must be positive, got {self.elastic_control_spacing_mm}")
        if not set(self.flip_axes) <= {0, 1, 2} or len(set(self.flip_axes)) != len(self.flip_axes):
            raise ValueError(f"flip_axes must be distinct axes among 0, 1, 2; got {self.flip_axes}")
        label_swap_table(self.label_swap)  # validates the pairs
        if self.label_swap and self.symmetric_labels:
            raise ValueError("label_swap names left/right labels, so symmetric_labels cannot be true")
        if self.flips_left_right and not (self.label_swap or self.symmetric_labels):
            raise ValueError("flipping x (left-right) would turn left structures into right ones: give "
                             "label_swap ((left, right) label pairs) or set symmetric_labels=True")
        check_range("intensity_scale_range", self.intensity_scale_range)
        check_non_negative("intensity_shift", self.intensity_shift)
        check_range("gamma_range", self.gamma_range, positive=True)
        check_range("blur_sigma_mm", self.blur_sigma_mm, minimum=0.0)
        check_non_negative("bias_field_strength", self.bias_field_strength)
        check_control_points("bias_field_control_points", self.bias_field_control_points)
        check_range("low_resolution_spacing_mm", self.low_resolution_spacing_mm, positive=True)
        check_choice("low_resolution_axes", self.low_resolution_axes, AXES_MODES)
        check_non_negative("noise_std", self.noise_std)

    def _normalise_sequences(self) -> None:
        # plans are JSON, where tuples arrive as lists: store tuples (hashable, comparable)
        for name in ("scale_range", "flip_axes", "intensity_scale_range", "gamma_range", "blur_sigma_mm",
                     "low_resolution_spacing_mm"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not isinstance(self.max_rotation_deg, (int, float)):
            object.__setattr__(self, "max_rotation_deg", tuple(float(a) for a in self.max_rotation_deg))
        pairs = self.label_swap.items() if isinstance(self.label_swap, Mapping) else self.label_swap
        object.__setattr__(self, "label_swap", tuple((int(a), int(b)) for a, b in pairs))

    @property
    def in_plane(self) -> bool:
        """Whether the affine is the in-plane kind (one rotation angle, about z)."""
        return isinstance(self.max_rotation_deg, (int, float))

    @property
    def affine_ranges(self) -> AffineRanges:
        rotation = (0.0, 0.0, float(self.max_rotation_deg)) if self.in_plane else self.max_rotation_deg
        scaling = self.scaling or ("in-plane" if self.in_plane else "isotropic")
        return AffineRanges(rotation, self.scale_range, scaling, self.max_shear)

    @property
    def flips_left_right(self) -> bool:
        return self.flip_probability > 0 and LEFT_RIGHT_AXIS in self.flip_axes

    def describe(self) -> str:
        """One line for the model card, naming only what is switched on."""
        parts = []
        if self.affine_probability > 0:
            if self.in_plane:
                rotation = f"in-plane rotation up to {self.max_rotation_deg} deg"
            else:
                rotation = "rotation up to {} / {} / {} deg about x / y / z".format(*self.max_rotation_deg)
            scaling = self.affine_ranges.scaling
            scaling = "scaling" if scaling == "in-plane" else f"{scaling} scaling"
            shear = f", shear up to {self.max_shear}" if self.max_shear > 0 else ""
            parts.append(f"p={self.affine_probability} {rotation} and {scaling} "
                         f"{self.scale_range[0]}-{self.scale_range[1]}{shear}")
        if self.elastic_probability > 0:
            parts.append(f"p={self.elastic_probability} elastic deformation up to {self.elastic_magnitude_mm} mm "
                         f"(control points {self.elastic_control_spacing_mm} mm apart)")
        if self.intensity_probability > 0:
            parts.append(f"p={self.intensity_probability} intensity scale {self.intensity_scale_range[0]}-"
                         f"{self.intensity_scale_range[1]} and shift +-{self.intensity_shift}")
        if self.gamma_probability > 0:
            parts.append(f"p={self.gamma_probability} gamma {self.gamma_range[0]}-{self.gamma_range[1]}")
        if self.blur_probability > 0:
            parts.append(f"p={self.blur_probability} Gaussian blur sigma {self.blur_sigma_mm[0]}-"
                         f"{self.blur_sigma_mm[1]} mm")
        if self.bias_field_probability > 0:
            parts.append(f"p={self.bias_field_probability} bias field exp(+-{self.bias_field_strength}) "
                         f"({self.bias_field_control_points}^3 control points)")
        if self.low_resolution_probability > 0:
            parts.append(f"p={self.low_resolution_probability} low resolution {self.low_resolution_spacing_mm[0]}-"
                         f"{self.low_resolution_spacing_mm[1]} mm along {self.low_resolution_axes} axes")
        if self.noise_probability > 0:
            parts.append(f"p={self.noise_probability} Gaussian noise sd up to {self.noise_std} (normalised units)")
        if self.flip_probability > 0:
            pairs = sorted({tuple(sorted(pair)) for pair in self.label_swap})
            swap = (f" swapping labels {', '.join(f'{a}<->{b}' for a, b in pairs)} on x flips" if pairs
                    else " (labels without sides)" if self.symmetric_labels else "")
            parts.append(f"p={self.flip_probability} flips of axes {list(self.flip_axes)}{swap}")
        else:
            parts.append("no flips")
        return "; ".join(parts)


def _happens(rng: np.random.Generator, probability: float) -> bool:
    # a feature that is off draws nothing, so switching features on leaves the others' draws alone
    return probability > 0 and rng.random() < probability


class Augmenter:
    """Turn an enlarged sampled patch into an augmented training patch of ``patch_size``.

    Args:
        config: what to apply and how strongly.
        patch_size: the training patch (x, y, z).
        spacing: voxel spacing of the model grid (x, y, z) in mm.
    """

    def __init__(self, config: AugmentationConfig, patch_size: Sequence[int], spacing: Sequence[float]) -> None:
        self.config = config
        self.patch_size = tuple(int(s) for s in patch_size)
        self.spacing = np.asarray(spacing, dtype=float)
        self._affine_ranges = config.affine_ranges
        self._elastic_control_points = elastic_control_points(self.patch_size, self.spacing,
                                                              config.elastic_control_spacing_mm)
        self._swap_table = label_swap_table(config.label_swap) if config.label_swap else None
        self._input_size = required_input_size(
            self.patch_size, self.spacing, self._affine_ranges if config.affine_probability > 0 else None,
            config.elastic_magnitude_mm if config.elastic_probability > 0 else 0.0)

    @property
    def input_size(self) -> tuple[int, int, int]:
        """Size of the patch the sampler must cut (the training patch plus room to transform)."""
        return self._input_size

    def _centre_crop(self, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start = [(i - p) // 2 for i, p in zip(self._input_size, self.patch_size)]
        region = tuple(slice(s, s + p) for s, p in zip(start, self.patch_size))
        return image[(slice(None),) + region].astype(np.float32, copy=True), labels[region].copy()

    def __call__(self, rng: np.random.Generator, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if image.shape[1:] != self._input_size:
            raise ValueError(f"expected a patch of {self._input_size}, got {image.shape[1:]}")
        affine = sample_affine(rng, self._affine_ranges) if _happens(rng, cfg.affine_probability) else None
        elastic = (sample_elastic(rng, self._elastic_control_points, cfg.elastic_magnitude_mm)
                   if _happens(rng, cfg.elastic_probability) else None)
        if affine is None and elastic is None:
            image, labels = self._centre_crop(image, labels)
        else:
            spatial = SpatialParams(AffineParams() if affine is None else affine, elastic)
            image, labels = apply_spatial(image, labels, spatial, self.spacing, self.patch_size)
        if cfg.flip_probability > 0:
            image, labels = apply_flip(image, labels, sample_flip(rng, cfg.flip_axes, cfg.flip_probability),
                                       self._swap_table)
        if _happens(rng, cfg.blur_probability):
            image = apply_blur(image, sample_blur(rng, cfg.blur_sigma_mm), self.spacing)
        if _happens(rng, cfg.bias_field_probability):
            image = apply_bias_field(image, sample_bias_field(rng, cfg.bias_field_control_points,
                                                              cfg.bias_field_strength))
        if _happens(rng, cfg.gamma_probability):
            image = apply_gamma(image, sample_gamma(rng, cfg.gamma_range))
        if _happens(rng, cfg.low_resolution_probability):
            resolution = sample_low_resolution(rng, cfg.low_resolution_spacing_mm, cfg.low_resolution_axes)
            image = apply_low_resolution(image, resolution, self.spacing)
        if _happens(rng, cfg.intensity_probability):
            image = apply_scale_shift(image, sample_scale_shift(rng, cfg.intensity_scale_range, cfg.intensity_shift))
        if _happens(rng, cfg.noise_probability):
            image = apply_noise(image, sample_noise(rng, cfg.noise_std), rng)
        return image, labels
