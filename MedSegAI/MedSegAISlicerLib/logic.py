"""One segmentation run inside Slicer: export inputs, run the core's CLI in a child process,
follow its progress, import the result, clean up. Usable from scripts without any widget."""

from __future__ import annotations

import enum
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import slicer

from .nodes import export_volume, import_result
from .process import CliProcess, Launcher, ProcessCancelled, ProcessFailed, SegmentRequest, popen_launcher

MODULE_DIR = Path(__file__).resolve().parents[1]  # holds MedSegAILib, for the child's PYTHONPATH


class JobState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass
class RunOptions:
    device: str = "auto"
    roi_node: object = None  # vtkMRMLMarkupsROINode
    labels: tuple[str, ...] = ()
    fast: bool = False
    tta: bool = False
    smoothing: float = 0.5
    create_surface: bool = True
    measurements: bool = True


def slicer_python() -> str:
    """The Python to run the core in: Slicer's ``PythonSlicer`` launcher when there is one."""
    return shutil.which("PythonSlicer") or sys.executable


def roi_bounds_ras(roi_node) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    bounds = [0.0] * 6
    roi_node.GetRASBounds(bounds)  # world coordinates, parent transforms applied
    return (bounds[0], bounds[2], bounds[4]), (bounds[1], bounds[3], bounds[5])


@dataclass
class SegmentationJob:
    """Runs one model on input volume nodes.

    The output segmentation node is created (if not given) only when the result is imported, so a
    cancelled or failed run leaves the scene and the disk as they were.
    """

    input_nodes: list
    model: str  # bundle path or id
    segmentation_node: object = None
    options: RunOptions = field(default_factory=RunOptions)
    on_event: Callable[[dict], None] | None = None
    launcher: Launcher = popen_launcher
    python: str = field(default_factory=slicer_python)
    models_dir: str | None = None
    state: JobState = JobState.IDLE
    error: ProcessFailed | None = None
    table_node: object = None

    def start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="MedSegAI-"))
        try:
            inputs = [str(export_volume(node, self._workdir / f"input{n}.nrrd")) for n, node in enumerate(self.input_nodes)]
            request = SegmentRequest(
                inputs, self.model, str(self._workdir / "out"), device=self.options.device,
                roi_ras=roi_bounds_ras(self.options.roi_node) if self.options.roi_node is not None else None,
                labels=self.options.labels, fast=self.options.fast, tta=self.options.tta, models_dir=self.models_dir,
                # without a table the child skips surfaces, measurements and the VTK import
                extra_outputs=("--nifti",) if self.options.measurements else ("--nifti", "--no-measurements"))
            env = request.environment(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([str(MODULE_DIR)] + [p for p in [env.get("PYTHONPATH")] if p])
            self._process = CliProcess(request.command(self.python), env, self.launcher, self.on_event)
        except Exception:
            self._cleanup()
            raise
        self.state = JobState.RUNNING

    def poll(self) -> bool:
        """Hand out new events; when the child has ended, import the result. True while running."""
        if self.state is not JobState.RUNNING:
            return False
        self._process.events()
        if self._process.running:
            return True
        try:
            self._process.finish()
            self._import()
            self.state = JobState.COMPLETED
        except ProcessCancelled:
            self.state = JobState.CANCELLED
        except ProcessFailed as exc:
            self.error, self.state = exc, JobState.FAILED
        finally:
            self._cleanup()
        return False

    def cancel(self) -> None:
        if self.state is JobState.RUNNING:
            self._process.cancel()
            self.poll()

    def run(self) -> JobState:
        """Blocking: start, follow until done; raises :class:`ProcessFailed` on failure."""
        import time

        self.start()
        while self.poll():
            time.sleep(0.1)
        if self.state is JobState.FAILED:
            raise self.error
        return self.state

    def _import(self) -> None:
        out = self._workdir / "out"
        case = "input0"
        if self.segmentation_node is None:
            name = f"{self.input_nodes[0].GetName()} segmentation"
            self.segmentation_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        import_result(out / f"{case}_labels.nii.gz", out / f"{case}_labels.json", self.segmentation_node,
                      self.input_nodes[0], self.options.smoothing, self.options.create_surface)
        if self.options.measurements:
            self.table_node = measurements_table(out / f"{case}_measurements.csv",
                                                 f"{self.segmentation_node.GetName()} measurements", self.table_node)

    def _cleanup(self) -> None:
        shutil.rmtree(getattr(self, "_workdir", ""), ignore_errors=True)


def measurements_table(csv_path: Path, name: str, table_node=None):
    """A table node holding the measurement CSV (volume mL, surface, diameter, intensities ...)."""
    if table_node is None:
        table_node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
    storage = slicer.vtkMRMLTableStorageNode()
    storage.SetFileName(str(csv_path))
    if not storage.ReadData(table_node):
        raise RuntimeError(f"could not read measurements {csv_path}")
    table_node.SetName(name)
    return table_node
