"""Hidden module that registers the "MedSegAI" Segment Editor effect at start-up."""

import os

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest


class SegmentEditorMedSegAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SegmentEditorMedSegAI"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "MedSegAI"]
        self.parent.contributors = ["MedSegAI developers"]
        self.parent.hidden = True
        self.parent.helpText = "Registers the MedSegAI effect in the Segment Editor."
        self.parent.acknowledgementText = ""
        slicer.app.connect("startupCompleted()", self.registerEditorEffect)

    def registerEditorEffect(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        instance = effects.qSlicerSegmentEditorScriptedEffect(None)
        effectPath = os.path.join(os.path.dirname(__file__), "SegmentEditorMedSegAILib", "SegmentEditorEffect.py")
        instance.setPythonSource(effectPath.replace("\\", "/"))
        instance.self().register()


class SegmentEditorMedSegAITest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: the effect through a real qMRMLSegmentEditorWidget, Apply and Undo."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_apply_and_undo()

    def test_apply_and_undo(self):
        import tempfile

        import numpy as np

        import MedSegAI

        test = MedSegAI.MedSegAITest()
        volume, array = test._volume()
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        user = segmentation.GetSegmentation().AddEmptySegment("user", "Kept", [0, 0, 1])
        editor = slicer.qMRMLSegmentEditorWidget()
        editor.setMRMLScene(slicer.mrmlScene)
        editorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editor.setMRMLSegmentEditorNode(editorNode)
        editor.setSegmentationNode(segmentation)
        editor.setSourceVolumeNode(volume)
        editor.setActiveEffectByName("MedSegAI")
        effect = editor.activeEffect().self()
        with tempfile.TemporaryDirectory() as folder:
            effect.setModel(str(test._tinyBundle(folder)))
            effect.computePreview(blocking=True)
            effect.onApply()
        segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Liver")
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
        self.assertTrue(np.array_equal(mask > 0, array == 100))
        self.assertIsNotNone(segmentation.GetSegmentation().GetSegment(user))
        editor.undo()
        self.assertEqual(segmentation.GetSegmentation().GetSegmentIdBySegmentName("Liver"), "")
        self.delayDisplay("Effect apply and undo passed")
