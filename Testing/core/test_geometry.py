import numpy as np
import pytest

from MedSegAILib.geometry import Grid, Reorientation, grid_with_spacing, orientation_code, ras_box_to_ijk_slices
from MedSegAILib.image import Volume, read_volume, resample, volume_from_sitk, volume_to_sitk, write_volume

from testing_support import GEOMETRIES, ras_of_voxels, volume_on


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_reorientation_is_lossless_and_keeps_physical_positions(name):
    vol = volume_on(name)
    vol.array[:] = np.arange(vol.array.size).reshape(vol.array.shape)
    r = Reorientation.to_ras(vol.grid)
    canonical = r.apply(vol.array)
    target = r.target
    assert canonical.shape == target.shape
    # every voxel keeps its value at the same physical position
    ras_src = ras_of_voxels(vol)
    ras_dst = ras_of_voxels(Volume(np.ascontiguousarray(canonical), target.ijk_to_ras))
    src = dict(zip(vol.array.ravel().tolist(), ras_src.reshape(-1, 3)))
    for value, pos in zip(np.ascontiguousarray(canonical).ravel()[::97].tolist(), ras_dst.reshape(-1, 3)[::97]):
        np.testing.assert_allclose(src[value], pos, atol=1e-9)
    # the canonical axes point R, A, S (positive diagonal dominance)
    d = target.ijk_to_ras[:3, :3]
    assert all(d[r_, r_] > 0 and abs(d[r_, r_]) == np.abs(d[r_]).max() for r_ in range(3))
    np.testing.assert_array_equal(r.invert(canonical), vol.array)


def test_orientation_codes():
    assert orientation_code(volume_on("ras_iso").ijk_to_ras) == "RAS"
    assert orientation_code(volume_on("lps_aniso").ijk_to_ras) == "LPS"
    assert orientation_code(volume_on("permuted_sagittal").ijk_to_ras) == "AIL"


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_sitk_conversion_is_lps_and_round_trips(name):
    vol = volume_on(name)
    image = volume_to_sitk(vol)
    # SimpleITK holds LPS: x and y of the origin change sign
    np.testing.assert_allclose(image.GetOrigin(), vol.ijk_to_ras[:3, 3] * [-1, -1, 1])
    back = volume_from_sitk(image)
    np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-12)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_file_round_trip_keeps_geometry_and_voxels(tmp_path, suffix):
    vol = volume_on("oblique")
    vol.array[:] = np.random.default_rng(0).integers(-1000, 1000, vol.array.shape)
    path = write_volume(vol, tmp_path / f"v{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.ijk_to_ras, vol.ijk_to_ras, atol=1e-5)


def _nrrd(path, space, directions, origin, data):
    header = (f"NRRD0004\ntype: short\ndimension: 3\nspace: {space}\nsizes: {data.shape[2]} {data.shape[1]} "
              f"{data.shape[0]}\nspace directions: {directions}\nkinds: domain domain domain\nendian: little\n"
              f"encoding: raw\nspace origin: {origin}\n\n")
    path.write_bytes(header.encode() + data.astype("<i2").tobytes())


def test_ras_and_lps_space_nrrd_files_give_the_same_geometry(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    _nrrd(tmp_path / "lps.nrrd", "left-posterior-superior", "(-0.8,0,0) (0,-0.9,0) (0,0,2.5)", "(-100,-50,-30)", data)
    _nrrd(tmp_path / "ras.nrrd", "right-anterior-superior", "(0.8,0,0) (0,0.9,0) (0,0,2.5)", "(100,50,-30)", data)
    lps, ras = read_volume(tmp_path / "lps.nrrd"), read_volume(tmp_path / "ras.nrrd")
    expected = np.diag([0.8, 0.9, 2.5, 1.0])
    expected[:3, 3] = [100, 50, -30]
    np.testing.assert_allclose(lps.ijk_to_ras, expected)
    np.testing.assert_allclose(ras.ijk_to_ras, expected)
    np.testing.assert_array_equal(lps.array, ras.array)


def test_grid_with_spacing_keeps_field_of_view_edges():
    grid = volume_on("oblique").grid
    new = grid_with_spacing(grid, (2.0, 2.0, 2.0))
    for g in (grid, new):
        assert g.shape
    # voxel corner (-0.5, -0.5, -0.5) and the far corner coincide in physical space
    for corner in ([-0.5, -0.5, -0.5], None):
        if corner is None:
            a = grid.ijk_to_ras @ np.r_[np.asarray(grid.size_ijk) - 0.5, 1]
            b = new.ijk_to_ras @ np.r_[np.asarray(new.size_ijk) - 0.5, 1]
        else:
            a = grid.ijk_to_ras @ np.r_[corner, 1]
            b = new.ijk_to_ras @ np.r_[corner, 1]
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_resample_is_identity_on_same_grid_and_physical_otherwise():
    vol = volume_on("lps_aniso")
    vol.array[:] = 7
    np.testing.assert_array_equal(resample(vol, vol.grid).array, vol.array)
    other = grid_with_spacing(Reorientation.to_ras(vol.grid).target, (1.5, 1.5, 1.5))
    out = resample(vol, other, "nearest")
    assert out.array.shape == other.shape and (out.array == 7).mean() > 0.95


def test_ras_box_to_voxel_bounds():
    grid = Grid((10, 10, 10), np.diag([-1.0, 1.0, 1.0, 1.0]))  # i points left
    start, stop = ras_box_to_ijk_slices(grid, (-5, 2, 3), (-2, 4, 20))
    np.testing.assert_array_equal(start, [2, 2, 3])
    np.testing.assert_array_equal(stop, [6, 5, 10])


def test_a_cropped_volume_keeps_every_voxel_where_it_was():
    rotation = np.linalg.qr(np.random.default_rng(3).standard_normal((3, 3)))[0]  # oblique, maybe flipped
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = rotation * [0.8, 1.1, 2.5]
    ijk_to_ras[:3, 3] = [12.0, -40.0, 7.5]
    volume = Volume(np.arange(5 * 6 * 7).reshape(5, 6, 7), ijk_to_ras)
    piece = volume.crop((2, 1, 3), (6, 4, 5))  # (i, j, k)
    assert piece.array.shape == (2, 3, 4)
    for k, j, i in [(0, 0, 0), (1, 2, 3)]:
        assert piece.array[k, j, i] == volume.array[k + 3, j + 1, i + 2]
        np.testing.assert_allclose(piece.ijk_to_ras @ [i, j, k, 1], volume.ijk_to_ras @ [i + 2, j + 1, k + 3, 1])
