"""Segment Editor effect "MedSegAI": run a model, preview, then Apply (one undo step) or Cancel.

The model runs in a child process like the module's; the preview is a separate segmentation node
shown over the user's one. Apply writes through the editor's own modify function, so masking and
overwrite settings apply; it never replaces the segmentation node.
"""

import os

import qt
import slicer
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

PREVIEW_NAME = "MedSegAI preview"


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    def __init__(self, scriptedEffect):
        scriptedEffect.name = "MedSegAI"
        scriptedEffect.perSegment = False
        scriptedEffect.requireSegments = False
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self._job = None
        self._source = None
        self.previewNode = None
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self._onTimer)

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        path = os.path.join(os.path.dirname(__file__), "SegmentEditorEffect.png")
        return qt.QIcon(path) if os.path.exists(path) else qt.QIcon()

    def helpText(self):
        return ("<html>Segment with a MedSegAI model.<p>Pick a model and click <b>Initialize</b>: it runs in the "
                "background and shows a preview. <b>Apply</b> writes it into the segmentation (Undo reverts it), "
                "<b>Cancel</b> discards it. Single-structure models fill the selected segment; multi-structure "
                "models update segments of the same name and add the others.</html>")

    def setupOptionsFrame(self):
        self.modelSelector = qt.QComboBox()
        self.scriptedEffect.addLabeledOptionsWidget("Model:", self.modelSelector)
        self.deviceSelector = qt.QComboBox()
        for label, value in [("Automatic", "auto"), ("GPU", "cuda"), ("CPU", "cpu")]:
            self.deviceSelector.addItem(label, value)
        self.scriptedEffect.addLabeledOptionsWidget("Device:", self.deviceSelector)
        self.progressBar = qt.QProgressBar()
        self.progressBar.setVisible(False)
        self.scriptedEffect.addOptionsWidget(self.progressBar)
        self.opacitySlider = slicer.qMRMLSliderWidget() if hasattr(slicer, "qMRMLSliderWidget") else qt.QSlider()
        self.opacitySlider.minimum, self.opacitySlider.maximum = 0, 1
        self.opacitySlider.singleStep = 0.05
        self.opacitySlider.value = 0.6
        self.scriptedEffect.addLabeledOptionsWidget("Preview opacity:", self.opacitySlider)
        self.show3DButton = qt.QPushButton("Show 3D")
        self.show3DButton.checkable = True
        buttons = qt.QHBoxLayout()
        self.initializeButton = qt.QPushButton("Initialize")
        self.cancelButton = qt.QPushButton("Cancel")
        self.applyButton = qt.QPushButton("Apply")
        for b in (self.initializeButton, self.show3DButton, self.cancelButton, self.applyButton):
            buttons.addWidget(b)
        self.scriptedEffect.addOptionsWidget(buttons)
        self.initializeButton.connect("clicked()", self.computePreview)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.applyButton.connect("clicked()", self.onApply)
        self.opacitySlider.connect("valueChanged(double)", self._updatePreviewDisplay)
        self.show3DButton.connect("toggled(bool)", self._updatePreviewDisplay)
        self._refreshModels()
        self._updateButtons()

    def _refreshModels(self):
        import MedSegAI

        self.modelSelector.clear()
        try:
            for entry in MedSegAI.MedSegAILogic().modelEntries():
                self.modelSelector.addItem(f"{entry.card.title} ({entry.card.version})", str(entry.path))
        except ImportError:
            self.modelSelector.addItem("Open the MedSegAI module to install dependencies", "")

    def setModel(self, bundlePath):
        """Select a model by bundle path (adds it to the list when it is not installed)."""
        index = self.modelSelector.findData(bundlePath)
        if index < 0:
            self.modelSelector.addItem(os.path.basename(bundlePath), bundlePath)
            index = self.modelSelector.count - 1
        self.modelSelector.setCurrentIndex(index)

    def deactivate(self):
        self.onCancel()

    def cleanup(self):
        self._timer.stop()
        if self._job is not None:
            self._job.cancel()

    # -- preview --------------------------------------------------------------------------------
    def computePreview(self, blocking=False):
        """Initialize: run the model on the editor's source image into a preview segmentation."""
        import MedSegAI
        from MedSegAISlicerLib.effect_logic import volume_node_from_source_image

        self.onCancel()
        parameterNode = self.scriptedEffect.parameterSetNode()
        segmentationNode = parameterNode.GetSegmentationNode()
        source = self.scriptedEffect.sourceVolumeImageData()
        if source is None or segmentationNode is None or not self.modelSelector.currentData:
            slicer.util.errorDisplay("Select a source volume and a model first.")
            return
        self._source = volume_node_from_source_image(source, segmentationNode)
        self.previewNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", PREVIEW_NAME)
        self.previewNode.SetHideFromEditors(True)
        self.previewNode.SetAndObserveTransformNodeID(segmentationNode.GetTransformNodeID())
        self._job = MedSegAI.MedSegAILogic().segment(
            [self._source], self.modelSelector.currentData, self.previewNode, blocking=blocking,
            eventCallback=self._onEvent, device=self.deviceSelector.currentData, createSurface=False,
            measurements=False)
        if blocking:
            self._finishPreview()
        else:
            self.progressBar.setVisible(True)
            self._timer.start()
        self._updateButtons()

    def _onEvent(self, event):
        if event.get("event") == "progress":
            self.progressBar.value = int(100 * event["fraction"])

    def _onTimer(self):
        if self._job is not None and not self._job.poll():
            self._timer.stop()
            self._finishPreview()

    def _finishPreview(self):
        job, self._job = self._job, None
        self.progressBar.setVisible(False)
        if self._source is not None:
            slicer.mrmlScene.RemoveNode(self._source)
            self._source = None
        if job.state.value != "completed":
            self._removePreview()
            if job.state.value == "failed":
                slicer.util.errorDisplay(f"{job.error.message}\n\n{job.error.hint}", windowTitle="MedSegAI")
        self._updatePreviewDisplay()
        self._updateButtons()

    def _updatePreviewDisplay(self, *_args):
        if self.previewNode is None:
            return
        if self.previewNode.GetDisplayNode() is None:
            self.previewNode.CreateDefaultDisplayNodes()
        display = self.previewNode.GetDisplayNode()
        display.SetOpacity(self.opacitySlider.value)
        display.SetVisibility3D(self.show3DButton.checked)
        if self.show3DButton.checked:
            self.previewNode.CreateClosedSurfaceRepresentation()

    # -- apply / cancel -------------------------------------------------------------------------
    def onApply(self):
        from MedSegAISlicerLib.effect_logic import apply_preview

        if self.previewNode is None:
            return
        parameterNode = self.scriptedEffect.parameterSetNode()
        segmentationNode = parameterNode.GetSegmentationNode()
        effect = self.scriptedEffect

        def modify(node, segmentId, labelmap, mode):
            effect.modifySegmentByLabelmap(node, segmentId, labelmap, mode)

        with slicer.util.tryWithErrorDisplay("Apply failed.", waitCursor=True):
            apply_preview(self.previewNode, segmentationNode, modify, effect.saveStateForUndo,
                          parameterNode.GetSelectedSegmentID() or "")
        self._removePreview()
        self._updateButtons()

    def onCancel(self):
        self._timer.stop()
        if self._job is not None:
            self._job.cancel()
            self._job = None
        if self._source is not None:
            slicer.mrmlScene.RemoveNode(self._source)
            self._source = None
        self._removePreview()
        self._updateButtons()

    def _removePreview(self):
        if self.previewNode is not None:
            slicer.mrmlScene.RemoveNode(self.previewNode)
            self.previewNode = None

    def _updateButtons(self):
        running = self._job is not None
        hasPreview = self.previewNode is not None and not running
        self.initializeButton.enabled = not running
        self.applyButton.enabled = hasPreview
        self.cancelButton.enabled = running or hasPreview
        self.show3DButton.enabled = hasPreview
