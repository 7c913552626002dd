"""Class scores go back to the scan's grid exactly as ITK's linear interpolator would put them."""

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegAILib.geometry import Grid, compose_ijk_to_ras, crop_grid, grid_with_spacing
from MedSegAILib.image import set_sitk_geometry
from MedSegAILib.preprocessing import score_resampling
from MedSegAILib.preprocessing.score_resampling import AxisInterpolation, axis_maps, resample_argmax


def _itk_argmax(scores: np.ndarray, values: np.ndarray, model_grid: Grid, target: Grid) -> np.ndarray:
    """The oracle: SimpleITK resamples every class score linearly onto ``target``, then argmax."""
    nx, ny, nz = target.size_ijk
    reference = sitk.Image(nx, ny, nz, sitk.sitkUInt8)
    set_sitk_geometry(reference, target)
    upsampled = []
    for score in scores:
        image = sitk.GetImageFromArray(np.ascontiguousarray(score, dtype=np.float32))
        set_sitk_geometry(image, model_grid)
        resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
        upsampled.append(sitk.GetArrayFromImage(resampled))
    return values[np.argmax(np.stack(upsampled), axis=0)]


def _canonical(size_kji, spacing) -> Grid:
    # a grid as after reorientation to RAS (identity directions), with an origin off the integers
    return Grid(size_kji, compose_ijk_to_ras(spacing, np.eye(3), [-91.3, 12.7, -40.1]))


@pytest.mark.parametrize("size_kji, spacing, target_spacing", [
    ((23, 37, 41), (0.7, 0.9, 2.5), (1.5, 1.5, 1.5)),   # anisotropic scan, coarser model: upsampling back
    ((12, 20, 18), (3.0, 2.0, 4.0), (1.0, 1.5, 2.0)),   # finer model: downsampling back
    ((40, 9, 7), (1.0, 1.0, 1.0), (3.0, 3.0, 3.0)),     # model grid of 3 x 3 x 13 voxels
])
def test_argmax_of_interpolated_scores_matches_itk(size_kji, spacing, target_spacing, monkeypatch):
    monkeypatch.setattr(score_resampling, "SLAB_SLICES", 5)  # several slabs, the last one partial
    target = _canonical(size_kji, spacing)
    model = grid_with_spacing(target, target_spacing)
    rng = np.random.default_rng(0)
    # smooth scores (as a network's are), so that near-ties, where float rounding may differ, are rare
    coarse = rng.random((4, *model.shape))
    scores = np.stack([np.cumsum(np.cumsum(c, axis=1), axis=2) for c in coarse]).astype(np.float32)
    values = np.array([0, 3, 7, 250])
    ours = resample_argmax(scores, values, model, target)
    oracle = _itk_argmax(scores, values, model, target)
    assert ours.shape == target.shape and ours.dtype == np.uint8
    assert np.mean(ours == oracle) > 0.999
    assert set(np.unique(ours)) <= set(values.tolist())


def test_scores_in_network_layout_views_are_accepted():
    target = _canonical((10, 12, 14), (1.0, 1.0, 2.0))
    model = grid_with_spacing(target, (2.0, 2.0, 2.0))
    scores_xyz = np.random.default_rng(1).random((3, *model.size_ijk)).astype(np.float32)
    view = scores_xyz.transpose(0, 3, 2, 1)  # (C, k, j, i), not contiguous
    np.testing.assert_array_equal(resample_argmax(view, np.arange(3), model, target),
                                  resample_argmax(np.ascontiguousarray(view), np.arange(3), model, target))


def test_a_sub_grid_maps_with_an_offset_and_unit_scale():
    target = _canonical((10, 12, 14), (1.0, 1.0, 2.0))
    scale, offset = axis_maps(target, crop_grid(target, (2, 3, 4), (10, 12, 10)))
    np.testing.assert_allclose(scale, [1, 1, 1])
    np.testing.assert_allclose(offset, [2, 3, 4])


def test_grids_that_are_not_axis_aligned_are_refused():
    target = _canonical((6, 6, 6), (1.0, 1.0, 1.0))
    c, s = np.cos(0.3), np.sin(0.3)
    rotated = Grid((6, 6, 6), compose_ijk_to_ras((1.0, 1.0, 1.0), [[c, -s, 0], [s, c, 0], [0, 0, 1]], [0, 0, 0]))
    assert axis_maps(rotated, target) is None
    with pytest.raises(ValueError, match="axis-aligned"):
        resample_argmax(np.zeros((2, 6, 6, 6), np.float32), np.arange(2), rotated, target)


def test_positions_beyond_the_outer_voxel_centres_take_the_border_value():
    axis = AxisInterpolation.for_axis(3, 1.0, -1.0, 2)  # positions -1, 0, 1
    values = axis.apply(np.array([[10.0, 20.0]], np.float32), 1)
    assert values.tolist() == [[10.0, 10.0, 20.0]]


def test_a_flipped_axis_is_refused_not_mirrored():
    target = _canonical((6, 6, 6), (1.0, 1.0, 1.0))
    flipped = Grid((6, 6, 6), compose_ijk_to_ras((1.0, 1.0, 1.0), np.diag([-1.0, 1.0, 1.0]), [5.0, 0, 0]))
    assert axis_maps(flipped, target) is None


def _blend_every_voxel(scores: np.ndarray, values: np.ndarray, model: Grid, target: Grid) -> np.ndarray:
    """Every class blended at every voxel, i then j then k, with the same float32 operations."""
    scale, offset = axis_maps(model, target)
    axes = [AxisInterpolation.for_axis(n, s, o, m) for n, s, o, m in
            zip(target.size_ijk, scale, offset, model.size_ijk)]
    blended = axes[2].apply(axes[1].apply(axes[0].apply(scores.astype(np.float32), 3), 2), 1)
    return values[np.argmax(blended, axis=0)]


@pytest.mark.parametrize("classes, ties", [(2, False), (6, False), (4, True)])
def test_skipping_the_blend_where_both_planes_agree_changes_no_label(classes, ties, monkeypatch):
    # the blend along k is skipped where the two model planes have the same label: the result must
    # be exactly the full computation's, also where classes tie (the first one wins, as np.argmax)
    monkeypatch.setattr(score_resampling, "SLAB_SLICES", 7)
    target = _canonical((61, 30, 26), (0.8, 0.8, 1.1))
    model = grid_with_spacing(target, (2.1, 1.7, 4.9))  # k: several output slices per model interval
    rng = np.random.default_rng(classes)
    coarse = rng.random((classes, *model.shape))
    scores = np.stack([np.cumsum(np.cumsum(c, axis=0), axis=2) for c in coarse]).astype(np.float32)
    if ties:  # class 2 equals class 1 on half of the planes, exactly
        scores[2, ::2] = scores[1, ::2]
        scores[3] = np.maximum(scores[3], scores[1])
    values = np.arange(classes) * 3
    np.testing.assert_array_equal(resample_argmax(scores, values, model, target),
                                  _blend_every_voxel(scores, values, model, target))
