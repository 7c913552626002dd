"""Checkpoints: ``checkpoint-<iteration>.pt`` files in a work folder, written atomically.

They hold the network, the optimiser, the random states, the configuration and the loss history.
They are loaded with ``torch.load(weights_only=True)`` (no arbitrary code). Checkpoints are working
files only: models leave training as bundles (safetensors), never as checkpoints.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_PATTERN = re.compile(r"^checkpoint-(\d+)\.pt$")


def checkpoint_path(directory: Path, iteration: int) -> Path:
    return Path(directory) / f"checkpoint-{iteration:07d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _PATTERN.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(directory: Path, iteration: int, state: dict, keep: int = 2) -> Path:
    """Write ``state`` for ``iteration`` (atomically) and delete all but the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, iteration)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for _, old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def clear_checkpoints(directory: Path) -> int:
    found = list_checkpoints(directory)
    for _, path in found:
        path.unlink()
    return len(found)
