"""Results land on the input's exact grid, whatever its orientation, spacing and origin."""

import numpy as np
import pytest
import slicerio

from MedSegAILib.image import Volume, read_volume, write_volume
from MedSegAILib.outputs import OutputOptions, write_outputs
from MedSegAILib.pipeline import segment

from testing_support import GEOMETRIES, asymmetric_structure, asymmetric_structure_at, label_entry, volume_on


def _structure_volume(geometry: str) -> tuple[Volume, np.ndarray]:
    vol = volume_on(geometry)
    mask = asymmetric_structure(vol)
    vol.array[:] = np.where(mask, 100, -1000)
    return vol, mask


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_native_spacing_result_is_voxel_exact(bundle_factory, geometry):
    vol, mask = _structure_volume(geometry)
    result = segment([vol], bundle_factory())
    np.testing.assert_array_equal(result.labels.array == 1, mask)
    np.testing.assert_array_equal(result.labels.ijk_to_ras, vol.ijk_to_ras)


def _voxel_towards_right(vol: Volume, mask: np.ndarray) -> np.ndarray:
    """Expected output of the forward-difference test network: voxels outside the structure whose
    neighbour towards patient Right (along the voxel axis closest to R) is inside."""
    direction = vol.ijk_to_ras[:3, :3]
    axis_ijk = int(np.argmax(np.abs(direction[0])))
    step = int(np.sign(direction[0, axis_ijk]))
    axis_kji = 2 - axis_ijk
    neighbour = np.zeros_like(mask)
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    if step > 0:
        dst[axis_kji], src[axis_kji] = slice(0, -1), slice(1, None)
    else:
        dst[axis_kji], src[axis_kji] = slice(1, None), slice(0, -1)
    neighbour[tuple(dst)] = mask[tuple(src)]
    return neighbour & ~mask


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_model_sees_the_patient_in_ras_orientation(bundle_factory, geometry):
    vol, mask = _structure_volume(geometry)
    vol.array[:] = mask.astype(np.int16)
    bundle = bundle_factory(network={"name": "test_forward_difference_x", "args": {}},
                            labels=[label_entry(1, "Left border", ["SCT", "85756007", "Tissue"])])
    result = segment([vol], bundle)
    expected = _voxel_towards_right(vol, mask)
    assert expected.sum() > 20
    np.testing.assert_array_equal(result.labels.array == 1, expected)


# Halfway between background (-1000) and structure (100): after linear interpolation this window
# neither grows nor shrinks the structure, so any displacement is a geometry error.
MIDPOINT_WINDOW = [[-450, 5000]]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def _centroid_ras(vol: Volume, mask: np.ndarray) -> np.ndarray:
    return (vol.ijk_to_ras @ np.r_[np.argwhere(mask).mean(0)[::-1], 1])[:3]


@pytest.mark.parametrize("geometry", ["lps_aniso", "oblique", "permuted_sagittal"])
def test_resampled_model_spacing_lands_on_the_structure(bundle_factory, geometry):
    vol, mask = _structure_volume(geometry)
    bundle = bundle_factory(preprocessing={"target_spacing": [1.5, 1.5, 1.5], "normalization": {"type": "none"}},
                            network={"name": "intensity_window", "args": {
                                "in_channels": 1, "out_channels": 2, "windows": MIDPOINT_WINDOW}})
    result = segment([vol], bundle)
    found = result.labels.array == 1
    assert _dice(found, mask) > 0.85
    assert np.linalg.norm(_centroid_ras(vol, found) - _centroid_ras(vol, mask)) < 0.5 * vol.spacing.min()


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_file_to_seg_nrrd_round_trip_is_voxel_exact(tmp_path, bundle_factory, suffix):
    vol, mask = _structure_volume("oblique")
    path = write_volume(vol, tmp_path / f"in{suffix}")
    loaded = read_volume(path)
    result = segment([loaded], bundle_factory())
    write_outputs(result, loaded, tmp_path, "case", OutputOptions(measurements=False))
    seg = slicerio.read_segmentation(str(tmp_path / "case.seg.nrrd"))
    voxels_kji = seg["voxels"].transpose(2, 1, 0)
    np.testing.assert_array_equal(voxels_kji == 1, mask)
    ijk_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ seg["ijkToLPS"]
    np.testing.assert_allclose(ijk_to_ras, vol.ijk_to_ras, atol=1e-5)


def test_second_input_is_aligned_by_physical_position(bundle_factory):
    """The structure is only in the second input, on a flipped, coarser, shifted grid; the model
    reads that channel, and the result must land on the structure in the first input's grid."""
    first, mask = _structure_volume("lps_aniso")
    first.array[:] = 0
    second = volume_on("flipped_si", shape_kji=(20, 50, 50))
    centre = (first.ijk_to_ras @ np.r_[(np.asarray(first.grid.size_ijk) - 1) / 2, 1])[:3]
    size = np.asarray(second.grid.size_ijk) - 1
    second.ijk_to_ras[:3, 3] = centre - second.ijk_to_ras[:3, :3] @ (size / 2) + [3.0, -2.0, 1.5]
    second.array[:] = np.where(asymmetric_structure_at(second, centre), 100, -1000)
    bundle = bundle_factory(
        inputs=[{"name": "CT", "modality": "other"}, {"name": "CT2", "modality": "other"}],
        network={"name": "intensity_window", "args": {"in_channels": 2, "out_channels": 2, "windows": MIDPOINT_WINDOW,
                                                      "channel": 1}})
    result = segment([first, second], bundle)
    assert result.labels.array.shape == first.array.shape
    expected = asymmetric_structure_at(first, centre)
    found = result.labels.array == 1
    assert _dice(found, expected) > 0.8
    assert np.linalg.norm(_centroid_ras(first, found) - _centroid_ras(first, expected)) < 1.0
