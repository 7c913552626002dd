"""MedSegAI's .seg.nrrd files read by slicerio and by Slicer's own reader, and compared with the
file Slicer's own writer makes of the same segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import slicerio
from slicerio.segmentation import terminology_entry_to_string

import slicer_helpers as sh
from MedSegAILib.bundle.card import Code, Label, Terminology
from MedSegAILib.geometry import ras_to_lps
from MedSegAILib.outputs import segment_infos
from MedSegAILib.segnrrd import write_seg_nrrd
from testing_conftest import volume_on

pytestmark = pytest.mark.slicer

GEOMETRIES = ["lps_aniso", "flipped_si", "permuted_sagittal", "oblique"]
ANATOMY = Code("SCT", "123037004", "Anatomical Structure")
# colours are the recommended ones of Slicer's General Anatomy list (checked below)
LABELS = [
    Label(1, "Liver", (221, 130, 101), Terminology(ANATOMY, Code("SCT", "10200004", "Liver"))),
    Label(3, "Right lung", (197, 165, 145),
          Terminology(ANATOMY, Code("SCT", "39607008", "Lung"), Code("SCT", "24028007", "Right"))),
    Label(7, "Spleen", (157, 108, 162), Terminology(ANATOMY, Code("SCT", "78961009", "Spleen"))),
]
INFOS = segment_infos(LABELS)


@pytest.fixture(params=GEOMETRIES)
def written(request, tmp_path):
    """A three-label map on one of the test geometries, written by MedSegAI."""
    volume = volume_on(request.param)
    labels = sh.organs(volume)
    path = tmp_path / "organs.seg.nrrd"
    write_seg_nrrd(path, labels, volume.ijk_to_ras, INFOS)
    return path, labels, volume.ijk_to_ras


def test_slicerio_reads_our_file(written):
    path, labels, ijk_to_ras = written
    seg = slicerio.read_segmentation(str(path))
    np.testing.assert_allclose(seg["ijkToLPS"], ras_to_lps(ijk_to_ras), atol=1e-12)
    assert seg["voxels"].shape == labels.shape[::-1]  # slicerio arrays are (i, j, k)
    assert [s["name"] for s in seg["segments"]] == ["Liver", "Right lung", "Spleen"]
    for s, info in zip(seg["segments"], INFOS):
        assert (s["id"], s["labelValue"], s["layer"], s["status"]) == (info.segment_id, info.label_value, 0, "completed")
        np.testing.assert_allclose(s["color"], info.color, atol=1e-5)
        assert terminology_entry_to_string(s["terminology"]) == info.terminology_entry
        np.testing.assert_array_equal(seg["voxels"].transpose(2, 1, 0) == s["labelValue"], labels == info.label_value)


def test_slicer_reads_our_file(written, slicer_scene):
    path, labels, ijk_to_ras = written
    seg_node = sh.read_seg_nrrd(slicer_scene, path)
    # the reference geometry Slicer takes from the file is exactly our grid
    ref_ijk_to_ras, ref_shape = sh.reference_grid(seg_node)
    np.testing.assert_allclose(ref_ijk_to_ras, ijk_to_ras, atol=1e-12)
    assert ref_shape == labels.shape
    read = sh.segments(seg_node)
    assert [s.name for s in read] == ["Liver", "Right lung", "Spleen"]
    masks = sh.masks_on_grid(slicer_scene, seg_node, ijk_to_ras, labels.shape)
    for s, info in zip(read, INFOS):
        assert (s.id, s.label_value, s.layer, s.status) == (info.segment_id, info.label_value, 0, "completed")
        assert s.terminology == info.terminology_entry
        np.testing.assert_allclose(s.color, info.color, atol=1e-5)  # written with 6 significant digits
        np.testing.assert_array_equal(masks[s.id], labels == info.label_value)


# header keys whose values must be what Slicer's writer writes (IDs are random in Slicer)
SAME_SEGMENT_VALUES = ("Name", "LabelValue", "Layer", "Color", "Tags", "Extent")
SAME_VALUES = ("type", "dimension", "space", "sizes", "kinds", "encoding",
               "Segmentation_MasterRepresentation", "Segmentation_ContainedRepresentationNames",
               "Segmentation_ReferenceImageExtentOffset")


def test_header_matches_slicer_writer(written, slicer_scene, tmp_path):
    path, labels, ijk_to_ras = written
    slicer_path = tmp_path / "by_slicer.seg.nrrd"
    sh.write_seg_nrrd(sh.import_label_map(slicer_scene, labels, ijk_to_ras, INFOS), slicer_path)
    ours, theirs = sh.nrrd_header(path), sh.nrrd_header(slicer_path)

    assert sorted(ours) == sorted(theirs)
    keys = [*SAME_VALUES, *(f"Segment{n}_{k}" for n in range(len(INFOS)) for k in SAME_SEGMENT_VALUES)]
    assert {k: ours[k] for k in keys} == {k: theirs[k] for k in keys}
    for key in ("space directions", "space origin"):
        np.testing.assert_allclose(_numbers(ours[key]), _numbers(theirs[key]), atol=1e-9)

    our_params, their_params = (sh.conversion_parameters(h["Segmentation_ConversionParameters"]) for h in (ours, theirs))
    assert list(our_params) == list(their_params)
    (our_m, our_extent), (their_m, their_extent) = (sh.parse_reference_geometry(p.pop(sh.REFERENCE_GEOMETRY))
                                                    for p in (our_params, their_params))
    assert our_extent == their_extent
    np.testing.assert_allclose(our_m, their_m, rtol=0, atol=1e-12)
    assert our_params == their_params


def _numbers(text: str) -> list[float]:
    return [float(x) for x in text.replace("(", " ").replace(")", " ").replace(",", " ").split()]


@pytest.mark.parametrize("label", LABELS, ids=[x.name for x in LABELS])
def test_our_terminology_entries_are_found_in_slicers_lists(terminologies, label):
    info = next(i for i in INFOS if i.label_value == label.value)
    rgb, slicer_label, entry = sh.recommended_terminology(terminologies, info.terminology_entry)
    assert rgb == label.color
    assert slicer_label == label.name.lower()
    assert entry == info.terminology_entry  # Slicer keeps the entry as we wrote it


def test_liver_gets_slicers_standard_liver_colour(terminologies):
    rgb, _, _ = sh.recommended_terminology(terminologies, INFOS[0].terminology_entry)
    assert rgb == (221, 130, 101)


def test_slicerio_and_slicer_agree_on_slicerio_sample(slicer_scene):
    """Fixture check of the two readers used above, on a file that Slicer itself wrote."""
    path = slicerio.get_testdata_file("Segmentation.seg.nrrd")
    sio = slicerio.read_segmentation(path)
    ijk_to_ras = ras_to_lps(sio["ijkToLPS"])
    shape_kji = sio["voxels"].shape[::-1]
    seg_node = sh.read_seg_nrrd(slicer_scene, path)
    ref_ijk_to_ras, ref_shape = sh.reference_grid(seg_node)
    np.testing.assert_allclose(ref_ijk_to_ras, ijk_to_ras, atol=1e-4)
    assert ref_shape == shape_kji
    read = sh.segments(seg_node)
    masks = sh.masks_on_grid(slicer_scene, seg_node, ijk_to_ras, shape_kji)
    assert [s.id for s in read] == [s["id"] for s in sio["segments"]]
    assert len(read) == 7
    for s, expected in zip(read, sio["segments"]):
        assert (s.name, s.label_value, s.layer) == (expected["name"], expected["labelValue"], expected["layer"])
        np.testing.assert_allclose(s.color, expected["color"], atol=1e-6)
        assert s.terminology == terminology_entry_to_string(expected["terminology"])
        mask = sio["voxels"].transpose(2, 1, 0) == expected["labelValue"]
        assert mask.any()
        np.testing.assert_array_equal(masks[s.id], mask)
