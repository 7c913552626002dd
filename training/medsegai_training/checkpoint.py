"""Checkpoints: ``checkpoint-<iteration>.pt`` files in a work folder, written atomically, and
``best.pt``, the weights with the best validation Dice so far.

They hold the network, the optimiser, the random states, the configuration, the loss and
validation history. They are loaded with ``torch.load(weights_only=True)`` (no arbitrary code).
Checkpoints are working files only: models leave training as bundles (safetensors), never as
checkpoints.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_PATTERN = re.compile(r"^checkpoint-(\d+)\.pt$")
BEST = "best.pt"


def checkpoint_path(directory: Path, iteration: int) -> Path:
    return Path(directory) / f"checkpoint-{iteration:07d}.pt"


def best_checkpoint_path(directory: Path) -> Path:
    return Path(directory) / BEST


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _PATTERN.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def write_atomically(state: dict, path: Path) -> Path:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(directory: Path, iteration: int, state: dict, keep: int = 2) -> Path:
    """Write ``state`` for ``iteration`` (atomically) and delete all but the newest ``keep``."""
    path = write_atomically(state, checkpoint_path(directory, iteration))
    for _, old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def clear_checkpoints(directory: Path) -> int:
    """Delete every checkpoint, ``best.pt`` included; return how many iteration checkpoints there were."""
    found = list_checkpoints(directory)
    for _, path in found:
        path.unlink()
    best_checkpoint_path(directory).unlink(missing_ok=True)
    return len(found)
