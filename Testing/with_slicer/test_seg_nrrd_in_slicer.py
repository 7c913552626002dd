"""MedSegAI's .seg.nrrd files read by slicerio and by Slicer's own reader, and compared with the
file Slicer's own writer makes of the same segmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicerio
from slicerio.segmentation import terminology_entry_to_string

import slicer_helpers as sh
from MedSegAILib.bundle.card import Code, Label, Terminology
from MedSegAILib.geometry import ras_to_lps
from MedSegAILib.outputs import segment_infos, write_outputs
from MedSegAILib.pipeline import segment
from MedSegAILib.segnrrd import write_seg_nrrd
from MedSegAILib.terminology import terminology_entry
from testing_support import asymmetric_structure, volume_on

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
# the tag Slicer itself writes for a Liver segment picked in its terminology selector
SLICER_LIVER_TAG = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~"
                    "SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")


@pytest.fixture(params=GEOMETRIES)
def written(request, tmp_path):
    """A three-label map on one of the test geometries, written by MedSegAI."""
    volume = volume_on(request.param)
    labels = sh.organs(volume)
    path = tmp_path / "organs.seg.nrrd"
    write_seg_nrrd(path, labels, volume.ijk_to_ras, INFOS)
    return path, labels, volume.ijk_to_ras


def assert_segment(read: dict, label: Label, labels: np.ndarray, mask: np.ndarray) -> None:
    """One segment as read back: ``read`` has id, name, label_value, layer, status, color, terminology."""
    expected = {"id": label.name, "name": label.name, "label_value": label.value, "layer": 0,
                "status": "completed", "terminology": terminology_entry(label.terminology)}
    assert {k: read[k] for k in expected} == expected
    np.testing.assert_allclose(read["color"], np.array(label.color) / 255, atol=1e-5)  # 6 significant digits
    np.testing.assert_array_equal(mask, labels == label.value)


def test_slicerio_reads_our_file(written):
    path, labels, ijk_to_ras = written
    seg = slicerio.read_segmentation(str(path))
    np.testing.assert_allclose(seg["ijkToLPS"], ras_to_lps(ijk_to_ras), rtol=0, atol=1e-12)
    voxels_kji = seg["voxels"].transpose(2, 1, 0)  # slicerio arrays are (i, j, k)
    assert voxels_kji.shape == labels.shape
    assert len(seg["segments"]) == len(LABELS)
    for s, label in zip(seg["segments"], LABELS):
        read = dict(id=s["id"], name=s["name"], label_value=s["labelValue"], layer=s["layer"], status=s["status"],
                    color=s["color"], terminology=terminology_entry_to_string(s["terminology"]))
        assert_segment(read, label, labels, voxels_kji == s["labelValue"])


def test_slicer_reads_our_file(written, slicer_scene):
    path, labels, ijk_to_ras = written
    seg_node = sh.read_seg_nrrd(slicer_scene, path)
    # the reference geometry Slicer takes from the file is exactly our grid
    ref_ijk_to_ras, ref_shape = sh.reference_grid(seg_node)
    np.testing.assert_allclose(ref_ijk_to_ras, ijk_to_ras, rtol=0, atol=1e-12)
    assert ref_shape == labels.shape
    read = sh.segments(seg_node)
    masks = sh.masks_on_grid(slicer_scene, seg_node, ijk_to_ras, labels.shape)
    assert len(read) == len(LABELS)
    for s, label in zip(read, LABELS):
        assert_segment(vars(s), label, labels, masks[s.id])


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
        np.testing.assert_allclose(_numbers(ours[key]), _numbers(theirs[key]), rtol=0, atol=1e-9)

    our_params, their_params = (sh.conversion_parameters(h["Segmentation_ConversionParameters"]) for h in (ours, theirs))
    assert list(our_params) == list(their_params)  # same names in the same order
    (our_m, our_extent), (their_m, their_extent) = (sh.parse_reference_geometry(p.pop(sh.REFERENCE_GEOMETRY))
                                                    for p in (our_params, their_params))
    assert our_extent == their_extent
    np.testing.assert_allclose(our_m, their_m, rtol=0, atol=1e-12)
    assert our_params == their_params


def _numbers(text: str) -> list[float]:
    return [float(x) for x in text.replace("(", " ").replace(")", " ").replace(",", " ").split()]


@pytest.mark.parametrize("label", LABELS, ids=[x.name for x in LABELS])
def test_our_terminology_entries_are_found_in_slicers_lists(terminologies, label):
    entry = terminology_entry(label.terminology)
    rgb, slicer_label, updated = sh.recommended_terminology(terminologies, entry)
    assert rgb == label.color
    assert slicer_label == label.name.lower()
    assert updated == entry  # Slicer keeps the entry as we wrote it


def test_liver_entry_and_colour_are_slicers(terminologies):
    liver = terminology_entry(LABELS[0].terminology)
    assert liver == SLICER_LIVER_TAG
    rgb, _, _ = sh.recommended_terminology(terminologies, liver)
    assert rgb == (221, 130, 101)


def test_segmentation_result_opens_in_slicer(bundle_factory, slicer_scene, tmp_path):
    """End to end: model -> write_outputs -> Slicer's reader (the shared test bundle labels Liver)."""
    volume = volume_on("oblique")
    structure = asymmetric_structure(volume)
    volume.array[:] = np.where(structure, 100, -1000)  # inside the model's Liver window [50, 150]
    result = segment([volume], bundle_factory())
    write_outputs(result, volume, tmp_path, "case")
    seg_node = sh.read_seg_nrrd(slicer_scene, tmp_path / "case.seg.nrrd")
    (read,) = sh.segments(seg_node)
    assert (read.name, read.label_value, read.terminology) == ("Liver", 1, SLICER_LIVER_TAG)
    np.testing.assert_allclose(read.color, np.array([221, 130, 101]) / 255, atol=1e-5)
    mask = sh.masks_on_grid(slicer_scene, seg_node, volume.ijk_to_ras, structure.shape)[read.id]
    np.testing.assert_array_equal(mask, structure)
    (row,) = json.loads((tmp_path / "case_measurements.json").read_text())["segments"]
    assert row["voxel_count"] == sh.labelmap_statistics(seg_node, read.id).voxel_count


def test_slicerio_and_slicer_agree_on_slicerio_sample(slicer_scene):
    """Fixture check of the two readers used above, on a file that Slicer itself wrote."""
    path = slicerio.get_testdata_file("Segmentation.seg.nrrd")
    sio = slicerio.read_segmentation(path)
    ijk_to_ras = ras_to_lps(sio["ijkToLPS"])
    voxels_kji = sio["voxels"].transpose(2, 1, 0)
    seg_node = sh.read_seg_nrrd(slicer_scene, path)
    ref_ijk_to_ras, ref_shape = sh.reference_grid(seg_node)
    np.testing.assert_allclose(ref_ijk_to_ras, ijk_to_ras, rtol=0, atol=1e-9)  # written uncropped: file grid
    assert ref_shape == voxels_kji.shape
    read = sh.segments(seg_node)
    masks = sh.masks_on_grid(slicer_scene, seg_node, ijk_to_ras, voxels_kji.shape)
    assert [s.id for s in read] == [s["id"] for s in sio["segments"]]
    assert len(read) == 7
    for s, expected in zip(read, sio["segments"]):
        assert (s.name, s.label_value, s.layer) == (expected["name"], expected["labelValue"], expected["layer"])
        np.testing.assert_allclose(s.color, expected["color"], atol=1e-6)
        assert s.terminology == terminology_entry_to_string(expected["terminology"])
        mask = voxels_kji == expected["labelValue"]
        assert mask.any()
        np.testing.assert_array_equal(masks[s.id], mask)
