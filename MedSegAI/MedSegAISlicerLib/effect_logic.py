"""The Segment Editor effect's work, free of Qt: source image -> input volume, and Apply of a
preview into the user's segmentation through the editor's modify/undo functions.

The effect passes its adapter's ``modifySegmentByLabelmap`` and ``saveStateForUndo``; tests pass
``vtkSlicerSegmentEditorLogic``'s, which the adapter delegates to in Slicer >= 5.10.
"""

from __future__ import annotations

from typing import Callable

import slicer

from .nodes import TERMINOLOGY_TAG, ResultSegment, add_result_segment, find_matching_segment, segment_tag

MODIFICATION_MODE_SET = 0  # qSlicerSegmentEditorAbstractEffect.ModificationModeSet


def volume_node_from_source_image(source_image, segmentation_node, name: str = "MedSegAI source"):
    """A temporary scalar volume holding the editor's source image on the segmentation's geometry
    (which may differ from the source volume's grid), under the segmentation's transform."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetHideFromEditors(True)
    if not slicer.vtkSlicerSegmentationsModuleLogic.CopyOrientedImageDataToVolumeNode(source_image, node):
        slicer.mrmlScene.RemoveNode(node)
        raise RuntimeError("could not copy the source image")
    node.SetAndObserveTransformNodeID(segmentation_node.GetTransformNodeID())
    return node


def preview_segments(preview_node) -> list[tuple[str, ResultSegment]]:
    segmentation = preview_node.GetSegmentation()
    out = []
    for n in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(n)
        s = segmentation.GetSegment(sid)
        out.append((sid, ResultSegment(s.GetLabelValue(), s.GetName(), tuple(s.GetColor()),
                                       segment_tag(s, TERMINOLOGY_TAG))))
    return out


def apply_preview(preview_node, segmentation_node, modify: Callable, save_state: Callable,
                  selected_segment_id: str = "") -> list[str]:
    """Write the preview into ``segmentation_node``; one undo step; returns the target segment IDs.

    A single-structure preview goes into the selected segment (when one is selected); otherwise
    each structure updates the segment of the same name or terminology, or a new one is added.
    ``modify(segmentationNode, segmentID, labelmap, mode)`` applies the editor's masking and
    overwrite settings.
    """
    segments = preview_segments(preview_node)
    save_state()
    targets = []
    for sid, result in segments:
        target_segmentation = segmentation_node.GetSegmentation()
        if len(segments) == 1 and selected_segment_id:
            target = selected_segment_id
        else:
            target = find_matching_segment(target_segmentation, result)
        if not target:
            target = add_result_segment(target_segmentation, result)
        labelmap = slicer.vtkOrientedImageData()
        preview_node.GetBinaryLabelmapRepresentation(sid, labelmap)
        modify(segmentation_node, target, labelmap, MODIFICATION_MODE_SET)
        targets.append(target)
    return targets


def editor_logic_functions(editor_logic) -> tuple[Callable, Callable]:
    """``modify`` and ``save_state`` backed by ``vtkSlicerSegmentEditorLogic`` (not per segment,
    masking applied)."""

    cls = type(editor_logic)
    modes = {0: cls.ModificationModeSet, 1: cls.ModificationModeAdd, 2: cls.ModificationModeRemove,
             3: cls.ModificationModeRemoveAll}

    def modify(segmentation_node, segment_id, labelmap, mode):
        editor_logic.ModifySegmentByLabelmap(segmentation_node, segment_id, labelmap, modes[mode], False, False)

    return modify, editor_logic.SaveStateForUndo


__all__ = ["apply_preview", "editor_logic_functions", "preview_segments", "volume_node_from_source_image"]
