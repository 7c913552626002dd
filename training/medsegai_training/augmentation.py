"""Light augmentation for small data: in-plane rotation and scaling, intensity scale/shift, noise.

No flips: a left-right flip turns a right lung into a left one, and the model must tell them
apart. Rotation is about the z (superior-inferior) axis only, in millimetres, so anisotropic
voxels (e.g. 3 x 3 x 10 mm) are handled correctly and thick slices are never mixed.

The sampler cuts a patch larger than the training patch (:meth:`Augmenter.input_size`); the
affine transform then fills the training patch from real image content, not from padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentationConfig:
    affine_probability: float = 0.3
    max_rotation_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    intensity_probability: float = 0.5
    intensity_scale_range: tuple[float, float] = (0.9, 1.1)
    intensity_shift: float = 0.05  # in normalised units (0.05 of a [-1000, 1000] HU window = 100 HU)
    noise_probability: float = 0.2
    noise_std: float = 0.02

    def describe(self) -> str:
        return (f"p={self.affine_probability} in-plane rotation up to {self.max_rotation_deg} deg and scaling "
                f"{self.scale_range[0]}-{self.scale_range[1]}; p={self.intensity_probability} intensity scale "
                f"{self.intensity_scale_range[0]}-{self.intensity_scale_range[1]} and shift +-{self.intensity_shift}; "
                f"p={self.noise_probability} Gaussian noise sd up to {self.noise_std} (normalised units); no flips")


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
        self._input_size = self._needed_input_size()

    @property
    def input_size(self) -> tuple[int, int, int]:
        """Size of the patch the sampler must cut (the training patch plus room to rotate)."""
        return self._input_size

    def _matrix(self, angle_rad: float, scale: float) -> np.ndarray:
        """Voxel-space matrix mapping output offsets to input offsets: rotation in mm, about z."""
        c, s = math.cos(angle_rad), math.sin(angle_rad)
        sx, sy = self.spacing[0], self.spacing[1]
        m = np.eye(3)
        # input_mm = R @ output_mm / scale, with mm = voxel * spacing
        m[0, 0], m[0, 1] = c / scale, -s * sy / sx / scale
        m[1, 0], m[1, 1] = s * sx / sy / scale, c / scale
        return m

    def _needed_input_size(self) -> tuple[int, int, int]:
        if self.config.affine_probability <= 0:
            return self.patch_size
        half = (np.asarray(self.patch_size, float) - 1) / 2
        corners = np.array([[a, b, 0.0] for a in (-half[0], half[0]) for b in (-half[1], half[1])])
        extent = np.zeros(3)
        for angle in (-self.config.max_rotation_deg, self.config.max_rotation_deg):
            for scale in self.config.scale_range:
                m = self._matrix(math.radians(angle), scale)
                extent = np.maximum(extent, np.abs(corners @ m.T).max(axis=0))
        size = [max(p, int(math.ceil(2 * e)) + 3) for p, e in zip(self.patch_size, extent)]
        size[2] = self.patch_size[2]
        return tuple(size)

    def __call__(self, rng: np.random.Generator, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        if image.shape[1:] != self._input_size:
            raise ValueError(f"expected a patch of {self._input_size}, got {image.shape[1:]}")
        if rng.random() < cfg.affine_probability:
            angle = math.radians(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
            scale = rng.uniform(*cfg.scale_range)
            m = self._matrix(angle, scale)
            centre_in = (np.asarray(self._input_size, float) - 1) / 2
            centre_out = (np.asarray(self.patch_size, float) - 1) / 2
            offset = centre_in - m @ centre_out
            image = np.stack([ndimage.affine_transform(ch, m, offset, output_shape=self.patch_size, order=1,
                                                       mode="nearest") for ch in image]).astype(np.float32)
            labels = ndimage.affine_transform(labels, m, offset, output_shape=self.patch_size, order=0, mode="nearest")
        else:
            start = [(i - p) // 2 for i, p in zip(self._input_size, self.patch_size)]
            region = tuple(slice(s, s + p) for s, p in zip(start, self.patch_size))
            image = image[(slice(None),) + region].astype(np.float32, copy=True)
            labels = labels[region].copy()
        if rng.random() < cfg.intensity_probability:
            image *= rng.uniform(*cfg.intensity_scale_range)
            image += rng.uniform(-cfg.intensity_shift, cfg.intensity_shift)
        if rng.random() < cfg.noise_probability:
            image += rng.normal(0.0, rng.uniform(0, cfg.noise_std), size=image.shape).astype(np.float32)
        return image, labels
