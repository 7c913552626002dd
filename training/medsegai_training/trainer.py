"""The training loop: patches -> network -> Dice+CE -> AdamW, with checkpoints and resuming."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from monai.losses import DiceCELoss

from MedSegAILib.networks import build_network
from MedSegAILib.pipeline import physical_cores

from .augmentation import AugmentationConfig, Augmenter
from .checkpoint import clear_checkpoints, latest_checkpoint, load_checkpoint, save_checkpoint
from .sampling import PatchSampler
from .schedule import build_optimizer, learning_rate, set_learning_rate
from .seeding import random_state, restore_random_state, seed_everything

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 1000
    batch_size: int = 2
    patch_size: tuple[int, int, int] = (96, 96, 16)
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_iterations: int = 50
    min_lr_ratio: float = 0.02
    grad_clip: float = 12.0
    foreground_fraction: float = 0.67
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    threads: int | None = None
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)

    # settings that may change when a run is resumed (the others must match the checkpoint)
    RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "keep_checkpoints", "log_every", "threads")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    def describe(self) -> dict:
        """The settings as recorded in a model card."""
        d = self.as_dict()
        d.pop("threads")
        d.pop("keep_checkpoints")
        d.pop("log_every")
        d["augmentation"] = self.augmentation.describe()
        return d


@dataclass
class TrainingResult:
    network: torch.nn.Module
    iterations: int
    losses: list[float]
    train_seconds: float  # summed over all sessions (resumed runs included)
    sessions: int
    resumed_from: int | None

    def final_loss(self, window: int = 20) -> float:
        """Mean loss over the last ``window`` iterations (single-patch losses are noisy)."""
        tail = self.losses[-window:]
        return float(np.mean(tail)) if tail else float("nan")


def run_and_report(trainer: "Trainer", log, resume: bool = False, restart: bool = False) -> "TrainingResult | None":
    """Run ``trainer``, log the outcome in one line; None (after logging the error) on failure."""
    try:
        result = trainer.run(resume=resume, restart=restart)
    except TrainingError as exc:
        log(f"error: {exc}")
        return None
    log(f"trained {result.iterations} iterations in {result.train_seconds:.0f} s ({result.sessions} session(s)); "
        f"final loss (mean of last 20) {result.final_loss():.4f}")
    return result


class TrainingError(RuntimeError):
    pass


class Trainer:
    """Train ``network_name(**network_args)`` on prepared cases.

    Args:
        network_name, network_args: as in the model card (``MedSegAILib.networks``).
        cases: ``(image (C, X, Y, Z), labels (X, Y, Z))`` on the model grid.
        spacing: voxel spacing of the model grid (x, y, z), for the augmentation.
        config: hyper-parameters.
        work_dir: checkpoints and ``train_log.jsonl`` go here.
        log: a function receiving one line of text per report.
    """

    def __init__(self, network_name: str, network_args: dict, cases: Sequence[tuple[np.ndarray, np.ndarray]],
                 spacing: Sequence[float], config: TrainConfig, work_dir: Path,
                 log: Callable[[str], None] = print) -> None:
        self.network_name = network_name
        self.network_args = dict(network_args)
        self.cases = cases
        self.spacing = tuple(float(s) for s in spacing)
        self.config = config
        self.work_dir = Path(work_dir)
        self.log = log

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "train_log.jsonl"

    def _check_resumable(self, saved: dict) -> None:
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"checkpoint format {saved.get('format')} is not {CHECKPOINT_FORMAT}")
        if saved["network"] != {"name": self.network_name, "args": self.network_args}:
            raise TrainingError(f"the checkpoint's network {saved['network']} differs from this run's")
        old, new = dict(saved["config"]), self.config.as_dict()
        for key in TrainConfig.RESUMABLE_CHANGES:
            old.pop(key, None)
            new.pop(key, None)
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise TrainingError(f"the checkpoint was trained with other settings ({', '.join(diff)}); "
                                "restart instead of resuming")

    def run(self, resume: bool = False, restart: bool = False, stop_at: int | None = None) -> TrainingResult:
        """Train up to ``config.iterations``.

        Args:
            resume: continue from the newest checkpoint in the work folder (if there is one).
            restart: delete existing checkpoints and start over. Without ``resume`` or ``restart``,
                existing checkpoints are an error (nothing is overwritten by accident).
            stop_at: end this session after that many iterations (with a checkpoint), e.g. to fit a
                time slot; a later ``resume`` continues exactly where it stopped.
        """
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.config.threads or physical_cores())
        try:
            return self._run(resume, restart, stop_at)
        finally:
            torch.set_num_threads(previous_threads)

    def _run(self, resume: bool, restart: bool, stop_at: int | None) -> TrainingResult:
        cfg = self.config
        self.work_dir.mkdir(parents=True, exist_ok=True)
        rng = seed_everything(cfg.seed)
        network = build_network(self.network_name, self.network_args)
        optimizer = build_optimizer(network, cfg.learning_rate, cfg.weight_decay)
        losses: list[float] = []
        start, spent, sessions, resumed_from = 0, 0.0, 1, None

        existing = latest_checkpoint(self.checkpoint_dir)
        if existing is not None and restart:
            n = clear_checkpoints(self.checkpoint_dir)
            self.log_path.unlink(missing_ok=True)
            self.log(f"restart: removed {n} checkpoint(s) from {self.checkpoint_dir}")
            existing = None
        if existing is not None and not resume:
            raise TrainingError(f"checkpoints exist in {self.checkpoint_dir}: pass resume to continue them or "
                                "restart to discard them")
        if existing is not None:
            saved = load_checkpoint(existing)
            self._check_resumable(saved)
            network.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            restore_random_state(rng, saved["random_state"])
            start, losses = int(saved["iteration"]), list(saved["losses"])
            spent, sessions, resumed_from = float(saved["train_seconds"]), int(saved["sessions"]) + 1, start
            if saved["config"]["iterations"] != cfg.iterations:
                self.log(f"note: iterations changed {saved['config']['iterations']} -> {cfg.iterations}; "
                         "the cosine schedule is recomputed for the new total")
            self.log(f"resumed from {existing.name} at iteration {start}")
        elif resume:
            self.log("no checkpoint to resume from: starting from scratch")

        if start >= cfg.iterations:
            self.log(f"already trained {start} iterations (>= {cfg.iterations})")
            return TrainingResult(network.eval(), start, losses, spent, sessions - 1, resumed_from)

        sampler = PatchSampler(self.cases, cfg.foreground_fraction)
        augmenter = Augmenter(cfg.augmentation, cfg.patch_size, self.spacing)
        loss_fn = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
        network.train()
        session_start = time.perf_counter()
        last_report = session_start
        end = cfg.iterations if stop_at is None else max(start, min(stop_at, cfg.iterations))
        with self.log_path.open("a", encoding="utf-8") as log_file:
            for iteration in range(start, end):
                lr = learning_rate(iteration, cfg.iterations, cfg.learning_rate, cfg.warmup_iterations, cfg.min_lr_ratio)
                set_learning_rate(optimizer, lr)
                images, labels = [], []
                for _ in range(cfg.batch_size):
                    img, lab = augmenter(rng, *sampler.sample(rng, augmenter.input_size))
                    images.append(img)
                    labels.append(lab)
                x = torch.from_numpy(np.stack(images))
                y = torch.from_numpy(np.stack(labels).astype(np.int64))[:, None]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(network(x), y)
                if not torch.isfinite(loss):
                    raise TrainingError(f"loss is {loss.item()} at iteration {iteration + 1}")
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.grad_clip)
                optimizer.step()
                losses.append(float(loss.item()))
                done = iteration + 1
                if done % cfg.log_every == 0 or done == cfg.iterations:
                    now = time.perf_counter()
                    recent = float(np.mean(losses[-cfg.log_every:]))
                    record = {"iteration": done, "loss": round(recent, 5), "lr": lr,
                              "seconds": round(spent + now - session_start, 1)}
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    per_it = (now - last_report) / cfg.log_every
                    last_report = now
                    self.log(f"it {done}/{cfg.iterations} loss {recent:.4f} lr {lr:.2e} "
                             f"{per_it:.2f} s/it elapsed {spent + now - session_start:.0f} s")
                if done % cfg.checkpoint_every == 0 or done == end:
                    self._save(done, network, optimizer, rng, losses, spent + time.perf_counter() - session_start,
                               sessions)
        spent += time.perf_counter() - session_start
        return TrainingResult(network.eval(), end, losses, spent, sessions, resumed_from)

    def _save(self, iteration: int, network, optimizer, rng, losses, seconds: float, sessions: int) -> Path:
        state = {
            "format": CHECKPOINT_FORMAT,
            "iteration": iteration,
            "network": {"name": self.network_name, "args": self.network_args},
            "config": self.config.as_dict(),
            "model": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "random_state": random_state(rng),
            "losses": list(losses),
            "train_seconds": seconds,
            "sessions": sessions,
        }
        return save_checkpoint(self.checkpoint_dir, iteration, state, self.config.keep_checkpoints)


def with_overrides(config: TrainConfig, **changes) -> TrainConfig:
    """``config`` with the given fields replaced (``None`` values are ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
