"""Run the core's CLI in a child process and follow it: JSON events, Cancel, clean-up.

Pure Python (no ``slicer``/``qt`` import), so it is tested with real child processes outside
Slicer. The Slicer logic drives it from a timer (non-blocking) or :meth:`wait` (blocking). A crash
or an out-of-memory kill of the child never takes the caller down: it becomes a
:class:`ProcessFailed` with the child's last error message.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import psutil

from MedSegAILib.process_hygiene import malloc_environment

CANCELLED_EXIT_CODE = 130


class ProcessFailed(RuntimeError):
    """The child process ended with an error; ``message`` and ``hint`` come from its last error event."""

    def __init__(self, message: str, hint: str = "", exit_code: int | None = None, log: str = "") -> None:
        super().__init__(message)
        self.message, self.hint, self.exit_code, self.log = message, hint, exit_code, log


class ProcessCancelled(RuntimeError):
    pass


class ChildProcess(Protocol):
    """What :class:`CliProcess` needs of a started process (``subprocess.Popen`` has it)."""

    pid: int
    stdout: object
    stderr: object

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


Launcher = Callable[[Sequence[str], dict | None], ChildProcess]


def popen_launcher(command: Sequence[str], env: dict | None) -> ChildProcess:
    return subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            env=env)


def kill_process_tree(pid: int, timeout: float = 5.0) -> None:
    """Kill a process and all its descendants (children first, then the parent), as launchers such
    as PythonSlicer start the real interpreter as a child."""
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = parent.children(recursive=True) + [parent]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=timeout)


@dataclass
class CliProcess:
    """A started ``medsegai --progress json ...`` child process.

    Events (dicts, see the CLI's ``--progress json`` protocol) are read by a thread and handed out
    by :meth:`events` without blocking; stderr is kept as the log.
    """

    command: Sequence[str]
    env: dict | None = None
    launcher: Launcher = popen_launcher
    on_event: Callable[[dict], None] | None = None
    _events: "queue.Queue[dict]" = field(default_factory=queue.Queue, init=False)
    _log: list[str] = field(default_factory=list, init=False)
    _cancelled: bool = field(default=False, init=False)
    last_error: dict | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.process = self.launcher(self.command, self.env)
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self._log.append(line)
                continue
            if event.get("event") in ("error", "case_failed"):
                self.last_error = event
            self._events.put(event)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            self._log.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self._log)

    def events(self) -> list[dict]:
        """Events received since the last call (never blocks)."""
        out = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            out.append(event)
            if self.on_event:
                self.on_event(event)
        return out

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def cancel(self) -> None:
        """Stop the child and everything it started, now."""
        self._cancelled = True
        kill_process_tree(self.process.pid)

    def finish(self) -> int:
        """After the process ended: drain the readers and raise if it failed or was cancelled."""
        code = self.process.wait()
        for t in self._readers:
            t.join(timeout=5)
        self.events()
        if self._cancelled or code == CANCELLED_EXIT_CODE:
            raise ProcessCancelled("cancelled")
        if code != 0:
            if self.last_error:
                raise ProcessFailed(self.last_error.get("message", "segmentation failed"),
                                    self.last_error.get("hint", ""), code, self.log)
            tail = "\n".join(self._log[-5:]) or "no message"
            reason = "it was killed (out of memory?)" if code < 0 else f"exit code {code}"
            raise ProcessFailed(f"the segmentation process stopped unexpectedly ({reason}): {tail}",
                                "see the log; try the CPU, a region of interest or the fast mode", code, self.log)
        return code

    def wait(self, poll_seconds: float = 0.1) -> int:
        """Blocking: hand out events as they come until the process ends, then :meth:`finish`."""
        while self.running:
            self.events()
            try:
                self.process.wait(timeout=poll_seconds)
            except subprocess.TimeoutExpired:
                pass
        return self.finish()


@dataclass(frozen=True)
class SegmentRequest:
    """What to run: everything the CLI's ``segment`` command takes, as data."""

    inputs: Sequence[str]
    model: str  # bundle path or id
    output_dir: str
    device: str = "auto"
    roi_ras: tuple[Sequence[float], Sequence[float]] | None = None
    labels: Sequence[str] = ()
    fast: bool = False
    tta: bool = False  # the card's flip test-time augmentation
    models_dir: str | None = None
    extra_outputs: Sequence[str] = ("--nifti",)

    def command(self, python: str) -> list[str]:
        """``python -m MedSegAILib --progress json segment ...``."""
        cmd = [python, "-m", "MedSegAILib", "--progress", "json"]
        if self.models_dir:
            cmd += ["--models-dir", self.models_dir]
        cmd += ["segment", *self.inputs, "--model", self.model, "--output", self.output_dir, "--device", self.device]
        if self.roi_ras is not None:
            cmd.append("--roi=" + ",".join(f"{v:g}" for v in [*self.roi_ras[0], *self.roi_ras[1]]))
        if self.labels:
            cmd += ["--labels", ",".join(self.labels)]
        if self.fast:
            cmd.append("--fast")
        if self.tta:
            cmd.append("--tta")
        return cmd + list(self.extra_outputs)

    def environment(self, base: dict) -> dict:
        """The child's environment: glibc malloc thresholds that spare it most page faults (see
        :mod:`MedSegAILib.process_hygiene`; values the user set are kept); on ``cpu``, CUDA is
        hidden so torch never initialises a GPU (a broken driver then cannot crash the run)."""
        env = malloc_environment(base)
        if self.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = "-1"
        return env
