"""A text progress bar for training (iteration / total, loss, s/it, ETA), without dependencies.

The bar is redrawn in place (carriage return) on its own stream -- stderr in the CLI -- at most
every ``min_interval`` seconds; :meth:`TrainingProgress.clear` wipes it before a log line is
printed, so bar and log lines never share a line.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour).

    Example:
        >>> format_duration(75), format_duration(3725.4)
        ('1:15', '1:02:05')
    """
    total = int(round(max(0.0, seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingProgress:
    """Draw ``[#####.....] 120/1000 loss 0.4321 1.25 s/it ETA 18:20`` as training runs.

    Call it as ``progress(done, total, loss)`` after each iteration. Seconds per iteration are
    measured over this session (from the first call), so a resumed run gets a correct ETA.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30, min_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.min_interval = min_interval
        self.clock = clock
        self._first: tuple[int, float] | None = None  # (iteration, time) of the first call
        self._last_draw = float("-inf")
        self._drawn = 0  # characters of the bar on screen

    def text(self, done: int, total: int, loss: float, now: float | None = None) -> str:
        """The bar as a string (no carriage return)."""
        now = self.clock() if now is None else now
        filled = int(self.width * done / total) if total else self.width
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} loss {loss:.4f}"
        if self._first is not None and done > self._first[0]:
            per_it = (now - self._first[1]) / (done - self._first[0])
            line += f" {per_it:.2f} s/it ETA {format_duration(per_it * (total - done))}"
        return line

    def __call__(self, done: int, total: int, loss: float) -> None:
        now = self.clock()
        if self._first is None:
            self._first = (done, now)  # rates are measured from the end of the session's first iteration
        if now - self._last_draw < self.min_interval and done < total:
            return
        self._last_draw = now
        line = self.text(done, total, loss, now)
        self.stream.write("\r" + line.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(line)
        if done >= total:
            self.close()

    def clear(self) -> None:
        """Wipe the bar (before printing a log line); the next call redraws it."""
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0
            self._last_draw = float("-inf")

    def close(self) -> None:
        """Leave the bar on screen and move to a new line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0
