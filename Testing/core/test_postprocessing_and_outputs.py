import numpy as np
import pytest
import slicerio
from scipy import ndimage

from MedSegAILib.bundle.card import Code, PostProcessing, Terminology
from MedSegAILib.postprocessing import keep_components, keep_largest_components, label_components, postprocess
from MedSegAILib.segnrrd import SegmentInfo, seg_nrrd_header, write_seg_nrrd
from MedSegAILib.terminology import parse_terminology_entry, same_concept, terminology_entry


def test_postprocessing_keeps_largest_component_drops_islands_and_fills_holes():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:10, 2:10, 2:10] = 1  # big component with a hole
    labels[5, 5, 5] = 0
    labels[15:17, 15:17, 15:17] = 1  # 8 voxels: second component
    labels[2:6, 14:18, 2:6] = 2  # 64 voxels
    labels[18, 2, 18] = 2  # 1-voxel island of label 2
    labels[4, 4, 4] = 3  # another label inside label 1 must not be overwritten by hole filling
    specs = {1: PostProcessing(largest_components=1, fill_holes=True), 2: PostProcessing(min_island_ml=0.005)}
    postprocess(labels, specs, (1.0, 1.0, 1.0))
    assert labels[5, 5, 5] == 1  # hole filled
    assert labels[4, 4, 4] == 3  # other label kept
    assert (labels[15:17, 15:17, 15:17] == 0).all()  # small component of label 1 removed
    assert labels[18, 2, 18] == 0  # island under 5 voxels (0.005 mL) removed
    assert (labels[2:6, 14:18, 2:6] == 2).all()


def test_fill_holes_equals_scipys_on_random_masks():
    from scipy import ndimage

    from MedSegAILib.postprocessing import fill_holes

    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = ndimage.binary_opening(rng.random((20, 21, 22)) > 0.45)
        np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_fill_holes_equals_scipys_for_masks_that_fill_part_of_the_array():
    from scipy import ndimage

    from MedSegAILib.postprocessing import fill_holes

    rng = np.random.default_rng(1)
    for offset in [(0, 0, 0), (5, 2, 9), (10, 13, 14)]:  # the first and last touch the array's border
        mask = np.zeros((20, 21, 22), bool)
        shell = np.zeros((10, 8, 8), bool)
        shell[1:-1, 1:-1, 1:-1] = True
        shell[2:-2, 2:-2, 2:-2] = rng.random((6, 4, 4)) < 0.3  # a hollow block with bits inside
        mask[tuple(slice(o, o + n) for o, n in zip(offset, shell.shape))] = shell
        filled = fill_holes(mask)
        np.testing.assert_array_equal(filled, ndimage.binary_fill_holes(mask))
        assert filled.sum() > mask.sum()


def test_island_size_uses_millilitres_of_the_grid():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0:2, 0:2, 0:2] = 1  # 8 voxels
    postprocess(labels, {1: PostProcessing(min_island_ml=0.5)}, (4.0, 5.0, 5.0))  # 100 mm3 voxels, 0.8 mL: kept
    assert labels.sum() == 8
    postprocess(labels, {1: PostProcessing(min_island_ml=0.5)}, (2.0, 5.0, 5.0))  # 0.4 mL: removed
    assert labels.sum() == 0


def _ball(shape, centre, radius_vox):
    grid = np.indices(shape)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius_vox)) <= 1


def test_opening_cuts_a_blob_off_its_thin_bridge_in_millimetres():
    """An organ (ball, radius 20 mm) with a blob (radius 8 mm) tied on by a 4 mm bridge, on an
    anisotropic grid: opening by 5 mm and keeping the largest core drops blob and bridge, and gives
    the organ back whole; by 1 mm the bridge holds; on a finer grid the same millimetres cut the same."""
    from MedSegAILib.postprocessing import cut_thin_bridges, distance_to

    for spacing in [(2.0, 1.0, 1.0), (1.0, 0.5, 0.5)]:
        shape = tuple(int(round(n / s)) for n, s in zip((60, 100, 60), spacing))
        centre = [n // 2 for n in shape]
        organ = _ball(shape, centre, [20 / s for s in spacing])
        blob_centre = [centre[0], centre[1] + int(34 / spacing[1]), centre[2]]
        blob = _ball(shape, blob_centre, [8 / s for s in spacing])
        bridge = np.zeros(shape, bool)
        half = [int(2 / s) for s in spacing]
        bridge[centre[0] - half[0]:centre[0] + half[0] + 1, centre[1]:blob_centre[1] + 1,
               centre[2] - half[2]:centre[2] + half[2] + 1] = True
        mask = organ | blob | bridge
        opened = cut_thin_bridges(mask, 5.0, spacing, largest=1)
        assert not (opened & blob & ~organ).any()
        # of the bridge, at most the voxels touching the organ's rim stay (voxel rounding)
        assert distance_to(organ, spacing)[opened & ~organ].max(initial=0) <= max(spacing)
        assert (opened == organ).mean() > 0.999
        gentle = cut_thin_bridges(mask, 1.0, spacing, largest=1)  # the 4 mm bridge holds: blob stays
        assert (gentle & blob).sum() > 0.95 * blob.sum() and (gentle & bridge).sum() > 0.9 * bridge.sum()
        labels = mask.astype(np.uint8)
        postprocess(labels, {1: PostProcessing(largest_components=1, opening_mm=5.0)}, spacing)
        np.testing.assert_array_equal(labels > 0, opened)


def test_opening_never_deletes_a_structure_thinner_than_the_ball():
    from MedSegAILib.postprocessing import cut_thin_bridges

    plate = np.zeros((20, 30, 30), bool)
    plate[9:12, 5:25, 5:25] = True  # 3 mm thick
    np.testing.assert_array_equal(cut_thin_bridges(plate, 5.0, (1.0, 1.0, 1.0), largest=1), plate)


def test_distance_to_equals_scipys_exact_transform():
    from MedSegAILib.postprocessing import distance_to

    rng = np.random.default_rng(3)
    mask = rng.random((15, 16, 17)) > 0.97
    spacing = (2.5, 0.8, 1.1)
    expected = ndimage.distance_transform_edt(~mask, sampling=spacing)
    np.testing.assert_allclose(distance_to(mask, spacing), expected, rtol=1e-5, atol=1e-4)


LUNG_RIGHT = Terminology(Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", "39607008", "Lung"),
                         Code("SCT", "24028007", "Right"))


def test_terminology_entry_has_seven_parts_with_empty_codes():
    entry = terminology_entry(LUNG_RIGHT)
    assert entry == ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical "
                     "Structure~SCT^39607008^Lung~SCT^24028007^Right~Anatomic codes - DICOM master list~^^~^^")
    parsed = parse_terminology_entry(entry)
    assert parsed.type.value == "39607008" and parsed.modifier.meaning == "Right"
    other_context = entry.replace("3D Slicer General Anatomy list", "DICOM master list")
    assert same_concept(entry, other_context)
    assert not same_concept(entry, entry.replace("24028007^Right", "7771000^Left"))
    with pytest.raises(ValueError, match="7 '~'-separated parts"):
        parse_terminology_entry("a~b")


def _segments():
    return [SegmentInfo(1, "Right lung", "Right lung", (197 / 255, 165 / 255, 145 / 255), terminology_entry(LUNG_RIGHT)),
            SegmentInfo(2, "Liver", "Liver", (221 / 255, 130 / 255, 101 / 255), terminology_entry(Terminology(
                Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", "10200004", "Liver"))))]


def test_seg_nrrd_reads_back_with_slicerio(tmp_path):
    labels = np.zeros((12, 14, 16), np.uint8)  # (k, j, i)
    labels[2:5, 3:9, 4:12] = 1
    labels[8:11, 1:4, 1:3] = 2
    m = np.array([[-0.8, 0, 0, 100], [0, -0.9, 0, 50], [0, 0, 2.5, -30], [0, 0, 0, 1.0]])
    write_seg_nrrd(tmp_path / "s.seg.nrrd", labels, m, _segments())
    seg = slicerio.read_segmentation(str(tmp_path / "s.seg.nrrd"))
    np.testing.assert_array_equal(seg["voxels"], labels.transpose(2, 1, 0))
    np.testing.assert_allclose(seg["ijkToLPS"], np.diag([-1, -1, 1, 1]) @ m)
    by_name = {s["name"]: s for s in seg["segments"]}
    assert by_name["Right lung"]["labelValue"] == 1 and by_name["Liver"]["labelValue"] == 2
    np.testing.assert_allclose(by_name["Liver"]["color"], [221 / 255, 130 / 255, 101 / 255], atol=1e-5)
    term = by_name["Right lung"]["terminology"]
    assert term["type"] == ["SCT", "39607008", "Lung"] and term["typeModifier"] == ["SCT", "24028007", "Right"]
    assert term["contextName"] == "Segmentation category and type - 3D Slicer General Anatomy list"


def test_seg_nrrd_header_has_slicer_keys():
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 1:4, 2:5] = 1
    header = seg_nrrd_header(labels, np.eye(4), _segments()[:1])
    keys = dict(line.split(":=", 1) for line in header.splitlines() if ":=" in line)
    assert keys["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert keys["Segmentation_ContainedRepresentationNames"] == "Binary labelmap|"
    assert keys["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    assert keys["Segment0_Extent"] == "2 4 1 3 1 2"
    assert keys["Segment0_Tags"].endswith("|") and "TerminologyEntry:Segmentation category" in keys["Segment0_Tags"]
    assert "Reference image geometry|-1;0;0;0;0;-1;0;0;0;0;1;0;0;0;0;1;0;5;0;4;0;3;|" not in keys[
        "Segmentation_ConversionParameters"]  # RAS, not LPS
    assert "Reference image geometry|1;0;0;0;0;1;0;0;0;0;1;0;0;0;0;1;0;5;0;4;0;3;|" in keys[
        "Segmentation_ConversionParameters"]
    assert list(keys) == sorted(keys)
    assert "space: left-posterior-superior" in header and "space directions: (-1,0,0) (0,-1,0) (0,0,1)" in header


def test_uint16_label_maps_are_little_endian_and_int64_is_refused(tmp_path):
    labels = np.zeros((3, 3, 3), np.uint16)
    labels[1, 1, 1] = 300
    seg = [SegmentInfo(300, "x", "x", (1, 0, 0), terminology_entry(LUNG_RIGHT))]
    write_seg_nrrd(tmp_path / "u16.seg.nrrd", labels, np.eye(4), seg)
    assert slicerio.read_segmentation(str(tmp_path / "u16.seg.nrrd"))["voxels"][1, 1, 1] == 300
    with pytest.raises(ValueError, match="int64"):
        write_seg_nrrd(tmp_path / "bad.seg.nrrd", labels.astype(np.int64), np.eye(4), seg)
    assert not (tmp_path / "bad.seg.nrrd").exists()


@pytest.mark.parametrize("face_only", [False, True])
def test_components_are_numbered_as_scipy_numbers_them(face_only):
    rng = np.random.default_rng(7)
    for _ in range(10):
        mask = rng.random(tuple(rng.integers(3, 20, 3))) < 0.4
        expected, n = ndimage.label(mask, ndimage.generate_binary_structure(3, 1 if face_only else 3))
        labelled, count = label_components(mask, face_only=face_only)
        assert count == n
        np.testing.assert_array_equal(labelled, expected)


def test_of_equally_large_components_the_first_in_raster_order_is_kept():
    mask = np.zeros((1, 1, 9), bool)
    mask[0, 0, [0, 1, 4, 5, 7, 8]] = True  # three components of two voxels
    np.testing.assert_array_equal(keep_largest_components(mask, 2)[0, 0], [1, 1, 0, 0, 1, 1, 0, 0, 0])


def scipy_keep_components(mask, largest, min_voxels):
    """Reference: scipy's labelling, components ranked by size (ties: raster order)."""
    labelled, n = ndimage.label(mask, ndimage.generate_binary_structure(3, 3))
    sizes = np.bincount(labelled.ravel(), minlength=n + 1)[1:]
    order = np.argsort(-sizes, kind="stable")[: largest if largest is not None else n]
    kept = [i + 1 for i in order if sizes[i] >= max(min_voxels, 1)]
    return np.isin(labelled, kept)


@pytest.mark.parametrize("largest, min_voxels", [(1, 0), (2, 0), (3, 4), (None, 3), (None, 1), (5, 0)])
def test_kept_components_equal_scipys_ranking(largest, min_voxels):
    rng = np.random.default_rng(3)
    for _ in range(8):
        mask = rng.random(tuple(rng.integers(4, 16, 3))) < 0.2  # many small components, many equal sizes
        kept = keep_components(mask, largest, min_voxels)
        assert kept.dtype == bool and kept.shape == mask.shape
        np.testing.assert_array_equal(kept, scipy_keep_components(mask, largest, min_voxels))
