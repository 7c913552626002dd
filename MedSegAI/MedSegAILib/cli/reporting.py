"""How the CLI talks: a progress bar for people, JSON lines for programs (the Slicer module).

JSON mode prints exactly one JSON object per line on stdout; everything for people goes to
stderr. Events (``"event"`` key):

* ``start``: ``case``, ``model``, ``version``, ``device``
* ``progress``: ``case``, ``stage``, ``fraction`` (0-1, overall), ``eta_s``, ``elapsed_s``, ``message``
* ``warning``: ``case``, ``message``
* ``output``: ``case``, ``path``
* ``case_done``: ``case``, ``seconds``, ``found``, ``missing``
* ``case_failed``: ``case``, ``message``, ``hint``, ``exit_code``
* ``done``: ``cases``, ``failed``
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from ..progress import ProgressEvent


class Reporter:
    def __init__(self, mode: str = "bar", out: TextIO | None = None, err: TextIO | None = None) -> None:
        if mode not in ("bar", "json", "none"):
            raise ValueError(mode)
        self.mode = mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.case = ""
        self._bar_open = False

    def emit(self, event: str, **fields) -> None:
        if self.mode == "json":
            self.out.write(json.dumps({"event": event, "case": self.case, **fields}) + "\n")
            self.out.flush()

    def say(self, text: str) -> None:
        """A line for people, on stderr in every mode (``none`` only hides the progress bar)."""
        self._close_bar()
        self.err.write(text + "\n")
        self.err.flush()

    def progress(self, event: ProgressEvent) -> None:
        if self.mode == "json":
            self.emit("progress", **{k: v for k, v in event.to_dict().items() if k != "event"})
        elif self.mode == "bar":
            width = 30
            filled = int(round(event.fraction * width))
            eta = f" ETA {event.eta_s:.0f}s" if event.eta_s is not None else ""
            self.err.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {event.fraction * 100:5.1f}% "
                           f"{event.stage:<11}{eta:<12}")
            self.err.flush()
            self._bar_open = True

    def warning(self, message: str) -> None:
        self.emit("warning", message=message)
        self.say(f"warning: {message}")

    def _close_bar(self) -> None:
        if self._bar_open:
            self.err.write("\n")
            self._bar_open = False
