"""Pieces every model recipe shares: the rebuild command, the training record of the card, the
held-out scoring through the core pipeline, and the run summary.

A recipe (``brain_extraction``, ``brain_structures``) is a module with a ``main()`` that fetches
its data, trains one network, scores the candidate bundle on data it never trained on, and writes
the final bundle with its provenance. The comparison of networks (``comparison``) reads the
summaries the recipes leave in their work folders.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from MedSegAILib.bundle import Bundle
from MedSegAILib.image import Volume
from MedSegAILib.pipeline import SegmentationOptions, segment

from .augmentation import AugmentationConfig
from .export import bundle_size_bytes, hardware_summary, software_versions
from .losses import LOSSES
from .metrics import label_metrics
from .reference_data import REPO_ROOT
from .trainer import TrainConfig, TrainingResult


# The two compact network families the brain recipes compare with the same budget: both well
# under the 20 MB weight limit and trainable on 2 CPU cores.
NETWORK_TITLES = {"unet": "3D U-Net (MONAI DynUNet, 5 levels, 12-192 filters)",
                  "deeplabv3plus": "3D DeepLabv3+ (MedSegAI, output stride 8, ASPP rates 1/2/3)"}


def compact_train_config(iterations: int, patch_size: Sequence[int], augmentation: AugmentationConfig | None = None,
                         foreground_fraction: float = 0.5) -> TrainConfig:
    """The optimisation the shipped recipes share, sized for compact networks on two CPU cores: batches
    of 2, learning rate 2e-3 with weight decay 1e-4, 30 warm-up iterations, cosine decay to 2 %, a
    checkpoint every 50 iterations, seed 0."""
    return TrainConfig(iterations=iterations, batch_size=2, patch_size=tuple(patch_size), learning_rate=2e-3,
                       weight_decay=1e-4, warmup_iterations=30, min_lr_ratio=0.02,
                       foreground_fraction=foreground_fraction, seed=0, checkpoint_every=50,
                       augmentation=augmentation or AugmentationConfig())


def compact_networks(in_channels: int, out_channels: int) -> dict[str, dict]:
    """Card ``network`` entries of both families, by ``--network`` name."""
    io = {"in_channels": in_channels, "out_channels": out_channels}
    return {"unet": {"name": "unet", "args": {**io, "filters": [12, 24, 48, 96, 192], "strides": [1, 2, 2, 2, 2]}},
            "deeplabv3plus": {"name": "deeplabv3plus", "args": {**io, "channels": [16, 32, 64, 128]}}}


def t1_preprocessing(target_spacing: list[float], brain_only: bool) -> dict:
    """Card ``preprocessing`` of the T1 recipes: RAS, linear resampling, z-score between the 0.5 and
    99.5 percentiles; on skull-stripped inputs (``brain_only``) from the brain alone, the
    background staying 0."""
    return {"orientation": "RAS", "target_spacing": list(target_spacing), "interpolation": "linear",
            "normalization": {"type": "percentile_zscore", "lower": 0.5, "upper": 99.5, "nonzero": brain_only}}


def log_line(text: str) -> None:
    """The recipes' log: one line to stdout, flushed (runs are long and often piped to a file)."""
    print(text, flush=True)


def refuses_to_overwrite(out: Path, overwrite: bool) -> bool:
    """True, after saying so, when ``out`` exists and ``--overwrite`` was not given."""
    if out.exists() and not overwrite:
        log_line(f"error: {out} exists; pass --overwrite to replace it")
        return True
    return False


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (for commands in cards)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def add_run_arguments(parser: argparse.ArgumentParser, iterations: int, seed: int) -> None:
    """The options every recipe has: budget, seed, threads, resuming, overwriting, notes."""
    parser.add_argument("--iterations", type=int, default=iterations, help=f"default {iterations}")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --work-dir")
    parser.add_argument("--restart", action="store_true", help="discard checkpoints in --work-dir and start over")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle at the destination")
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: physical cores; 1 on shared cores)")
    parser.add_argument("--note", action="append", default=[],
                        help="a remark on this build for the card's training.notes")


def rebuild_command(module: str, out: Path, network: str, iterations: int, seed: int) -> str:
    return (f".venv/bin/python -m medsegai_training.{module} --network {network} --out {shlex.quote(shown_path(out))} "
            f"--iterations {iterations} --seed {seed} --overwrite")


def training_record(data: list[dict], command: str, config: TrainConfig, result: TrainingResult,
                    threads: int | None, notes: Sequence[str] = ()) -> dict:
    """The card's ``training`` section: data with licences, command, seed, settings, time, hardware."""
    record = {
        "data": data,
        "command": command,
        "seed": config.seed,
        "iterations": result.iterations,
        "sessions": result.sessions,
        "settings": config.describe(),
        "loss": LOSSES[config.loss],
        "optimizer": config.describe_optimizer(),
        "final_loss_mean_last_20": round(result.final_loss(), 5),
        "wall_time_s": round(result.train_seconds, 1),
        "device": result.device,
        "mixed_precision": result.mixed_precision,
        "hardware": hardware_summary(threads),
        "software": software_versions(),
    }
    if notes:
        record["notes"] = list(notes)
    return record


@dataclass
class Scored:
    """One segmented volume scored against one or more references (name -> label -> metrics)."""

    case: str
    seconds: float
    stage_seconds: dict[str, float]
    scores: dict[str, dict[str, dict]] = field(default_factory=dict)

    def value(self, reference: str, label: str, metric: str = "dice") -> float | None:
        return self.scores[reference][label][metric]


def score_segmentation(bundle: Bundle, case: str, volumes: Sequence[Volume], references: Mapping[str, Volume],
                       threads: int | None = None) -> Scored:
    """Segment ``volumes`` with ``bundle`` (CPU, as a user would) and score every card label
    against every reference label map (model label values, on the input grid)."""
    start = time.perf_counter()
    result = segment(list(volumes), bundle, SegmentationOptions(device="cpu", threads=threads, allow_empty=True))
    seconds = time.perf_counter() - start
    spacing_kji = volumes[0].spacing[::-1]
    scored = Scored(case, round(seconds, 2), {k: round(v, 2) for k, v in result.seconds.items()})
    for name, reference in references.items():
        if not reference.grid.same_as(result.labels.grid):
            raise ValueError(f"reference {name!r} of {case} is not on the input grid")
        scored.scores[name] = {
            label.name: _rounded(label_metrics(result.labels.array == label.value, reference.array == label.value,
                                               spacing_kji).as_dict())
            for label in bundle.card.labels}
    return scored


def _rounded(values: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in values.items()}


def card_metrics(scored: Scored, reference: str, data: str, note: str, metrics: Sequence[str] = ("dice", "hd95")) -> list:
    """Card ``metrics`` entries of one scored case against one reference."""
    names = {"dice": "Dice", "hd95": "HD95 (mm)", "assd": "ASSD (mm)"}
    return [{"metric": names[m], "label": label, "value": values[m], "data": data, "subjects": 1, "note": note,
             "how": f"MedSegAILib.pipeline.segment (CPU, post-processing on) vs {reference} on the input grid"}
            for label, values in scored.scores[reference].items() for m in metrics if values[m] is not None]


def write_summary(work_dir: Path, task: str, network: str, bundle: Path, result: TrainingResult, command: str,
                  started: float, **extra) -> Path:
    """``summary.json`` of a recipe run (what :mod:`.comparison` tabulates): the facts every run has,
    plus the recipe's own ``extra`` (held-out scores and the like). ``started``: ``time.perf_counter()``
    at the start of the command."""
    summary = {"task": task, "network": network, "bundle": str(bundle), "bundle_bytes": bundle_size_bytes(bundle),
               "iterations": result.iterations, "train_seconds": round(result.train_seconds, 1),
               "final_loss": round(result.final_loss(), 5), **extra, "command": command,
               "command_seconds": round(time.perf_counter() - started, 1)}
    path = work_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Scored):
        return value.__dict__
    raise TypeError(f"cannot serialise {type(value).__name__}")
