"""SynthSeg-style synthetic images from label maps (Billot et al., Medical Image Analysis 2023).

A *generation* label map (tissue classes, non-brain ones such as skull, scalp and background
included) becomes an image of random contrast: every label gets a random Gaussian intensity
distribution, then the image is blurred, multiplied by a bias field, gamma-corrected, given a
random lower resolution and noise, and rescaled to [0, 1]. A network trained on many such images
does not depend on one MRI contrast or resolution.

As in :mod:`.transforms`, drawing the parameters (:func:`sample_synthesis_params`) is separate
from the deterministic synthesis (:func:`synthesize`). Both work on whole volumes (to pre-generate
training volumes offline) or on patches. :func:`tissue_classes` derives a generation label map
from a real head image and its brain mask.

Example:
    >>> labels = np.zeros((32, 32, 32), np.uint8); labels[8:24, 8:24, 8:24] = 1; labels[12:20, 12:20, 12:20] = 2
    >>> config = SynthesisConfig(label_intensities=(LabelIntensity(0, (0.0, 0.1), (0.0, 0.01)),))
    >>> params = sample_synthesis_params(np.random.default_rng(0), config, [0, 1, 2])
    >>> image = synthesize(params, labels, spacing=(1.0, 1.0, 1.0))
    >>> image.shape, image.dtype, float(image.min()), float(image.max())
    ((32, 32, 32), dtype('float32'), 0.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .transforms import (AXES_MODES, BiasFieldParams, BlurParams, GammaParams, LowResolutionParams, NoiseParams,
                         apply_bias_field, apply_blur, apply_gamma, apply_low_resolution, apply_noise,
                         sample_bias_field, sample_blur, sample_gamma, sample_low_resolution, sample_noise)
from .transforms._checks import (check_choice, check_control_points, check_non_negative, check_probability,
                                 check_range)


@dataclass(frozen=True)
class LabelIntensity:
    """Intensity ranges for one generation label instead of the general ones (e.g. a dark background)."""

    label: int
    mean_range: tuple[float, float]
    std_range: tuple[float, float]

    def __post_init__(self) -> None:
        check_range(f"mean_range of label {self.label}", self.mean_range)
        check_range(f"std_range of label {self.label}", self.std_range, minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class SynthesisConfig:
    """Ranges of the random synthesis parameters (intensities in arbitrary units; the result is
    rescaled to [0, 1]).

    Args:
        mean_range, std_range: per-label Gaussian mean and standard deviation, uniform in these.
        label_intensities: labels with their own ranges.
        blur_sigma_mm: per-axis Gaussian blur (partial volume) sigma range, in mm.
        bias_field_strength, bias_field_control_points: bias field within ``exp(+-strength)``, on
            a grid of control points per axis over the volume.
        gamma_range: gamma, log-uniform in this range.
        low_resolution_probability, low_resolution_spacing_mm, low_resolution_axes: chance,
            spacing range (mm) and axes (``one``, ``all`` or ``random``) of a lower resolution.
        noise_std: Gaussian noise standard deviation up to this (relative to the mean range).
    """

    mean_range: tuple[float, float] = (0.0, 1.0)
    std_range: tuple[float, float] = (0.0, 0.1)
    label_intensities: tuple[LabelIntensity, ...] = ()
    blur_sigma_mm: tuple[float, float] = (0.0, 1.0)
    bias_field_strength: float = 0.3
    bias_field_control_points: int = 4
    gamma_range: tuple[float, float] = (0.7, 1.5)
    low_resolution_probability: float = 0.5
    low_resolution_spacing_mm: tuple[float, float] = (1.5, 5.0)
    low_resolution_axes: str = "random"
    noise_std: float = 0.03

    def __post_init__(self) -> None:
        check_range("mean_range", self.mean_range)
        check_range("std_range", self.std_range, minimum=0.0)
        labels = [entry.label for entry in self.label_intensities]
        if len(set(labels)) != len(labels):
            raise ValueError(f"label_intensities names a label more than once: {labels}")
        check_range("blur_sigma_mm", self.blur_sigma_mm, minimum=0.0)
        check_non_negative("bias_field_strength", self.bias_field_strength)
        check_control_points("bias_field_control_points", self.bias_field_control_points)
        check_range("gamma_range", self.gamma_range, positive=True)
        check_probability("low_resolution_probability", self.low_resolution_probability)
        check_range("low_resolution_spacing_mm", self.low_resolution_spacing_mm, positive=True)
        check_choice("low_resolution_axes", self.low_resolution_axes, AXES_MODES)
        check_non_negative("noise_std", self.noise_std)


@dataclass(frozen=True, eq=False)
class SynthesisParams:
    """One synthetic contrast: a Gaussian (mean, std) per label value, then the degradations.
    ``seed`` drives the voxel-wise draws (within-label variation and noise)."""

    label_values: tuple[int, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    blur: BlurParams
    bias: BiasFieldParams
    gamma: GammaParams
    low_resolution: LowResolutionParams | None
    noise: NoiseParams
    seed: int


def sample_synthesis_params(rng: np.random.Generator, config: SynthesisConfig,
                            label_values: Iterable[int]) -> SynthesisParams:
    """Draw a synthetic contrast for the generation labels ``label_values``."""
    values = tuple(sorted({int(v) for v in label_values}))
    if not values or values[0] < 0:
        raise ValueError(f"label values must be non-negative integers, got {values}")
    special = {entry.label: entry for entry in config.label_intensities}
    means, stds = [], []
    for value in values:
        entry = special.get(value)
        means.append(float(rng.uniform(*(entry.mean_range if entry else config.mean_range))))
        stds.append(float(rng.uniform(*(entry.std_range if entry else config.std_range))))
    blur = sample_blur(rng, config.blur_sigma_mm)
    bias = sample_bias_field(rng, config.bias_field_control_points, config.bias_field_strength)
    gamma = sample_gamma(rng, config.gamma_range)
    low_resolution = (sample_low_resolution(rng, config.low_resolution_spacing_mm, config.low_resolution_axes)
                      if rng.random() < config.low_resolution_probability else None)
    noise = sample_noise(rng, config.noise_std)
    return SynthesisParams(values, tuple(means), tuple(stds), blur, bias, gamma, low_resolution, noise,
                           seed=int(rng.integers(2 ** 63)))


def synthesize(params: SynthesisParams, generation_labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """The synthetic image (float32 in [0, 1], the shape of ``generation_labels``) of ``params``.

    Order: Gaussian intensities per label -> blur -> bias field -> gamma -> low resolution ->
    noise -> rescale to [0, 1].
    """
    labels = np.asarray(generation_labels)
    top = params.label_values[-1]
    known = np.zeros(top + 1, dtype=bool)
    known[list(params.label_values)] = True
    if labels.min() < 0 or labels.max() > top or not known[labels].all():
        raise ValueError(f"the label map has values without intensities (known: {params.label_values})")
    mean_of, std_of = np.zeros(top + 1, np.float32), np.zeros(top + 1, np.float32)
    mean_of[list(params.label_values)] = params.means
    std_of[list(params.label_values)] = params.stds

    rng = np.random.default_rng(params.seed)
    image = rng.standard_normal(labels.shape, dtype=np.float32)
    image *= std_of[labels]
    image += mean_of[labels]
    image = apply_blur(image[None], params.blur, spacing)
    image = apply_bias_field(image, params.bias)
    image = apply_gamma(image, params.gamma)
    if params.low_resolution is not None:
        image = apply_low_resolution(image, params.low_resolution, spacing)
    image = apply_noise(image, params.noise, rng)[0]
    low, high = float(image.min()), float(image.max())
    if high > low:
        image -= low
        image /= high - low
    else:
        image[...] = 0
    return image


_HISTOGRAM_BINS = 256


def _kmeans_1d_thresholds(values: np.ndarray, k: int) -> np.ndarray:
    """The ``k - 1`` ascending thresholds between the classes of optimal 1-D k-means on ``values``.

    The optimum is exact (multi-level Otsu: dynamic programming over a 256-bin histogram of the
    0.1-99.9 percentile range), hence deterministic and free of the local optima of iterative
    k-means, where a dominant dark background swallows a small dark tissue such as bone.
    """
    low, high = np.quantile(values, [0.001, 0.999])
    if high <= low:  # one value fills the percentile range: bin over all values instead
        low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.full(k - 1, np.inf)  # a single value: one class
    edges = np.linspace(low, high, _HISTOGRAM_BINS + 1)
    counts = np.histogram(np.clip(values, low, high), edges)[0].astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    n, total, squares = (np.concatenate([[0.0], np.cumsum(w)]) for w in (counts, counts * centres,
                                                                          counts * centres ** 2))
    # within[i, j]: sum of squared deviations of bins i..j-1 about their mean (inf unless i < j)
    count_ij = n[None, :] - n[:, None]
    sum_ij = total[None, :] - total[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        within = squares[None, :] - squares[:, None] - np.where(count_ij > 0, sum_ij ** 2 / count_ij, 0.0)
    within[np.tril_indices(_HISTOGRAM_BINS + 1)] = np.inf
    best = within[0]  # best[j]: cost of bins 0..j-1 as one class
    last_starts = []
    for _ in range(k - 1):  # best[j] becomes the cost of bins 0..j-1 split into one more class
        candidates = best[:, None] + within
        last_starts.append(candidates.argmin(axis=0))
        best = candidates.min(axis=0)
    bounds, end = [], _HISTOGRAM_BINS
    for starts in reversed(last_starts):
        end = starts[end]
        bounds.append(end)
    return edges[bounds[::-1]]


def _cluster(values: np.ndarray, k: int) -> np.ndarray:
    """Class index (0 = darkest) of each value among ``k`` 1-D k-means classes."""
    return np.searchsorted(_kmeans_1d_thresholds(values, k), values, side="right").astype(np.uint8)


def tissue_classes(image: np.ndarray, brain_mask: np.ndarray, n_inside: int = 3, n_outside: int = 3) -> np.ndarray:
    """A generation label map from a real head image, by intensity clustering (deterministic).

    Inside ``brain_mask`` the intensities form ``n_inside`` classes; outside it ``n_outside + 1``,
    the darkest of which is the background (air, and what is as dark: on T1, cortical bone).

    Returns:
        uint8 map (shape of ``image``): 0 background; ``1..n_inside`` brain classes and
        ``n_inside + 1..n_inside + n_outside`` non-brain classes, each from dark to bright.

    Example:
        >>> image = np.zeros((20, 20, 20), np.float32); image[2:18, 2:18, 2:18] = 5; image[5:15, 5:15, 5:15] = 1
        >>> mask = np.zeros(image.shape, bool); mask[5:15, 5:15, 5:15] = True
        >>> np.unique(tissue_classes(image, mask, n_inside=1, n_outside=1)).tolist()
        [0, 1, 2]
    """
    inside = np.asarray(brain_mask, dtype=bool)
    if image.shape != inside.shape:
        raise ValueError(f"image {image.shape} and brain mask {inside.shape} differ in size")
    if not inside.any() or inside.all():
        raise ValueError("the brain mask must contain some voxels and leave some out")
    if n_inside < 1 or n_outside < 0 or n_inside + n_outside > 254:
        raise ValueError(f"need n_inside >= 1, n_outside >= 0 and at most 254 classes; got {n_inside}, {n_outside}")
    classes = np.zeros(image.shape, dtype=np.uint8)
    classes[inside] = 1 + _cluster(image[inside], n_inside)
    outside = _cluster(image[~inside], n_outside + 1)
    classes[~inside] = np.where(outside == 0, 0, n_inside + outside)
    return classes
