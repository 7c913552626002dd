"""Tests of the augmentation transforms and of the augmenter composing them."""

from __future__ import annotations

import dataclasses
import doctest
import hashlib
import importlib
import itertools
import json

import numpy as np
import pytest

from medsegai_training.augmentation import AugmentationConfig, Augmenter
from medsegai_training.transforms import (AffineParams, AffineRanges, BiasFieldParams, BlurParams, ElasticParams,
                                          FlipParams, GammaParams, LowResolutionParams, NoiseParams, SpatialParams,
                                          apply_blur, apply_flip, apply_gamma, apply_low_resolution, apply_noise,
                                          apply_spatial, bias_field, label_swap_table, required_input_size,
                                          sample_affine, sample_bias_field, sample_elastic, sample_low_resolution)

# Output of the previous augmenter (in-plane rotation/scaling, intensity scale/shift, noise) with
# the default configuration, recorded before the rewrite: the shipped CT demo model was trained
# with it, so the default must stay identical bit for bit (same random stream, same resampling).
DEFAULT_SNAPSHOT = [
    ((96, 96, 16), (3.046875, 3.046875, 10.0), 1, (126, 126, 16), "d7c88721de99e2d6", 0.8390003650780475),
    ((24, 20, 6), (1.2, 0.9, 3.0), 2, (31, 30, 6), "de39a3be2637cb2c", 0.7210036183694172),
]


@pytest.mark.parametrize("patch, spacing, channels, input_size, digest, next_random", DEFAULT_SNAPSHOT)
def test_default_config_reproduces_the_previous_augmenter(patch, spacing, channels, input_size, digest, next_random):
    aug = Augmenter(AugmentationConfig(), patch, spacing)
    assert aug.input_size == input_size
    data = np.random.default_rng(5)
    image = data.random((channels,) + aug.input_size, dtype=np.float32)
    labels = data.integers(0, 4, aug.input_size).astype(np.uint8)
    rng = np.random.default_rng(7)
    h = hashlib.sha256()
    for _ in range(12):
        img, lab = aug(rng, image, labels)
        h.update(img.tobytes())
        h.update(lab.tobytes())
    assert h.hexdigest()[:16] == digest
    assert rng.random() == next_random  # the same amount of randomness was consumed


def test_default_config_describes_itself_as_in_the_shipped_model_card():
    assert AugmentationConfig().describe() == (
        "p=0.3 in-plane rotation up to 10.0 deg and scaling 0.9-1.1; p=0.5 intensity scale 0.9-1.1 and shift "
        "+-0.05; p=0.2 Gaussian noise sd up to 0.02 (normalised units); no flips")


BRAIN_CONFIG = AugmentationConfig(
    affine_probability=1.0, max_rotation_deg=(15.0, 15.0, 15.0), scale_range=(0.85, 1.15), max_shear=0.05,
    elastic_probability=1.0, elastic_magnitude_mm=4.0, elastic_control_spacing_mm=16.0, flip_probability=0.5,
    label_swap=((1, 2),), gamma_probability=1.0, blur_probability=1.0, bias_field_probability=1.0,
    low_resolution_probability=1.0, intensity_probability=1.0, noise_probability=1.0)


def spheres(shape, spacing, centres_mm, radius_mm):
    """Label map with value k + 1 in a sphere (in mm: round at any spacing) around centres_mm[k],
    measured from the grid centre."""
    grid = np.indices(shape, dtype=float)
    offsets = [(grid[i] - (shape[i] - 1) / 2) * spacing[i] for i in range(3)]
    labels = np.zeros(shape, np.uint8)
    for value, centre in enumerate(centres_mm, start=1):
        labels[sum((o - c) ** 2 for o, c in zip(offsets, centre)) <= radius_mm ** 2] = value
    return labels


def dice(a, b, value):
    return 2 * np.sum((a == value) & (b == value)) / (np.sum(a == value) + np.sum(b == value))


def high_frequency_energy(image):
    """Mean squared difference between neighbouring voxels, summed over the axes."""
    return sum(float(np.mean(np.diff(image, axis=a) ** 2)) for a in range(1, image.ndim))


# ---------------------------------------------------------------------------------------- spatial

def test_identity_affine_returns_the_input_exactly():
    rng = np.random.default_rng(0)
    image = rng.random((2, 9, 8, 5), dtype=np.float32)
    labels = rng.integers(0, 5, (9, 8, 5)).astype(np.uint8)
    out_image, out_labels = apply_spatial(image, labels, SpatialParams(), (0.8, 1.1, 3.0), (9, 8, 5))
    assert out_image.dtype == np.float32 and out_labels.dtype == np.uint8
    assert np.array_equal(out_image, image) and np.array_equal(out_labels, labels)


def test_rotating_about_z_and_back_restores_the_labels():
    spacing = (1.0, 0.7, 2.5)
    labels = spheres((48, 64, 20), spacing, [(-12.0, 8.0, 0.0), (10.0, -8.0, 4.0)], 7.0)
    image = labels[None].astype(np.float32)
    there = SpatialParams(AffineParams(rotation_deg=(0.0, 0.0, 40.0)))
    back = SpatialParams(AffineParams(rotation_deg=(0.0, 0.0, -40.0)))
    rotated_image, rotated = apply_spatial(image, labels, there, spacing, labels.shape)
    assert dice(rotated, labels, 1) < 0.5  # it did move
    _, restored = apply_spatial(rotated_image, rotated, back, spacing, labels.shape)
    assert dice(restored, labels, 1) > 0.95 and dice(restored, labels, 2) > 0.95


def test_rotation_is_in_millimetres_on_an_anisotropic_grid():
    """A voxel 10 mm along +x from the centre of a 1 x 2 x 3 mm grid, after the sampling grid turns
    by +90 deg about z (the content by -90 deg), lies 10 mm along -y (5 voxels of 2 mm), and its
    1 x 2 mm footprint has become 2 x 1 mm: half of it in each neighbouring 1 mm column."""
    shape, spacing = (41, 21, 5), (1.0, 2.0, 3.0)
    labels = np.zeros(shape, np.uint8)
    labels[20 + 10, 10, 2] = 1
    params = SpatialParams(AffineParams(rotation_deg=(0.0, 0.0, 90.0)))
    image, rotated = apply_spatial(labels[None].astype(np.float32), labels, params, spacing, shape)
    assert image[0, 20, 10 - 5, 2] == pytest.approx(1.0)
    assert image[0, 19, 5, 2] == pytest.approx(0.5) and image[0, 21, 5, 2] == pytest.approx(0.5)
    assert image.sum() == pytest.approx(2.0)  # twice the area of the 1 mm output voxels
    assert np.argwhere(rotated == 1).tolist() == [[19, 5, 2], [20, 5, 2]]  # nearest: ties round up


def test_scaling_above_one_magnifies():
    spacing = (1.0, 1.0, 1.0)
    labels = spheres((40, 40, 40), spacing, [(0.0, 0.0, 0.0)], 8.0)
    params = SpatialParams(AffineParams(scales=(1.5, 1.5, 1.5)))
    _, zoomed = apply_spatial(labels[None].astype(np.float32), labels, params, spacing, labels.shape)
    assert np.sum(zoomed == 1) / np.sum(labels == 1) == pytest.approx(1.5 ** 3, rel=0.1)


def test_elastic_with_zero_displacement_equals_the_plain_affine():
    rng = np.random.default_rng(3)
    spacing = (1.0, 1.2, 2.0)
    image = rng.random((1, 30, 28, 16), dtype=np.float32)
    labels = rng.integers(0, 4, (30, 28, 16)).astype(np.uint8)
    affine = sample_affine(rng, AffineRanges((10.0, 10.0, 20.0), (0.9, 1.1), "anisotropic", 0.05))
    still = ElasticParams(np.zeros((3, 5, 5, 5), np.float32))
    plain = apply_spatial(image, labels, SpatialParams(affine), spacing, (20, 20, 10))
    with_elastic = apply_spatial(image, labels, SpatialParams(affine, still), spacing, (20, 20, 10))
    assert np.array_equal(plain[0], with_elastic[0]) and np.array_equal(plain[1], with_elastic[1])
    moved = apply_spatial(image, labels, SpatialParams(affine, sample_elastic(rng, 5, 3.0)), spacing, (20, 20, 10))
    assert not np.array_equal(plain[1], moved[1])


@pytest.mark.parametrize("config, patch, spacing", [
    (AugmentationConfig(affine_probability=1.0), (24, 24, 6), (3.0, 3.0, 10.0)),
    (BRAIN_CONFIG, (24, 24, 24), (1.0, 1.0, 1.5)),
    (dataclasses.replace(BRAIN_CONFIG, max_shear=0.0), (24, 24, 24), (1.0, 1.0, 1.5)),  # the shear bound is loose
])
def test_the_input_margin_holds_the_most_extreme_transforms(config, patch, spacing):
    """The sampled positions stay half a voxel inside the input for the extreme rotations, the
    strongest zoom-out, shear and displacement: the training patch is filled from real content.
    Each input channel is a ramp of the voxel index along one axis, so the linearly resampled
    image shows where every output voxel sampled."""
    size = Augmenter(config, patch, spacing).input_size
    ramps = np.indices(size, dtype=np.float32)
    labels = np.zeros(size, np.uint8)
    limits = config.affine_ranges.max_rotation_deg
    zoom_out = config.scale_range[0]
    scales = (zoom_out, zoom_out, 1.0) if config.affine_ranges.scaling == "in-plane" else (zoom_out,) * 3
    displacement = config.elastic_magnitude_mm if config.elastic_probability > 0 else 0.0
    lowest, highest = np.full(3, np.inf), np.full(3, -np.inf)
    for signs in itertools.product((-1, 1), repeat=3):
        rotation = tuple(sign * limit for sign, limit in zip(signs, limits))
        shear = tuple(sign * config.max_shear for sign in signs + signs)
        for push in (-displacement, displacement):
            elastic = ElasticParams(np.full((3, 4, 4, 4), push, np.float32)) if displacement else None
            params = SpatialParams(AffineParams(rotation, scales, shear), elastic)
            sampled, _ = apply_spatial(ramps, labels, params, spacing, patch)
            lowest = np.minimum(lowest, sampled.min(axis=(1, 2, 3)))
            highest = np.maximum(highest, sampled.max(axis=(1, 2, 3)))
    moved = np.array(size) > np.array(patch)
    assert (lowest[moved] >= 0.5).all() and (highest[moved] <= np.array(size)[moved] - 1.5).all()
    assert np.array_equal(lowest[~moved], np.zeros((~moved).sum()))  # unmoved axis: an exact crop


def test_required_input_size_matches_the_geometry():
    assert required_input_size((20, 20, 8), (1, 1, 3), None) == (20, 20, 8)
    # 45 deg in-plane: the 19-voxel diagonal of the patch needs ceil(19 * sqrt(2)) + 3 voxels
    ranges = AffineRanges(max_rotation_deg=(0.0, 0.0, 45.0))
    assert required_input_size((20, 20, 8), (1, 1, 3), ranges) == (30, 30, 8)
    # a displacement of up to 3 mm adds 3 voxels of 1 mm (1 of 3 mm) on each side, plus the slack
    assert required_input_size((20, 20, 8), (1, 1, 3), None, 3.0) == (28, 28, 12)


# ------------------------------------------------------------------------------------------- flip

def test_flipping_x_swaps_left_and_right_labels_and_is_its_own_inverse():
    labels = np.zeros((6, 3, 2), np.uint8)
    labels[:2], labels[4:] = 17, 53  # a left and a right structure
    labels[2, 0, 0] = 200  # beyond the swap table: unchanged
    image = np.arange(labels.size, dtype=np.float32).reshape((1,) + labels.shape)
    swap = label_swap_table([(17, 53)])
    flipped_image, flipped = apply_flip(image, labels, FlipParams((0,)), swap)
    assert (flipped[:2] == 17).all() and (flipped[4:] == 53).all()  # sides keep their names
    assert flipped[3, 0, 0] == 200 and np.array_equal(flipped_image[0], image[0, ::-1])
    again_image, again = apply_flip(flipped_image, flipped, FlipParams((0,)), swap)
    assert np.array_equal(again, labels) and np.array_equal(again_image, image)
    _, flipped_y = apply_flip(image, labels, FlipParams((1,)), swap)  # front-back: sides unchanged
    assert np.array_equal(flipped_y, labels[:, ::-1])


def test_flipping_x_needs_a_swap_table_or_symmetric_labels():
    with pytest.raises(ValueError, match="left"):
        AugmentationConfig(flip_probability=0.5)
    AugmentationConfig(flip_probability=0.5, symmetric_labels=True)
    AugmentationConfig(flip_probability=0.5, flip_axes=(1, 2))  # no side changes
    with pytest.raises(ValueError, match="paired with both"):
        AugmentationConfig(flip_probability=0.5, label_swap=((1, 2), (2, 3)))
    with pytest.raises(ValueError, match="symmetric_labels"):
        AugmentationConfig(flip_probability=0.5, label_swap=((1, 2),), symmetric_labels=True)
    # a {left: right, right: left} dict (both directions) is the same swap as one pair
    assert AugmentationConfig(flip_probability=0.5, label_swap={1: 2, 2: 1}).label_swap == ((1, 2), (2, 1))
    assert np.array_equal(label_swap_table({1: 2, 2: 1}.items()), label_swap_table([(2, 1)]))


def test_augmenter_flips_keep_each_label_on_its_side():
    config = AugmentationConfig(affine_probability=0.0, intensity_probability=0.0, noise_probability=0.0,
                                flip_probability=1.0, label_swap=((1, 2),))
    labels = np.zeros((16, 8, 8), np.uint8)
    labels[:8], labels[8:] = 1, 2
    image = np.linspace(0, 1, 16, dtype=np.float32)[None, :, None, None] * np.ones((1, 16, 8, 8), np.float32)
    out_image, out = Augmenter(config, (16, 8, 8), (1, 1, 1))(np.random.default_rng(0), image, labels)
    assert np.array_equal(out, labels) and out_image[0, 0, 0, 0] == 1.0  # image mirrored, names kept


# -------------------------------------------------------------------------------------- intensity

def test_bias_field_is_positive_bounded_and_smooth():
    params = sample_bias_field(np.random.default_rng(4), control_points=4, max_log_amplitude=0.4)
    field = bias_field(params, (48, 40, 32))
    assert field.shape == (48, 40, 32) and field.dtype == np.float32
    assert field.min() >= np.exp(-0.4) - 1e-6 and field.max() <= np.exp(0.4) + 1e-6
    log = np.log(field)
    largest_step = max(float(np.abs(np.diff(log, axis=a)).max()) for a in range(3))
    assert largest_step < 0.1 * float(log.max() - log.min())  # white noise would step by its full range
    assert BiasFieldParams(np.zeros((4, 4, 4), np.float32)).log_control.shape == (4, 4, 4)
    assert np.array_equal(bias_field(BiasFieldParams(np.zeros((3, 3, 3), np.float32)), (5, 5, 5)), np.ones((5, 5, 5)))


def test_low_resolution_keeps_the_shape_and_removes_fine_detail():
    rng = np.random.default_rng(5)
    image = rng.random((1, 40, 40, 20), dtype=np.float32)
    spacing = (1.0, 1.0, 2.0)
    coarse = apply_low_resolution(image, LowResolutionParams((3.0, 3.0, 6.0)), spacing)
    assert coarse.shape == image.shape and coarse.dtype == np.float32
    assert high_frequency_energy(coarse) < 0.2 * high_frequency_energy(image)
    constant = np.full((1, 40, 40, 20), 0.7, np.float32)
    assert np.allclose(apply_low_resolution(constant, LowResolutionParams((4.0, 4.0, 8.0)), spacing), 0.7)
    # only the coarsened axis changes: an image varying along x alone is untouched by thick z slices
    ramp = np.broadcast_to(np.linspace(0, 1, 40, dtype=np.float32)[None, :, None, None], image.shape)
    assert np.allclose(apply_low_resolution(ramp, LowResolutionParams((0.0, 0.0, 8.0)), spacing), ramp, atol=1e-6)
    one_axis = sample_low_resolution(rng, (2.0, 4.0), axes="one")
    assert sorted(s > 0 for s in one_axis.spacing_mm) == [False, False, True]


def test_blur_width_is_in_millimetres():
    image = np.zeros((1, 41, 41, 21), np.float32)
    image[0, 20, 20, 10] = 1
    spacing = np.array([1.0, 1.0, 2.0])
    blurred = apply_blur(image, BlurParams((2.0, 3.0, 4.0)), spacing)[0]
    offsets = [(np.arange(n) - c) * s for n, c, s in zip(blurred.shape, (20, 20, 10), spacing)]
    variances = [float(np.sum(blurred.sum(axis=tuple(b for b in range(3) if b != a)) * offsets[a] ** 2))
                 for a in range(3)]
    assert variances == pytest.approx([4.0, 9.0, 16.0], rel=0.05)


def test_gamma_keeps_the_range_and_bends_the_mid_tones():
    image = np.stack([np.linspace(-1, 3, 64, dtype=np.float32), np.linspace(0, 1, 64, dtype=np.float32)])
    image = image.reshape(2, 4, 4, 4)
    out = apply_gamma(image, GammaParams(2.0))
    assert np.allclose(out.min(axis=(1, 2, 3)), [-1, 0]) and np.allclose(out.max(axis=(1, 2, 3)), [3, 1])
    assert (out <= image + 1e-6).all() and out[1].mean() < image[1].mean() - 0.1
    assert np.allclose(apply_gamma(image, GammaParams(1.0)), image, atol=1e-6)


def test_noise_has_the_requested_spread_and_follows_the_generator():
    image = np.zeros((1, 32, 32, 32), np.float32)
    noisy = apply_noise(image, NoiseParams(0.2), np.random.default_rng(8))
    assert float(noisy.std()) == pytest.approx(0.2, rel=0.02)
    assert np.array_equal(noisy, apply_noise(image, NoiseParams(0.2), np.random.default_rng(8)))


# -------------------------------------------------------------------------------------- augmenter

def test_augmenter_with_everything_on_returns_training_patches():
    spacing = (1.0, 1.0, 1.2)
    aug = Augmenter(BRAIN_CONFIG, (24, 24, 20), spacing)
    data = np.random.default_rng(2)
    image = data.random((2,) + aug.input_size, dtype=np.float32)
    labels = spheres(aug.input_size, spacing, [(-6.0, 0.0, 0.0), (6.0, 0.0, 0.0)], 5.0)
    outputs = [aug(np.random.default_rng(seed), image, labels) for seed in (1, 1, 2)]
    for out_image, out_labels in outputs:
        assert out_image.shape == (2, 24, 24, 20) and out_image.dtype == np.float32
        assert out_labels.shape == (24, 24, 20) and out_labels.dtype == np.uint8
        assert np.isfinite(out_image).all() and set(np.unique(out_labels)) <= {0, 1, 2}
    assert np.array_equal(outputs[0][0], outputs[1][0]) and np.array_equal(outputs[0][1], outputs[1][1])
    assert not np.array_equal(outputs[0][0], outputs[2][0]) and not np.array_equal(outputs[0][1], outputs[2][1])


def test_config_survives_a_json_plan_and_describes_what_is_on():
    plain = json.loads(json.dumps(dataclasses.asdict(BRAIN_CONFIG)))  # tuples arrive as lists
    assert AugmentationConfig(**plain) == BRAIN_CONFIG
    text = BRAIN_CONFIG.describe()
    for words in ("rotation up to 15.0 / 15.0 / 15.0 deg", "isotropic scaling 0.85-1.15", "shear up to 0.05",
                  "elastic deformation up to 4.0 mm", "gamma 0.7-1.5", "Gaussian blur", "bias field",
                  "low resolution", "Gaussian noise", "flips of axes [0] swapping labels 1<->2"):
        assert words in text
    with pytest.raises(ValueError, match="probability"):
        AugmentationConfig(gamma_probability=1.5)
    with pytest.raises(ValueError, match="scaling"):
        AugmentationConfig(scaling="sideways")
    assert AugmentationConfig().affine_ranges.scaling == "in-plane"  # one angle: thick-slice friendly
    assert BRAIN_CONFIG.affine_ranges.scaling == "isotropic"  # three angles: 3D


@pytest.mark.parametrize("module", ["augmentation", "synthesis", "transforms._separable", "transforms.spatial",
                                    "transforms.flip", "transforms.scale_shift", "transforms.gamma", "transforms.blur",
                                    "transforms.bias_field", "transforms.low_resolution", "transforms.noise"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"medsegai_training.{module}"))
    assert result.attempted > 0 and result.failed == 0
