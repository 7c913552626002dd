"""The training loop: patches -> network -> loss -> optimiser, with validation, early stopping,
checkpoints and resuming; in one process (CPU or GPU) or in several under ``torchrun``.

Under torchrun (:mod:`.distributed`) every rank draws its own patches, gradients are averaged by
DistributedDataParallel (the effective batch is ``batch_size`` x the number of processes), the
logged loss is the mean over the ranks, and only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from MedSegAILib.networks import build_network
from MedSegAILib.process_hygiene import physical_cores

from .augmentation import Augmenter
from .checkpoint import (best_checkpoint_path, clear_checkpoints, latest_checkpoint, load_checkpoint, save_checkpoint,
                         write_atomically)
from .config import TrainConfig, with_overrides  # noqa: F401 (recipes import with_overrides from here)
from .deep_supervision import DeepSupervision, deep_supervision_loss
from .distributed import Distributed, session
from .losses import build_loss
from .progress import format_duration
from .run_log import LOG_NAME, RunLog, clear_log
from .sampling import PatchSampler
from .schedule import build_optimizer, learning_rate, set_learning_rate
from .seeding import random_state, restore_random_state, seed_everything
from .validation import best_record, record, should_stop, validation_dice

CHECKPOINT_FORMAT = 1


@dataclass
class TrainingResult:
    network: torch.nn.Module  # on the CPU, in eval mode
    iterations: int
    losses: list[float]
    train_seconds: float  # summed over all sessions (resumed runs included)
    sessions: int
    resumed_from: int | None
    validation: list[dict] = field(default_factory=list)  # :func:`.validation.record` of every validation
    network_is_best: bool = False  # ``network`` holds the best validation weights, not the last ones
    stopped_early: bool = False
    device: str = "cpu"  # where it trained (this session), e.g. "cuda:0"
    mixed_precision: bool = False  # float16 autocast and gradient scaling were used (CUDA with ``amp``)

    def final_loss(self, window: int = 20) -> float:
        """Mean loss over the last ``window`` iterations (single-patch losses are noisy)."""
        tail = self.losses[-window:]
        return float(np.mean(tail)) if tail else float("nan")

    @property
    def best_validation(self) -> dict | None:
        return best_record(self.validation)

    @property
    def best_validation_dice(self) -> float | None:
        """Mean over the labels of the best validation's Dice."""
        return None if self.best_validation is None else self.best_validation["mean_dice"]

    @property
    def best_validation_iteration(self) -> int | None:
        return None if self.best_validation is None else self.best_validation["iteration"]


def run_and_report(trainer: "Trainer", log, resume: bool = False, restart: bool = False) -> "TrainingResult | None":
    """Run ``trainer``, log the outcome; None (after logging the error) on failure."""
    try:
        result = trainer.run(resume=resume, restart=restart)
    except TrainingError as exc:
        log(f"error: {exc}")
        return None
    log(f"trained {result.iterations} iterations in {result.train_seconds:.0f} s ({result.sessions} session(s)); "
        f"final loss (mean of last 20) {result.final_loss():.4f}")
    best = result.best_validation
    if best is not None:
        log(f"best validation: mean Dice {best['mean_dice']:.4f} at iteration {best['iteration']}"
            f"{' (stopped early)' if result.stopped_early else ''}; the network returned has these weights")
    return result


class TrainingError(RuntimeError):
    pass


@dataclass
class _RunState:
    """What a checkpoint carries besides weights and random states."""

    iteration: int = 0
    losses: list[float] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    sessions: int = 1
    resumed_from: int | None = None
    stopped_early: bool = False


class Trainer:
    """Train ``network_name(**network_args)`` on prepared cases.

    Args:
        network_name, network_args: as in the model card (``MedSegAILib.networks``).
        cases: ``(image (C, X, Y, Z), labels (X, Y, Z))`` on the model grid.
        spacing: voxel spacing of the model grid (x, y, z), for the augmentation.
        config: hyper-parameters.
        work_dir: checkpoints, ``train_log.jsonl`` and ``tensorboard/`` go here.
        log: a function receiving one line of text per report (rank 0 only).
        validation_cases: like ``cases``; when given, validated every ``config.validate_every``
            iterations (and at the end), with early stopping and a ``best.pt`` checkpoint.
        label_names: label value -> name for logs (default ``label_<value>``).
        progress: called as ``progress(done, total, loss)`` after each iteration (rank 0 only).
    """

    def __init__(self, network_name: str, network_args: dict, cases: Sequence[tuple[np.ndarray, np.ndarray]],
                 spacing: Sequence[float], config: TrainConfig, work_dir: Path,
                 log: Callable[[str], None] = print,
                 validation_cases: Sequence[tuple[np.ndarray, np.ndarray]] = (),
                 label_names: Mapping[int, str] | None = None,
                 progress: Callable[[int, int, float], None] | None = None) -> None:
        self.network_name = network_name
        self.network_args = dict(network_args)
        self.cases = cases
        self.spacing = tuple(float(s) for s in spacing)
        self.config = config
        self.work_dir = Path(work_dir)
        self.log = log
        self._say = log  # ``log`` on rank 0, silence on the other ranks (set per run)
        self.validation_cases = list(validation_cases)
        values = range(1, int(self.network_args["out_channels"]))
        self.label_names = {v: (label_names or {}).get(v, f"label_{v}") for v in values}
        self.progress = progress

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.work_dir / LOG_NAME

    def _check_resumable(self, saved: dict) -> None:
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise TrainingError(f"checkpoint format {saved.get('format')} is not {CHECKPOINT_FORMAT}")
        if saved["network"] != {"name": self.network_name, "args": self.network_args}:
            raise TrainingError(f"the checkpoint's network {saved['network']} differs from this run's")
        # settings added after a checkpoint was written had their default values in it
        old, new = {**TrainConfig().as_dict(), **saved["config"]}, self.config.as_dict()
        for key in TrainConfig.RESUMABLE_CHANGES:
            old.pop(key, None)
            new.pop(key, None)
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise TrainingError(f"the checkpoint was trained with other settings ({', '.join(diff)}); "
                                "restart instead of resuming")

    def run(self, resume: bool = False, restart: bool = False, stop_at: int | None = None) -> TrainingResult:
        """Train up to ``config.iterations`` (or until early stopping).

        Args:
            resume: continue from the newest checkpoint in the work folder (if there is one).
            restart: delete existing checkpoints and logs and start over. Without ``resume`` or
                ``restart``, existing checkpoints are an error (nothing is overwritten by accident).
            stop_at: end this session after that many iterations (with a checkpoint), e.g. to fit a
                time slot; a later ``resume`` continues exactly where it stopped.
        """
        previous_threads = torch.get_num_threads()
        try:
            with session(self.config.device) as env:
                torch.set_num_threads(self.config.threads or max(1, physical_cores() // env.local_world_size))
                return self._run(env, resume, restart, stop_at)
        finally:
            torch.set_num_threads(previous_threads)

    def _start(self, env: Distributed, resume: bool, restart: bool, module, trained, optimizer, scaler,
               rng: np.random.Generator) -> _RunState:
        """Clear, or resume from, the work folder's checkpoints."""
        existing = latest_checkpoint(self.checkpoint_dir)
        if existing is not None and restart:
            env.barrier()  # every rank has looked before rank 0 deletes
            if env.is_main:
                n = clear_checkpoints(self.checkpoint_dir)
                self._say(f"restart: removed {n} checkpoint(s) from {self.checkpoint_dir}")
            existing = None
        if existing is not None and not resume:
            raise TrainingError(f"checkpoints exist in {self.checkpoint_dir}: pass resume to continue them or "
                                "restart to discard them")
        if existing is None:
            if resume:
                self._say("no checkpoint to resume from: starting from scratch")
            if env.is_main:  # logs and best weights of a run that ended before its first checkpoint
                best_checkpoint_path(self.checkpoint_dir).unlink(missing_ok=True)
                clear_log(self.work_dir)
            env.barrier()
            return _RunState()
        saved = load_checkpoint(existing)
        self._check_resumable(saved)
        module.load_state_dict(saved["model"])
        if trained is not module:
            trained.heads.load_state_dict(saved["deep_supervision_heads"])
        optimizer.load_state_dict(saved["optimizer"])
        if saved.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(saved["scaler"])
        states = saved.get("random_states") or [saved["random_state"]]  # one per rank; older files: one
        if env.rank < len(states):
            restore_random_state(rng, states[env.rank])
        else:
            self._say(f"note: the checkpoint has random states for {len(states)} process(es); the others start new "
                      "streams")
        start = int(saved["iteration"])
        if saved["config"]["iterations"] != self.config.iterations:
            self._say(f"note: iterations changed {saved['config']['iterations']} -> {self.config.iterations}; "
                      "the cosine schedule is recomputed for the new total")
        self._say(f"resumed from {existing.name} at iteration {start}")
        return _RunState(start, list(saved["losses"]), list(saved.get("validation", [])), float(saved["train_seconds"]),
                         int(saved["sessions"]) + 1, start, bool(saved.get("stopped_early", False)))

    def _run(self, env: Distributed, resume: bool, restart: bool, stop_at: int | None) -> TrainingResult:
        cfg = self.config
        self._say = self.log if env.is_main else (lambda _: None)
        if env.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        rng = seed_everything(cfg.seed, env.rank)
        module = build_network(self.network_name, self.network_args).to(env.device)
        try:  # what the optimiser trains: the network, with deep-supervision heads when asked for
            trained = DeepSupervision(module, cfg.deep_supervision).to(env.device) if cfg.deep_supervision else module
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        optimizer = build_optimizer(trained, cfg.learning_rate, cfg.weight_decay, cfg.optimizer)
        amp = cfg.amp and env.device.type == "cuda"
        scaler = torch.amp.GradScaler(env.device.type, enabled=amp)
        state = self._start(env, resume, restart, module, trained, optimizer, scaler, rng)
        if state.stopped_early or state.iteration >= cfg.iterations:
            self._say(f"already trained {state.iteration} iterations"
                      + (" (stopped early)" if state.stopped_early else f" (>= {cfg.iterations})"))
            state.sessions -= 1
            return self._result(env, module, state, amp)
        if env.enabled:
            self._say(f"distributed: {env.world_size} processes, device {env.device}, batch {cfg.batch_size} per "
                      f"process ({cfg.batch_size * env.world_size} in all)")

        sampler = PatchSampler(self.cases, cfg.foreground_fraction)
        augmenter = Augmenter(cfg.augmentation, cfg.patch_size, self.spacing)
        loss_fn = build_loss(cfg.loss)
        network = env.wrap(trained)
        run_log = RunLog(self.work_dir, state.iteration, cfg.tensorboard, env.is_main, self._say)
        network.train()
        session_start = last_report = time.perf_counter()
        end = cfg.iterations if stop_at is None else max(state.iteration, min(stop_at, cfg.iterations))
        try:
            for iteration in range(state.iteration, end):
                lr = learning_rate(iteration, cfg.iterations, cfg.learning_rate, cfg.warmup_iterations,
                                   cfg.min_lr_ratio)
                set_learning_rate(optimizer, lr)
                batch = self._batch(sampler, augmenter, rng, env.device)
                state.losses.append(self._step(network, trained, optimizer, scaler, loss_fn, batch, env, amp, iteration))
                state.iteration = done = iteration + 1
                if self.progress is not None and env.is_main:
                    self.progress(done, cfg.iterations, state.losses[-1])
                seconds = state.seconds + time.perf_counter() - session_start
                if done % cfg.log_every == 0 or done == cfg.iterations:
                    now = time.perf_counter()
                    recent = float(np.mean(state.losses[-cfg.log_every:]))
                    per_it = (now - last_report) / cfg.log_every
                    last_report = now
                    run_log.training(done, recent, lr, seconds)
                    self._say(f"it {done}/{cfg.iterations} loss {recent:.4f} lr {lr:.2e} {per_it:.2f} s/it "
                              f"elapsed {seconds:.0f} s ETA {format_duration(per_it * (cfg.iterations - done))}")
                if self.validation_cases and (done % cfg.validate_every == 0 or done == cfg.iterations):
                    state.stopped_early = self._validate(module, state, env, amp, run_log, seconds)
                if done % cfg.checkpoint_every == 0 or done == end or state.stopped_early:
                    self._save(env, module, trained, optimizer, scaler, rng, state,
                               state.seconds + time.perf_counter() - session_start)
                if state.stopped_early:
                    break
        finally:
            run_log.close()
        state.seconds += time.perf_counter() - session_start
        return self._result(env, module, state, amp)

    def _batch(self, sampler: PatchSampler, augmenter: Augmenter, rng: np.random.Generator,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for _ in range(self.config.batch_size):
            img, lab = augmenter(rng, *sampler.sample(rng, augmenter.input_size))
            images.append(img)
            labels.append(lab)
        x = torch.from_numpy(np.stack(images)).to(device)
        y = torch.from_numpy(np.stack(labels).astype(np.int64))[:, None].to(device)
        return x, y

    def _step(self, network, trained, optimizer, scaler, loss_fn, batch, env: Distributed, amp: bool,
              iteration: int) -> float:
        """One optimiser step; returns the loss averaged over the ranks."""
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(env.device.type, dtype=torch.float16, enabled=amp):
            logits = network(x)
        if isinstance(logits, list):  # deep supervision
            loss = deep_supervision_loss(loss_fn, logits, y)
        else:
            loss = loss_fn(logits.float(), y)
        mean_loss = env.mean(loss.detach())  # every rank sees the same value, so all stop together
        if not torch.isfinite(mean_loss):
            raise TrainingError(f"loss is {mean_loss.item()} at iteration {iteration + 1}")
        scaler.scale(loss).backward()
        if self.config.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trained.parameters(), self.config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        return float(mean_loss)

    def _validate(self, module, state: _RunState, env: Distributed, amp: bool, run_log: RunLog,
                  seconds: float) -> bool:
        """Validate, keep the best weights in ``best.pt``; return whether to stop early."""
        start = time.perf_counter()
        dice = validation_dice(module, self.validation_cases, self.config.patch_size, self.label_names, env, amp,
                               self.config.validation_padding)
        module.train()
        entry = record(state.iteration, dice)
        state.validation.append(entry)
        best = best_record(state.validation)
        if best is entry and env.is_main:
            best_state = {"format": CHECKPOINT_FORMAT, "iteration": state.iteration, "validation": entry,
                          "network": {"name": self.network_name, "args": self.network_args},
                          "model": module.state_dict()}
            write_atomically(best_state, best_checkpoint_path(self.checkpoint_dir))
        env.barrier()
        run_log.validation(entry, seconds)
        self._say(f"validation at it {state.iteration}: Dice " + ", ".join(f"{k} {v:.4f}" for k, v in dice.items())
                  + f" (mean {entry['mean_dice']:.4f}); best {best['mean_dice']:.4f} at it {best['iteration']} "
                  f"[{time.perf_counter() - start:.1f} s]")
        stop = should_stop(state.validation, self.config.early_stopping_patience)
        if stop:
            self._say(f"early stopping: no better mean validation Dice in {self.config.early_stopping_patience} "
                      f"validations")
        return stop

    def _save(self, env: Distributed, module, trained, optimizer, scaler, rng, state: _RunState,
              seconds: float) -> None:
        random_states = env.gather(random_state(rng))
        if env.is_main:
            save_checkpoint(self.checkpoint_dir, state.iteration, {
                "format": CHECKPOINT_FORMAT,
                "iteration": state.iteration,
                "network": {"name": self.network_name, "args": self.network_args},
                "config": self.config.as_dict(),
                "model": module.state_dict(),
                **({"deep_supervision_heads": trained.heads.state_dict()} if trained is not module else {}),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "random_states": random_states,
                "losses": list(state.losses),
                "validation": list(state.validation),
                "stopped_early": state.stopped_early,
                "train_seconds": seconds,
                "sessions": state.sessions,
            }, self.config.keep_checkpoints)
        env.barrier()

    def _result(self, env: Distributed, module, state: _RunState, amp: bool) -> TrainingResult:
        """The result, with the best validation weights loaded when there are any."""
        best_path = best_checkpoint_path(self.checkpoint_dir)
        is_best = bool(state.validation) and best_path.exists()
        if is_best:
            module.load_state_dict(load_checkpoint(best_path)["model"])
        return TrainingResult(module.eval().cpu(), state.iteration, state.losses, state.seconds, state.sessions,
                              state.resumed_from, state.validation, is_best, state.stopped_early, str(env.device), amp)
