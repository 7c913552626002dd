from dataclasses import asdict

import numpy as np
import pytest
import vtk
from scipy import ndimage

from MedSegAILib.geometry import compose_ijk_to_ras
from MedSegAILib.label_regions import centroid_index, label_boxes
from MedSegAILib.measurements import intensity_statistics, max_diameter, measure, measure_segment, measurements_csv
from MedSegAILib.surfaces import SurfaceParameters, label_surface, label_surfaces, surface_area_volume, write_surface

from testing_support import rotation


def sphere(radius_mm=8.0, spacing=(0.8, 0.9, 2.5), direction=np.eye(3), shape=(20, 40, 40)):
    m = compose_ijk_to_ras(spacing, direction, (100.0, 50.0, -30.0))
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    centre_ijk = (np.asarray(shape[::-1]) - 1) / 2
    offsets = np.stack([i, j, k], -1) - centre_ijk
    ras = offsets @ (m[:3, :3].T)
    labels = (np.linalg.norm(ras, axis=-1) <= radius_mm).astype(np.uint8)
    centre_ras = m[:3, :3] @ centre_ijk + m[:3, 3]
    return labels, m, centre_ras


@pytest.mark.parametrize("direction", [np.diag([-1.0, -1.0, 1.0]), rotation(1, 25) @ rotation(2, -15)])
def test_sphere_measurements_match_geometry(direction):
    labels, m, centre = sphere(direction=direction)
    image = np.where(labels == 1, 40.0, -1000.0)
    row = measure(labels, m, {1: "sphere"}, image)[0]
    analytic_volume = 4 / 3 * np.pi * 8 ** 3
    assert row.volume_mm3 == pytest.approx(labels.sum() * 0.8 * 0.9 * 2.5)
    assert row.volume_ml == pytest.approx(row.volume_mm3 / 1000)
    assert row.volume_mm3 == pytest.approx(analytic_volume, rel=0.05)
    assert row.surface_volume_mm3 == pytest.approx(analytic_volume, rel=0.06)
    assert row.surface_area_mm2 == pytest.approx(4 * np.pi * 64, rel=0.06)
    np.testing.assert_allclose(row.centroid_ras, centre, atol=0.3)
    assert row.max_diameter_mm == pytest.approx(16.0, abs=1.6)
    np.testing.assert_allclose(row.bbox_ras_min, centre - 8, atol=1.5)
    assert row.intensity["mean"] == 40.0 and row.intensity["p95"] == 40.0
    assert "centroid_ras_R" in measurements_csv([row]).splitlines()[0]


def test_surface_is_in_ras_and_smoothing_changes_it():
    labels, m, centre = sphere(spacing=(1.0, 1.0, 1.0), direction=np.diag([-1.0, -1.0, 1.0]))
    rough = label_surface(labels, m, 1, SurfaceParameters(smoothing_factor=0.0))
    smooth = label_surface(labels, m, 1)
    pts = np.array([rough.GetPoint(n) for n in range(rough.GetNumberOfPoints())])
    np.testing.assert_allclose(pts.mean(0), centre, atol=0.2)
    assert surface_area_volume(smooth)[0] < surface_area_volume(rough)[0]  # smoothing removes staircase area
    assert label_surface(labels, m, 2).GetNumberOfPoints() == 0


def test_label_touching_the_border_gives_a_closed_surface():
    labels = np.zeros((5, 6, 7), np.uint8)
    labels[0:3, 0:6, 2:5] = 1
    poly = label_surface(labels, np.eye(4), 1, SurfaceParameters(smoothing_factor=0.0))
    edges = vtk.vtkFeatureEdges()
    edges.SetInputData(poly)
    edges.BoundaryEdgesOn()
    edges.FeatureEdgesOff()
    edges.NonManifoldEdgesOff()
    edges.ManifoldEdgesOff()
    edges.Update()
    assert edges.GetOutput().GetNumberOfCells() == 0  # watertight
    assert surface_area_volume(poly)[1] == pytest.approx(labels.sum(), rel=0.15)


def test_surface_files_are_lps_stl_and_obj(tmp_path):
    labels, m, centre = sphere(spacing=(1.0, 1.0, 1.0))
    poly = label_surface(labels, m, 1)
    for suffix in ("stl", "obj"):
        path = write_surface(poly, tmp_path / f"s.{suffix}")
        reader = vtk.vtkSTLReader() if suffix == "stl" else vtk.vtkOBJReader()
        reader.SetFileName(str(path))
        reader.Update()
        read = reader.GetOutput()
        pts = np.array([read.GetPoint(n) for n in range(read.GetNumberOfPoints())])
        np.testing.assert_allclose(pts.mean(0), centre * [-1, -1, 1], atol=0.3)
    assert (tmp_path / "s.obj").read_text().startswith("# SPACE=LPS")


def test_max_diameter_and_intensity_statistics_helpers():
    points = np.array([[0, 0, 0], [3, 4, 0], [1, 1, 1], [0, 0, 12.0], [1, 0, 0]])
    assert max_diameter(points) == pytest.approx(13.0)
    assert max_diameter(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0.0]])) == pytest.approx(2.0)  # degenerate hull
    stats = intensity_statistics(np.arange(101))
    assert stats["median"] == 50 and stats["p05"] == 5 and stats["min"] == 0
    assert intensity_statistics(np.array([])) == {}


def several_labels(seed=0, shape=(30, 40, 50)):
    """Three blobs and a label absent from the map, on an oblique anisotropic grid."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    labels[3:12, 5:30, 4:20] = 1
    labels[15:28, 10:35, 25:47] = 2
    labels[20:24, 2:8, 2:9] = 3
    labels[rng.random(shape) < 0.05] = 0  # ragged, with holes
    image = rng.normal(0, 100, shape).astype(np.int16)
    return labels, compose_ijk_to_ras((0.7, 0.8, 2.0), rotation(2, 20), (10.0, -5.0, 3.0)), image


def test_centroid_from_projections_equals_center_of_mass():
    rng = np.random.default_rng(1)
    for shape in ((7, 9, 11), (1, 5, 3), (20, 3, 17)):
        mask = rng.random(shape) < 0.3
        np.testing.assert_allclose(centroid_index(mask), ndimage.center_of_mass(mask), rtol=1e-12)
        np.testing.assert_allclose(centroid_index(mask[::2, :, ::-1]), ndimage.center_of_mass(mask[::2, :, ::-1]))


def test_label_boxes_are_find_objects_by_value():
    labels, _, _ = several_labels()
    boxes = label_boxes(labels, [3, 1, 5])
    assert boxes == {3: ndimage.find_objects(labels)[2], 1: ndimage.find_objects(labels)[0], 5: None}
    rng = np.random.default_rng(4)
    sparse = np.where(rng.random((13, 17, 19)) > 0.995, rng.integers(1, 300, (13, 17, 19)), 0)
    for dtype in (np.uint8, np.uint16, np.int32, np.int64):
        typed = (sparse % 256 if dtype == np.uint8 else sparse).astype(dtype)
        expected = ndimage.find_objects(typed)
        values = list(range(1, len(expected) + 2))
        assert label_boxes(typed, values) == {v: expected[v - 1] if v <= len(expected) else None for v in values}
    with pytest.raises(ValueError, match="0 is background"):
        label_boxes(labels, [0, 1])


def test_measurements_are_the_same_with_boxes_threads_and_without_normals():
    """The fast path (bounding boxes, threads, no normals) measures exactly what one label at a
    time over the whole map with Slicer's full surface pipeline measures."""
    labels, m, image = several_labels()
    names = {1: "a", 2: "b", 3: "c", 4: "absent"}
    reference = [measure_segment(labels, m, v, n, image) for v, n in names.items()]
    no_normals = SurfaceParameters(compute_normals=False)
    surfaces = label_surfaces(labels, m, list(names), no_normals, threads=2)
    fast = measure(labels, m, names, image, no_normals, surfaces, threads=2)
    assert [r.name for r in fast] == list(names.values())
    for ref, row in zip(reference, fast):
        for key, value in asdict(ref).items():
            if isinstance(value, str):
                assert getattr(row, key) == value
            elif key == "intensity":
                assert row.intensity == pytest.approx(value, rel=1e-12), key
            elif isinstance(value, list):
                np.testing.assert_allclose(getattr(row, key), value, rtol=1e-9, err_msg=key)
            else:
                assert getattr(row, key) == pytest.approx(value, rel=1e-9, nan_ok=True), key
    assert fast[3].voxel_count == 0 and fast[3].surface_area_mm2 == 0.0
    assert fast[0].voxel_count == int((labels == 1).sum()) > 0
