"""The run's scalar log: ``train_log.jsonl`` (one JSON object per line) and, when the
``tensorboard`` package is installed, TensorBoard event files in ``tensorboard/``.

Lines: ``{"iteration", "loss", "lr", "seconds"}`` for training (the loss is the mean since the
previous line) and ``{"iteration", "val_dice": {label: Dice}, "val_mean_dice", "seconds"}`` for
validations. TensorBoard scalars: ``train/loss``, ``train/lr``, ``val/dice/<label>`` (characters
other than letters, digits and ``_./-`` become ``_``) and ``val/mean_dice``. Only rank 0 writes
(a disabled log does nothing).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Callable

LOG_NAME = "train_log.jsonl"
TENSORBOARD_DIR = "tensorboard"
_TAG_UNSAFE = re.compile(r"[^\w./-]")


def read_log(path: Path) -> list[dict]:
    """The records of a ``train_log.jsonl`` (none if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def clear_log(work_dir: Path) -> None:
    """Delete a run's scalar log (``train_log.jsonl`` and TensorBoard events)."""
    (Path(work_dir) / LOG_NAME).unlink(missing_ok=True)
    shutil.rmtree(Path(work_dir) / TENSORBOARD_DIR, ignore_errors=True)


class RunLog:
    """Append to a run's scalar log from iteration ``start`` on.

    Records after ``start`` left by an interrupted session (written after its last checkpoint)
    are dropped from ``train_log.jsonl``, and TensorBoard purges them, so a resumed run's curves
    have no duplicates.
    """

    def __init__(self, work_dir: Path, start: int, tensorboard: bool, enabled: bool = True,
                 say: Callable[[str], None] = print) -> None:
        self.path = Path(work_dir) / LOG_NAME
        self._writer = None
        self._file = None
        if not enabled:
            return
        kept = [r for r in read_log(self.path) if r["iteration"] <= start]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a", encoding="utf-8")
        if not tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            say("TensorBoard logging is off: the tensorboard package is not installed "
                "(pip install tensorboard, or the 'train' extra of medsegai)")
            return
        self._writer = SummaryWriter(str(Path(work_dir) / TENSORBOARD_DIR), purge_step=start + 1 if start else None)

    def _write(self, record: dict, scalars: dict[str, float]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for tag, value in scalars.items():
                self._writer.add_scalar(tag, value, record["iteration"])
            self._writer.flush()

    def training(self, iteration: int, loss: float, lr: float, seconds: float) -> None:
        self._write({"iteration": iteration, "loss": round(loss, 5), "lr": lr, "seconds": round(seconds, 1)},
                    {"train/loss": loss, "train/lr": lr})

    def validation(self, entry: dict, seconds: float) -> None:
        """Log a validation record (:func:`medsegai_training.validation.record`)."""
        scalars = {"val/dice/" + _TAG_UNSAFE.sub("_", label): value for label, value in entry["dice"].items()}
        scalars["val/mean_dice"] = entry["mean_dice"]
        self._write({"iteration": entry["iteration"], "val_dice": entry["dice"], "val_mean_dice": entry["mean_dice"],
                     "seconds": round(seconds, 1)}, scalars)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._writer is not None:
            self._writer.close()
