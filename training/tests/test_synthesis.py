"""Tests of the SynthSeg-style image synthesis and of the tissue classes it starts from."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medsegai_training.synthesis import (LabelIntensity, SynthesisConfig, sample_synthesis_params, synthesize,
                                         tissue_classes)

SPACING = (1.0, 1.0, 1.5)
# no blur, bias, gamma, low resolution or noise: only the per-label Gaussians and the rescaling
PLAIN = SynthesisConfig(std_range=(0.0, 0.0), blur_sigma_mm=(0.0, 0.0), bias_field_strength=0.0,
                        gamma_range=(1.0, 1.0), low_resolution_probability=0.0, noise_std=0.0)


def nested_labels(shape=(32, 32, 24), n=5):
    """Label k in the shell between cubes of half-width ~(n - k) * step around the centre."""
    grid = np.indices(shape) - (np.array(shape) - 1)[:, None, None, None] / 2
    distance = np.abs(grid / (np.array(shape)[:, None, None, None] / 2)).max(axis=0)
    return np.minimum((distance * n).astype(np.uint8), n - 1)[::-1].copy()


def label_means(image, labels):
    return np.array([image[labels == v].mean() for v in np.unique(labels)])


def test_each_label_gets_its_own_constant_intensity_before_degradation():
    labels = nested_labels()
    params = sample_synthesis_params(np.random.default_rng(0), PLAIN, np.unique(labels))
    image = synthesize(params, labels, SPACING)
    means = np.array(params.means)
    expected = (means - means.min()) / (means.max() - means.min())  # rescaled to [0, 1]
    for value, target in zip(params.label_values, expected):
        assert np.allclose(image[labels == value], target, atol=1e-6)
    slightly_spread = dataclasses.replace(PLAIN, std_range=(0.01, 0.01))
    near_constant = sample_synthesis_params(np.random.default_rng(0), slightly_spread, np.unique(labels))
    image = synthesize(near_constant, labels, SPACING)
    spread = np.ptp(near_constant.means)
    for value in params.label_values:
        assert image[labels == value].std() == pytest.approx(0.01 / spread, rel=0.2)


def test_seeds_change_the_contrast_and_fix_it_when_repeated():
    labels = nested_labels()
    config = SynthesisConfig()
    images = [synthesize(sample_synthesis_params(np.random.default_rng(seed), config, range(5)), labels, SPACING)
              for seed in (1, 1, 2)]
    assert np.array_equal(images[0], images[1])
    first, other = label_means(images[0], labels), label_means(images[2], labels)
    assert not np.array_equal(np.argsort(first), np.argsort(other)) or abs(np.corrcoef(first, other)[0, 1]) < 0.9
    for image in images:
        assert image.shape == labels.shape and image.dtype == np.float32
        assert image.min() == 0.0 and image.max() == 1.0 and np.isfinite(image).all()


def test_degradations_vary_the_intensity_within_a_label():
    labels = nested_labels()
    strong = SynthesisConfig(std_range=(0.0, 0.0), bias_field_strength=0.5, blur_sigma_mm=(1.0, 1.0),
                             low_resolution_probability=1.0, noise_std=0.05)
    image = synthesize(sample_synthesis_params(np.random.default_rng(3), strong, range(5)), labels, SPACING)
    assert min(image[labels == v].std() for v in range(5)) > 0.01


def test_label_specific_ranges_are_respected():
    labels = nested_labels()
    config = SynthesisConfig(mean_range=(0.5, 1.0), label_intensities=(LabelIntensity(0, (0.0, 0.05), (0.0, 0.0)),),
                             std_range=(0.0, 0.02), noise_std=0.0, low_resolution_probability=0.0)
    for seed in range(3):
        params = sample_synthesis_params(np.random.default_rng(seed), config, range(5))
        assert params.means[0] <= 0.05 and min(params.means[1:]) >= 0.5
        means = label_means(synthesize(params, labels, SPACING), labels)
        assert means.argmin() == 0  # the background stays the darkest


def test_unknown_labels_are_refused():
    params = sample_synthesis_params(np.random.default_rng(0), PLAIN, [0, 1])
    with pytest.raises(ValueError, match="without intensities"):
        synthesize(params, np.full((4, 4, 4), 2, np.uint8), SPACING)
    with pytest.raises(ValueError, match="more than once"):
        SynthesisConfig(label_intensities=(LabelIntensity(0, (0, 1), (0, 0)), LabelIntensity(0, (0, 1), (0, 0))))


def synthetic_head(seed=0):
    """A ball of brain (CSF, grey and white matter rings) in a dark skull and a bright scalp, in air."""
    shape = (40, 40, 40)
    radius = np.sqrt(((np.indices(shape) - 19.5) ** 2).sum(axis=0))
    tissue = np.select([radius < 6, radius < 9, radius < 12, radius < 14, radius < 17],
                       [6.0, 4.0, 2.0, 1.0, 8.0], default=0.0)  # WM, GM, CSF, skull, scalp; air
    image = tissue + np.random.default_rng(seed).normal(0, 0.15, shape)
    return image.astype(np.float32), radius < 12, radius


def test_tissue_classes_separate_brain_and_non_brain_classes_deterministically():
    image, brain, radius = synthetic_head()
    classes = tissue_classes(image, brain, n_inside=3, n_outside=2)
    assert classes.dtype == np.uint8 and classes.shape == image.shape
    assert np.array_equal(classes, tissue_classes(image, brain, n_inside=3, n_outside=2))
    assert set(np.unique(classes[brain])) == {1, 2, 3}
    assert set(np.unique(classes[~brain])) == {0, 4, 5}
    # each tissue (away from the noisy borders) is one class, ordered dark to bright
    for (low, high), expected in {(0, 5): 3, (7, 8): 2, (10, 11): 1, (12.5, 13.5): 4, (15, 16): 5,
                                  (18, 30): 0}.items():
        ring = (radius >= low) & (radius < high)
        assert np.mean(classes[ring] == expected) > 0.99


def test_tissue_classes_feed_the_synthesis():
    image, brain, _ = synthetic_head(1)
    classes = tissue_classes(image, brain)
    assert classes.max() <= 6
    params = sample_synthesis_params(np.random.default_rng(4), SynthesisConfig(), np.unique(classes))
    synthetic = synthesize(params, classes, (1.0, 1.0, 1.0))
    assert synthetic.shape == image.shape and 0.0 <= synthetic.min() < synthetic.max() <= 1.0
    with pytest.raises(ValueError, match="mask"):
        tissue_classes(image, np.zeros(image.shape, bool))
