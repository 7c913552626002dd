"""Progress reporting and cancellation, independent of any UI.

A job reports :class:`ProgressEvent` objects to a callback; the CLI prints them as a bar or as
JSON lines (the Slicer module reads those from the child process). A :class:`CancelToken` is
checked between sliding windows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from .errors import Cancelled

# Share of the total run time each stage takes on a typical CPU run; used to turn stage
# progress into one overall fraction. Inference dominates.
STAGE_WEIGHTS = {"load": 0.04, "preprocess": 0.08, "inference": 0.78, "postprocess": 0.05, "write": 0.05}


@dataclass
class ProgressEvent:
    """``fraction`` is overall progress in [0, 1]; ``eta_s`` the estimated seconds left (or None)."""

    stage: str
    fraction: float
    message: str = ""
    eta_s: float | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["event"] = "progress"
        return d


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """Thread-safe cancellation flag."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass
class ProgressReporter:
    """Maps per-stage fractions to an overall fraction with an ETA and calls ``callback``."""

    callback: ProgressCallback | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._start = self.clock()
        self._stage_start = self._start
        self._stage = ""

    def stage(self, name: str, message: str = "") -> None:
        self.cancel.raise_if_cancelled()
        self._stage, self._stage_start = name, self.clock()
        self.update(0.0, message)

    def update(self, stage_fraction: float, message: str = "") -> None:
        self.cancel.raise_if_cancelled()
        if self.callback is None:
            return
        names = list(STAGE_WEIGHTS)
        done = sum(STAGE_WEIGHTS[n] for n in names[: names.index(self._stage)]) if self._stage in names else 0.0
        fraction = min(1.0, done + STAGE_WEIGHTS.get(self._stage, 0.0) * stage_fraction)
        now = self.clock()
        elapsed = now - self._start
        eta = None
        if self._stage == "inference" and stage_fraction > 0.02:
            # inference dominates and runs at a steady rate: extrapolate it, add the rest by weight
            stage_elapsed = now - self._stage_start
            eta = stage_elapsed * (1 - stage_fraction) / stage_fraction
            eta += stage_elapsed / stage_fraction * (STAGE_WEIGHTS["postprocess"] + STAGE_WEIGHTS["write"]) / STAGE_WEIGHTS["inference"]
        elif fraction > 0.05:
            eta = elapsed * (1 - fraction) / fraction
        self.callback(ProgressEvent(self._stage, round(fraction, 4), message, None if eta is None else round(eta, 1),
                                    round(elapsed, 2)))
