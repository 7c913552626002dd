"""The module's run (real child process) and the effect's Apply/Undo, on Slicer's real libraries."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from slicer_helpers import slicer, segment_tag

from MedSegAISlicerLib.display import export_surfaces, show_surgeon_3d
from MedSegAISlicerLib.effect_logic import apply_preview, editor_logic_functions, volume_node_from_source_image
from MedSegAISlicerLib.logic import JobState, RunOptions, SegmentationJob

pytestmark = pytest.mark.slicer


def _testing():
    return sys.modules["testing_support"]


@pytest.fixture
def ct_node(slicer_scene):
    t = _testing()
    vol = t.volume_on("lps_aniso")
    structure = t.asymmetric_structure(vol)
    vol.array[:] = np.where(structure, 100, -1000)
    return slicer.util.addVolumeFromArray(vol.array, vol.ijk_to_ras, "CT"), structure


def _nodes(cls):
    return slicer.util.getNodesByClass(cls)


def test_job_runs_the_child_and_imports_result_and_table(ct_node, bundle_factory):
    node, structure = ct_node
    events = []
    job = SegmentationJob([node], str(bundle_factory().path), on_event=events.append, python=sys.executable)
    assert job.run() is JobState.COMPLETED
    seg = job.segmentation_node
    assert seg.GetName() == "CT segmentation"
    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("Liver")
    np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(seg, sid, node) > 0, structure)
    assert "SCT^10200004^Liver" in segment_tag(seg.GetSegmentation().GetSegment(sid), "TerminologyEntry")
    table = job.table_node
    columns = [table.GetTable().GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())]
    assert {"name", "volume_ml", "surface_area_mm2", "max_diameter_mm", "intensity_mean"} <= set(columns)
    assert table.GetCellText(0, columns.index("voxel_count")) == str(int(structure.sum()))
    assert any(e["event"] == "progress" for e in events)
    assert not job._workdir.exists()  # temporary input and output files are gone


def test_cancel_leaves_no_node_and_no_file(ct_node, bundle_factory):
    node, _ = ct_node
    before = (len(_nodes("vtkMRMLSegmentationNode")), len(_nodes("vtkMRMLTableNode")))
    job = SegmentationJob([node], str(bundle_factory().path), python=sys.executable)
    job.start()
    workdir = job._workdir
    assert workdir.exists()
    job.cancel()
    assert job.state is JobState.CANCELLED
    assert (len(_nodes("vtkMRMLSegmentationNode")), len(_nodes("vtkMRMLTableNode"))) == before
    assert not workdir.exists()


def test_failure_in_the_child_is_reported_and_changes_nothing(ct_node, tmp_path):
    node, _ = ct_node
    job = SegmentationJob([node], str(tmp_path / "no-such-bundle"), python=sys.executable)
    with pytest.raises(Exception) as info:
        job.run()
    assert "model bundle not found" in str(info.value) or "unknown model" in str(info.value)
    assert job.state is JobState.FAILED and job.segmentation_node is None


def test_effect_apply_merges_with_undo(ct_node, bundle_factory):
    node, structure = ct_node
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(node)
    user = seg.GetSegmentation().AddEmptySegment("user", "Kept", [0, 0, 1])
    kept = np.zeros(slicer.util.arrayFromVolume(node).shape, np.uint8)
    kept[1:3, 1:3, 1:3] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(kept, seg, user, node)

    editor_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
    editor = slicer.vtkSlicerSegmentEditorLogic()
    editor.SetMRMLScene(slicer.mrmlScene)
    editor.SetSegmentationHistory(slicer.vtkSegmentationHistory())
    editor.SetSegmentEditorNode(editor_node)
    editor.SetSegmentationNode(seg)
    editor.SetSourceVolumeNode(node)
    editor.UpdateAlignedSourceVolume()

    # the effect runs the model on the editor's source image, on the segmentation's geometry
    source = volume_node_from_source_image(editor.GetAlignedSourceVolume(), seg)
    preview = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "preview")
    job = SegmentationJob([source], str(bundle_factory().path), preview,
                          RunOptions(create_surface=False, measurements=False), python=sys.executable)
    assert job.run() is JobState.COMPLETED
    modify, save_state = editor_logic_functions(editor)
    targets = apply_preview(preview, seg, modify, save_state)

    liver = seg.GetSegmentation().GetSegmentIdBySegmentName("Liver")
    assert targets == [liver]
    np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(seg, liver, node) > 0, structure)
    np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(seg, user, node) > 0, kept > 0)
    assert editor.CanUndo()
    editor.Undo()
    assert seg.GetSegmentation().GetSegmentIdBySegmentName("Liver") == ""
    np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(seg, user, node) > 0, kept > 0)


def test_single_structure_preview_fills_the_selected_segment(ct_node, bundle_factory):
    node, structure = ct_node
    seg = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    seg.SetReferenceImageGeometryParameterFromVolumeNode(node)
    selected = seg.GetSegmentation().AddEmptySegment("mine", "My organ", [1, 1, 0])
    preview = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "preview")
    SegmentationJob([node], str(bundle_factory().path), preview, RunOptions(create_surface=False, measurements=False),
                    python=sys.executable).run()
    calls = []

    def modify(seg_node, segment_id, labelmap, mode):
        calls.append(segment_id)
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(labelmap, seg_node, segment_id)

    apply_preview(preview, seg, modify, lambda: calls.append("undo-state"), selected_segment_id=selected)
    assert calls == ["undo-state", selected]
    assert seg.GetSegmentation().GetNumberOfSegments() == 1
    np.testing.assert_array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(seg, selected, node) > 0, structure)


def test_surgeon_view_and_surface_export(ct_node, bundle_factory, tmp_path):
    node, _ = ct_node
    job = SegmentationJob([node], str(bundle_factory().path), options=RunOptions(measurements=False),
                          python=sys.executable)
    job.run()
    seg = job.segmentation_node
    show_surgeon_3d(seg)
    display = seg.GetDisplayNode()
    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("Liver")
    assert display.GetSegmentOpacity3D(sid) == pytest.approx(0.45)
    assert seg.GetSegmentation().GetConversionParameter("Smoothing factor") == "0.7"
    files = export_surfaces(seg, tmp_path / "stl")
    assert [f.suffix for f in files] == [".stl"] and files[0].stat().st_size > 1000


def test_test_time_augmentation_reaches_the_child(ct_node, bundle_factory):
    """The module's TTA option runs the card's mirrored pass too: the child counts twice the windows."""
    node, _ = ct_node
    inference = {"patch_size": [16, 16, 16], "overlap": 0.25, "tta_flips": [[0]]}
    path = str(bundle_factory(inference=inference).path)
    totals = {}
    for tta in (False, True):
        events = []
        job = SegmentationJob([node], path, options=RunOptions(tta=tta, create_surface=False, measurements=False),
                              on_event=events.append, python=sys.executable)
        assert job.run() is JobState.COMPLETED
        windows = [e["message"] for e in events if e.get("message", "").startswith("window ")]
        totals[tta] = int(windows[-1].split("/")[1])
    assert totals[True] == 2 * totals[False] > 0
