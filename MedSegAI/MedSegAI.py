"""3D Slicer module "MedSegAI": deep-learning segmentation of CT and MRI.

The widget only shows state and forwards clicks. The work lives in ``MedSegAISlicerLib`` (MRML
import/export, the child process, display) and in the core ``MedSegAILib``; both are tested
outside Slicer. Inference always runs in a child process, so a crash or out-of-memory error in
torch never takes Slicer down, and Cancel stops it at once.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

try:
    from typing import Annotated
except ImportError:  # Python 3.8 and older Slicer
    from typing_extensions import Annotated

try:
    from slicer.i18n import tr as _
except ImportError:  # Slicer < 5.4
    def _(text):
        return text

MAX_INPUTS = 3


class MedSegAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedSegAI")
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["MedSegAI developers"]
        self.parent.helpText = _(
            "Segment CT and MRI volumes with deep-learning models (U-Net family, DeepLabv3+). Pick the input "
            "volume(s) and a model, then Segment. Runs on the GPU when there is one, otherwise on the CPU, in a "
            "background process that Cancel stops. Results keep your existing segments.")
        self.parent.acknowledgementText = _(
            "Built on 3D Slicer, PyTorch, MONAI, SimpleITK and VTK. Model licences are shown with each model.")
        slicer.app.connect("startupCompleted()", loadTerminology)
        slicer.app.connect("startupCompleted()", registerSampleData)


def loadTerminology():
    """Make the codes of the installed models that are not in Slicer's lists (the MedSegAI context)
    known to Slicer's terminology selector."""
    try:
        from MedSegAILib.terminology import terminology_json
    except ImportError:  # dependencies not installed yet: nothing to add
        return
    from MedSegAILib.fileio import write_text_atomic

    logic = MedSegAILogic()
    cards = [entry.card for entry in logic.modelEntries()]
    document = terminology_json(cards)
    if document["SegmentationCodes"]["Category"]:
        path = logic.userModelsFolder().parent / "SegmentationCategoryTypeModifier-MedSegAI.term.json"
        write_text_atomic(path, json.dumps(document, indent=2))
        slicer.modules.terminologies.logic().LoadTerminologyFromFile(str(path))


def registerSampleData():
    """One Sample Data entry per shipped model's sample volume (files from installed packages,
    checked by SHA-256 by the Sample Data module too: works offline)."""
    try:
        import SampleData

        from MedSegAILib.sample_data import sample_files
    except ImportError:
        return
    icon = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "MedSegAI.png")
    for entry in MedSegAILogic().modelEntries():
        for sample in sample_files(entry.card):
            SampleData.SampleDataLogic.registerCustomSampleDataSource(
                category="MedSegAI", sampleName=sample.name, uris=sample.path.as_uri(),
                fileNames=sample.path.name, checksums=f"SHA256:{sample.sha256}", nodeNames=sample.path.stem,
                thumbnailFileName=icon)


@parameterNodeWrapper
class MedSegAIParameterNode:
    inputVolume0: vtkMRMLScalarVolumeNode
    inputVolume1: vtkMRMLScalarVolumeNode
    inputVolume2: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    roi: vtkMRMLMarkupsROINode
    fast: bool = False
    tta: bool = False
    createSurface: bool = True
    smoothing: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    model: str = ""
    device: str = "auto"


class MedSegAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._guiTag = None
        self._job = None
        self._entries = []
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self.onTimer)

    # -- set-up -------------------------------------------------------------------------------
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedSegAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedSegAILogic()

        for label, value in [(_("Automatic (GPU if available)"), "auto"), (_("GPU"), "cuda"), (_("CPU"), "cpu")]:
            self.ui.deviceSelector.addItem(label, value)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.deviceSelector.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.openModelsFolderButton.connect("clicked(bool)", self.onOpenModelsFolder)
        self.ui.surgeon3DButton.connect("clicked(bool)", self.onSurgeon3D)
        self.ui.exportTableButton.connect("clicked(bool)", self.onExportTable)
        self.ui.exportSurfacesButton.connect("clicked(bool)", self.onExportSurfaces)
        for n in range(MAX_INPUTS):
            getattr(self.ui, f"inputVolumeSelector{n}").connect("currentNodeChanged(vtkMRMLNode*)", self.updateApplyState)
        self.initializeParameterNode()
        self.refreshModels()
        self.ui.deviceInfoLabel.text = self.logic.deviceDescription()

    def cleanup(self):
        self._timer.stop()
        if self._job is not None:
            self._job.cancel()
        self.removeObservers()
        if self._parameterNode and self._guiTag:
            self._parameterNode.disconnectGui(self._guiTag)

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode and self._guiTag:
            self._parameterNode.disconnectGui(self._guiTag)
            self._guiTag = None

    def onSceneStartClose(self, caller, event):
        self.exit()
        self._parameterNode = None

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self._parameterNode = MedSegAIParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume0:
            self._parameterNode.inputVolume0 = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if self._guiTag is None:
            self._guiTag = self._parameterNode.connectGui(self.ui)
        self.updateApplyState()

    # -- models -------------------------------------------------------------------------------
    def refreshModels(self):
        self.ui.modelSelector.blockSignals(True)
        self.ui.modelSelector.clear()
        try:
            self._entries = self.logic.modelEntries()
        except ImportError as exc:  # dependencies not installed yet
            self._entries = []
            self.ui.modelInfoLabel.text = _("MedSegAI needs to install Python packages first ({error}). "
                                            "Click Segment to install them.").format(error=exc)
        for entry in self._entries:
            self.ui.modelSelector.addItem(f"{entry.card.title} ({entry.card.version})", str(entry.path))
        selected = self._parameterNode.model if self._parameterNode else ""
        index = max(0, self.ui.modelSelector.findData(selected)) if selected else 0
        self.ui.modelSelector.blockSignals(False)
        self.ui.modelSelector.setCurrentIndex(index)
        self.onModelChanged()

    def currentEntry(self):
        index = self.ui.modelSelector.currentIndex
        return self._entries[index] if 0 <= index < len(self._entries) else None

    def onModelChanged(self, *_args):
        entry = self.currentEntry()
        if entry is None:
            self.updateApplyState()
            return
        card = entry.card
        if self._parameterNode:
            self._parameterNode.model = str(entry.path)
        self.ui.modelInfoLabel.text = self.logic.cardDescription(card)
        for n in range(MAX_INPUTS):
            selector = getattr(self.ui, f"inputVolumeSelector{n}")
            visible = n < len(card.inputs)
            selector.setVisible(visible)
            label = getattr(self.ui, f"inputLabel{n}")
            label.setVisible(visible)
            if visible:
                label.text = f"{card.inputs[n].name}:"
        self.logic.assignInputsByName(card, self._parameterNode)
        self.ui.labelsSelector.clear()
        for label in card.labels:
            self.ui.labelsSelector.addItem(label.name)
        self.ui.fastCheckBox.setEnabled("fast" in card.variants)
        self.ui.ttaCheckBox.setEnabled(bool(card.inference.tta_flips))
        self.updateApplyState()

    def onDeviceChanged(self, *_args):
        if self._parameterNode:
            self._parameterNode.device = self.ui.deviceSelector.currentData

    def inputVolumes(self):
        entry = self.currentEntry()
        count = len(entry.card.inputs) if entry else 1
        return [getattr(self._parameterNode, f"inputVolume{n}") for n in range(count)]

    def updateApplyState(self, *_args):
        if self._job is not None:
            return
        entry = self.currentEntry()
        volumes = self.inputVolumes() if self._parameterNode else []
        ready = entry is not None and volumes and all(volumes)
        self.ui.applyButton.enabled = bool(ready) or not self._entries
        self.ui.applyButton.text = _("Segment") if self._entries else _("Install dependencies")
        self.ui.applicabilityLabel.text = "\n".join(self.logic.applicabilityWarnings(entry.card, volumes)) if ready else ""

    # -- running ------------------------------------------------------------------------------
    def onApplyButton(self):
        if self._job is not None:  # the button reads Cancel while a job runs
            self._job.cancel()
            return
        if not self._entries:
            with slicer.util.tryWithErrorDisplay(_("Failed to install dependencies."), waitCursor=True):
                if self.logic.ensureDependencies():
                    self.refreshModels()
            return
        checked = [index.data() for index in self.ui.labelsSelector.checkedIndexes()]
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            self._job = self.logic.segment(
                self.inputVolumes(), p.model, p.outputSegmentation, blocking=False, eventCallback=self.onEvent,
                device=p.device, roi=p.roi, labels=checked, fast=p.fast, tta=p.tta, smoothing=p.smoothing,
                createSurface=p.createSurface)
            self.ui.logText.clear()
            self.ui.progressBar.setVisible(True)
            self.ui.progressBar.value = 0
            self.ui.applyButton.text = _("Cancel")
            self.ui.statusLabel.text = _("Starting...")
            self._timer.start()

    def onEvent(self, event):
        kind = event.get("event")
        if kind == "progress":
            self.ui.progressBar.value = int(100 * event["fraction"])
            eta = event.get("eta_s")
            remaining = _(" - about {seconds} s left").format(seconds=int(eta)) if eta is not None else ""
            self.ui.statusLabel.text = f"{event['stage']}: {event.get('message', '')}{remaining}"
        elif kind in ("warning", "case_failed", "error"):
            self.ui.logText.appendPlainText(f"{kind}: {event.get('message', '')} {event.get('hint', '')}")
        elif kind == "start":
            self.ui.logText.appendPlainText(f"{event.get('model')} {event.get('version')} on {event.get('device')}")

    def onTimer(self):
        if self._job.poll():
            return
        self._timer.stop()
        job, self._job = self._job, None
        self.ui.progressBar.setVisible(False)
        self.updateApplyState()
        state = job.state.value
        if state == "completed":
            self._parameterNode.outputSegmentation = job.segmentation_node
            self.ui.statusLabel.text = _("Done.")
            if job.table_node is not None:
                slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(job.table_node.GetID())
                slicer.app.applicationLogic().PropagateTableSelection()
        elif state == "cancelled":
            self.ui.statusLabel.text = _("Cancelled; nothing was changed.")
        else:
            self.ui.statusLabel.text = _("Failed: {message}").format(message=job.error.message)
            self.ui.logText.appendPlainText(job.error.log[-20000:])
            slicer.util.errorDisplay(f"{job.error.message}\n\n{job.error.hint}", windowTitle="MedSegAI")

    # -- models folder and exports -------------------------------------------------------------
    def onImportModel(self):
        path = qt.QFileDialog.getOpenFileName(None, _("Import model bundle"), "", _("Model bundles (*.zip)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("The model could not be imported."), waitCursor=True):
                target = self.logic.importModel(path)
                self.refreshModels()
                slicer.util.infoDisplay(_("Installed in {path}").format(path=target))

    def onOpenModelsFolder(self):
        folder = self.logic.userModelsFolder()
        folder.mkdir(parents=True, exist_ok=True)
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))

    def onSurgeon3D(self):
        node = self._parameterNode.outputSegmentation
        if node:
            self.logic.showSurgeon3D(node)

    def onExportTable(self):
        node = self._parameterNode.outputSegmentation
        table = self.logic.tableFor(node) if node else None
        if table is None:
            return
        path = qt.QFileDialog.getSaveFileName(None, _("Export measurements"), f"{table.GetName()}.csv", "CSV (*.csv)")
        if path:
            with slicer.util.tryWithErrorDisplay(_("Export failed.")):
                self.logic.exportTable(table, path)

    def onExportSurfaces(self):
        node = self._parameterNode.outputSegmentation
        folder = qt.QFileDialog.getExistingDirectory(None, _("Export surfaces to folder")) if node else ""
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                self.logic.exportSurfaces(node, folder, "STL")


class MedSegAILogic(ScriptedLoadableModuleLogic):
    """Scriptable without the widget::

        logic = slicer.util.getModuleLogic("MedSegAI")
        job = logic.segment([volumeNode], "medsegai-ct-chest-demo")        # blocking by default
        segmentationNode = job.segmentation_node
    """

    def getParameterNode(self):
        return ScriptedLoadableModuleLogic.getParameterNode(self)

    @staticmethod
    def userModelsFolder() -> Path:
        from MedSegAILib.bundle import default_user_models_dir

        return default_user_models_dir()

    def catalog(self):
        from MedSegAILib.bundle import Catalog

        return Catalog.default(user_dir=self.userModelsFolder())

    def modelEntries(self):
        return self.catalog().entries()

    def importModel(self, path) -> Path:
        from MedSegAILib.bundle import import_bundle

        return import_bundle(path, self.userModelsFolder())

    @staticmethod
    def cardDescription(card) -> str:
        lic = card.license_name + (" - non-commercial use only" if card.commercial_use is False else "")
        timings = card.raw.get("timings", {})
        timing = ", ".join(f"{k}: {v} s" for k, v in timings.items())
        rows = [f"<b>{card.title}</b> {card.version} - {card.modality}",
                card.description,
                "Structures: " + ", ".join(label.name for label in card.labels),
                f"Licence: {lic}"]
        if timing:
            rows.append(f"Measured time: {timing}")
        if card.inference.cpu_runtime == "onnxruntime" and card.onnx_graph_file:
            rows.append("On a CPU this model runs on ONNX Runtime (it starts faster: PyTorch is not loaded)")
        if card.raw.get("intended_use"):
            rows.append(f"Intended use: {card.raw['intended_use']}")
        return "<br>".join(rows)

    @staticmethod
    def deviceDescription() -> str:
        try:
            import torch
        except ImportError:
            return "PyTorch is not installed yet"
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GB"
        return "No CUDA GPU found: runs on the CPU"

    @staticmethod
    def assignInputsByName(card, parameterNode):
        """Pre-select volumes whose names match each input's pattern (the user can change them)."""
        import re

        volumes = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
        for n, spec in enumerate(card.inputs[:MAX_INPUTS]):
            if spec.name_pattern and not getattr(parameterNode, f"inputVolume{n}"):
                match = next((v for v in volumes if re.search(spec.name_pattern, v.GetName(), re.IGNORECASE)), None)
                if match is not None:
                    setattr(parameterNode, f"inputVolume{n}", match)

    @staticmethod
    def applicabilityWarnings(card, volumeNodes) -> list:
        from MedSegAILib.applicability import applicability_findings
        from MedSegAISlicerLib.nodes import volume_from_node

        return applicability_findings(card, [volume_from_node(v) for v in volumeNodes])

    @staticmethod
    def ensureDependencies() -> bool:
        from MedSegAISlicerLib.dependencies import ensure_dependencies

        return ensure_dependencies(ask=not slicer.app.testingEnabled())

    def segment(self, inputVolumes, model, outputSegmentation=None, blocking=True, eventCallback=None,
                device="auto", roi=None, labels=(), fast=False, tta=False, smoothing=0.5, createSurface=True,
                measurements=True):
        """Segment ``inputVolumes`` (one per model input) with ``model`` (id or bundle path).

        Blocking: returns the finished job (``job.segmentation_node``, ``job.table_node``) or raises.
        Non-blocking: returns the started job; call ``job.poll()`` from a timer until it returns False.
        """
        from MedSegAISlicerLib.logic import RunOptions, SegmentationJob

        options = RunOptions(device=device, roi_node=roi, labels=tuple(labels), fast=fast, tta=tta,
                             smoothing=smoothing, create_surface=createSurface, measurements=measurements)
        job = SegmentationJob(list(inputVolumes), model, outputSegmentation, options, on_event=eventCallback,
                              models_dir=str(self.userModelsFolder()))
        if blocking:
            job.run()
        else:
            job.start()
        return job

    @staticmethod
    def showSurgeon3D(segmentationNode):
        from MedSegAISlicerLib.display import show_surgeon_3d

        show_surgeon_3d(segmentationNode)
        layoutManager = slicer.app.layoutManager()
        if layoutManager and layoutManager.threeDViewCount:
            layoutManager.threeDWidget(0).threeDView().resetFocalPoint()

    @staticmethod
    def tableFor(segmentationNode):
        return slicer.mrmlScene.GetFirstNodeByName(f"{segmentationNode.GetName()} measurements")

    @staticmethod
    def exportTable(tableNode, path):
        storage = slicer.vtkMRMLTableStorageNode()
        storage.SetFileName(str(path))
        if not storage.WriteData(tableNode):
            raise RuntimeError(f"could not write {path}")

    @staticmethod
    def exportSurfaces(segmentationNode, folder, fileFormat="STL"):
        from MedSegAISlicerLib.display import export_surfaces

        return export_surfaces(segmentationNode, folder, fileFormat)


class MedSegAITest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: Reload and Test, or ``slicer.selfTests['MedSegAI']()``."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_widget_builds()
        self.setUp()
        self.test_end_to_end_with_tiny_model()
        self.setUp()
        self.test_cancel_leaves_nothing()
        self.setUp()
        self.test_save_and_reload_keeps_terminology()

    def _tinyBundle(self, folder):
        """The intensity-window baseline: an exactly predictable model that needs no training."""
        import torch

        from MedSegAILib.bundle import write_bundle

        card = {
            "format_version": 1, "id": "selftest-window", "version": "1.0.0", "title": "Self-test model",
            "description": "Labels 50-150 HU as liver.", "modality": "CT",
            "inputs": [{"name": "CT", "modality": "CT"}],
            "labels": [{"value": 1, "name": "Liver", "color": [221, 130, 101], "terminology": {
                "category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "10200004", "Liver"]}}],
            "network": {"name": "intensity_window", "args": {"in_channels": 1, "out_channels": 2,
                                                             "windows": [[50, 150]]}},
            "preprocessing": {"normalization": {"type": "none"}}, "inference": {"patch_size": [32, 32, 32]},
            "license": {"name": "Apache-2.0"}, "files": {"weights": "weights.safetensors"}}
        return write_bundle(Path(folder) / "selftest", card,
                            {"weights.safetensors": {"windows": torch.tensor([[50.0, 150.0]])}})

    def _volume(self):
        import numpy as np

        array = np.full((30, 40, 50), -1000, np.int16)
        array[10:20, 10:30, 15:40] = 100
        ijk_to_ras = np.diag([-0.8, -0.9, 2.5, 1.0])
        ijk_to_ras[:3, 3] = [100, 50, -30]
        return slicer.util.addVolumeFromArray(array, ijk_to_ras, "CT"), array

    def test_widget_builds(self):
        slicer.util.selectModule("MedSegAI")
        widget = slicer.modules.MedSegAIWidget
        self.assertTrue(widget.ui.applyButton is not None)
        self.assertGreaterEqual(widget.ui.deviceSelector.count, 3)
        # the test-time augmentation option is offered exactly for models whose card has flips
        for index in range(widget.ui.modelSelector.count):
            widget.ui.modelSelector.setCurrentIndex(index)
            entry = widget.currentEntry()
            self.assertEqual(widget.ui.ttaCheckBox.enabled, bool(entry.card.inference.tta_flips), entry.card.id)

    def test_end_to_end_with_tiny_model(self):
        import tempfile

        import numpy as np

        volume, array = self._volume()
        with tempfile.TemporaryDirectory() as folder:
            bundle = self._tinyBundle(folder)
            job = MedSegAILogic().segment([volume], str(bundle))
        seg = job.segmentation_node
        segment_id = seg.GetSegmentation().GetSegmentIdBySegmentName("Liver")
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(seg, segment_id, volume)
        self.assertTrue(np.array_equal(mask > 0, array == 100))
        out = vtk.reference("")
        seg.GetSegmentation().GetSegment(segment_id).GetTag("TerminologyEntry", out)
        self.assertIn("SCT^10200004^Liver", str(out))
        self.assertIsNotNone(job.table_node)
        self.delayDisplay("End-to-end passed")

    def test_cancel_leaves_nothing(self):
        import tempfile

        volume, _array = self._volume()
        nodes_before = slicer.mrmlScene.GetNumberOfNodes()
        with tempfile.TemporaryDirectory() as folder:
            job = MedSegAILogic().segment([volume], str(self._tinyBundle(folder)), blocking=False)
            job.cancel()
        self.assertEqual(job.state.value, "cancelled")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes_before)

    def test_save_and_reload_keeps_terminology(self):
        import tempfile

        volume, _array = self._volume()
        with tempfile.TemporaryDirectory() as folder:
            job = MedSegAILogic().segment([volume], str(self._tinyBundle(folder)))
            path = os.path.join(folder, "result.seg.nrrd")
            self.assertTrue(slicer.util.saveNode(job.segmentation_node, path))
            reloaded = slicer.util.loadSegmentation(path)
        segment = reloaded.GetSegmentation().GetSegment(reloaded.GetSegmentation().GetSegmentIdBySegmentName("Liver"))
        out = vtk.reference("")
        segment.GetTag("TerminologyEntry", out)
        self.assertIn("SCT^10200004^Liver", str(out))
        logging.info("Save and reload passed")
