"""Trainer features beyond the basic loop: validation with best weights and early stopping, losses
and optimisers, TensorBoard, devices, per-rank seeds, resuming checkpoints of older versions."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from medsegai_training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from medsegai_training.config import TrainConfig
from medsegai_training.distributed import Distributed, select_device
from medsegai_training.run_log import RunLog, read_log
from medsegai_training.schedule import build_optimizer
from medsegai_training.seeding import seed_everything
from medsegai_training.validation import validation_dice
from training_support import make_trainer, tiny_case, tiny_config

NAMES = {1: "bright blob", 2: "dark blob"}


@pytest.fixture(scope="module")
def cases():
    train, held_out = tiny_case(0), tiny_case(1)
    return train, [(held_out.prepared.image, held_out.prepared.labels)]


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_validation_keeps_the_best_weights_and_returns_them(cases, tmp_path):
    train, validation = cases
    lines: list[str] = []
    result = make_trainer(train, tmp_path, tiny_config(iterations=24, validate_every=6, checkpoint_every=12), lines,
                          validation_cases=validation, label_names=NAMES).run()
    assert [v["iteration"] for v in result.validation] == [6, 12, 18, 24]
    assert all(set(v["dice"]) == {"bright blob", "dark blob"} for v in result.validation)
    assert result.best_validation_dice == max(v["mean_dice"] for v in result.validation)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["iteration"] == result.best_validation_iteration and best["validation"] == result.best_validation
    assert result.network_is_best and state_equal(result.network.state_dict(), best["model"])
    last = load_checkpoint(tmp_path / "checkpoints" / "checkpoint-0000024.pt")
    if result.best_validation_iteration != 24:
        assert not state_equal(result.network.state_dict(), last["model"])
    assert last["validation"] == result.validation and not result.stopped_early
    assert result.device == "cpu" and not result.mixed_precision  # amp is on by default, used on CUDA only
    assert any(x.startswith("validation at it 12: Dice bright blob ") for x in lines)
    log = read_log(tmp_path / "train_log.jsonl")
    assert [r["iteration"] for r in log if "val_dice" in r] == [6, 12, 18, 24]

    # the same Dice, recomputed from the returned network
    dice = validation_dice(result.network, validation, (16, 16, 8), NAMES, Distributed())
    assert dice == pytest.approx(result.best_validation["dice"], abs=1e-5)


class WindowMeanAboveHalf(torch.nn.Module):
    """Labels every voxel 1 where its window's mean intensity is above 0.5: what padding adds to a
    window changes the answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True).expand(-1, 1, *x.shape[2:])
        return torch.cat([0.5 - mean, mean - 0.5], 1)


def test_validation_pads_a_volume_smaller_than_the_patch_as_the_card_will():
    case = [(np.ones((1, 8, 8, 4), dtype=np.float32), np.ones((8, 8, 4), dtype=np.uint8))]
    dice = {padding: validation_dice(WindowMeanAboveHalf(), case, (16, 16, 8), {1: "all"}, Distributed(),
                                     padding=padding)["all"] for padding in ("constant", "replicate")}
    assert dice == {"constant": 0.0, "replicate": 1.0}  # zeros bring the mean to 1/8
    with pytest.raises(ValueError, match="unknown validation_padding 'reflect'"):
        TrainConfig(validation_padding="reflect")


def test_early_stopping_and_resuming_a_stopped_run(cases, tmp_path):
    """With a learning rate of 0 the network never improves: the first validation stays the best
    and training stops after ``patience`` more validations."""
    train, validation = cases
    config = tiny_config(iterations=40, learning_rate=0.0, validate_every=3, early_stopping_patience=2,
                         checkpoint_every=100)
    lines: list[str] = []
    result = make_trainer(train, tmp_path, config, lines, validation_cases=validation).run()
    assert result.stopped_early and result.iterations == 9 and len(result.losses) == 9
    assert result.best_validation_iteration == 3 and result.network_is_best
    assert [n for n, _ in list_checkpoints(tmp_path / "checkpoints")] == [9]  # saved where it stopped
    assert any(x.startswith("early stopping: no better mean validation Dice in 2 validations") for x in lines)

    lines.clear()
    again = make_trainer(train, tmp_path, config, lines, validation_cases=validation).run(resume=True)
    assert again.stopped_early and again.iterations == 9 and again.best_validation_iteration == 3
    assert "already trained 9 iterations (stopped early)" in lines


def test_a_fresh_start_clears_what_a_run_without_checkpoints_left(cases, tmp_path):
    """A run that ended before its first checkpoint leaves best.pt and logs, never reused."""
    train, validation = cases
    config = tiny_config(iterations=4, validate_every=2, checkpoint_every=100)
    make_trainer(train, tmp_path, config, validation_cases=validation).run()
    (tmp_path / "checkpoints" / "checkpoint-0000004.pt").unlink()  # as if it had crashed before saving
    result = make_trainer(train, tmp_path, tiny_config(iterations=1, checkpoint_every=100)).run()
    assert not (tmp_path / "checkpoints" / "best.pt").exists() and not result.network_is_best
    assert [r["iteration"] for r in read_log(tmp_path / "train_log.jsonl")] == [1]


@pytest.mark.parametrize("loss,optimizer", [("dice_focal", "sgd"), ("dice_ce", "sgd"), ("dice_focal", "adamw")])
def test_losses_and_optimizers(cases, tmp_path, loss, optimizer):
    result = make_trainer(cases[0], tmp_path, tiny_config(iterations=3, loss=loss, optimizer=optimizer,
                                                          tensorboard=False)).run()
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))
    assert load_checkpoint(tmp_path / "checkpoints" / "checkpoint-0000003.pt")["config"]["loss"] == loss


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        TrainConfig(loss="dice")
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="unknown device"):
        TrainConfig(device="gpu")
    sgd = build_optimizer(torch.nn.Conv3d(1, 2, 3), 0.01, 1e-4, "sgd")
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.99 and sgd.defaults["nesterov"]
    assert [g["weight_decay"] for g in sgd.param_groups] == [1e-4, 0.0]  # no decay on the bias


def test_tensorboard_scalars(cases, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_trainer(cases[0], tmp_path, tiny_config(iterations=4, log_every=2, validate_every=4),
                 validation_cases=cases[1], label_names=NAMES).run()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"train/loss", "train/lr", "val/dice/bright_blob", "val/dice/dark_blob", "val/mean_dice"}
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]


def test_without_tensorboard_a_line_says_so(cases, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    lines: list[str] = []
    make_trainer(cases[0], tmp_path, tiny_config(iterations=2), lines).run()
    assert any("TensorBoard logging is off: the tensorboard package is not installed" in x for x in lines)
    assert not (tmp_path / "tensorboard").exists() and (tmp_path / "train_log.jsonl").exists()


def test_run_log_drops_lines_after_the_checkpoint_it_resumes_from(tmp_path):
    (tmp_path / "train_log.jsonl").write_text("".join(f'{{"iteration": {i}, "loss": 1.0}}\n' for i in (5, 10, 15)))
    run_log = RunLog(tmp_path, 10, tensorboard=False)
    run_log.training(15, 0.5, 1e-3, 2.0)
    run_log.close()
    assert [(r["iteration"], r["loss"]) for r in read_log(tmp_path / "train_log.jsonl")] == [(5, 1.0), (10, 1.0),
                                                                                             (15, 0.5)]
    RunLog(tmp_path, 0, tensorboard=False, enabled=False).training(20, 0.1, 1e-3, 3.0)  # other ranks: nothing
    assert len(read_log(tmp_path / "train_log.jsonl")) == 3


def test_device_selection(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError):
        select_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        select_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert select_device("auto", local_rank=3) == torch.device("cuda", 1)


def test_each_rank_has_its_own_random_stream():
    single = np.random.default_rng(5).random(4)
    np.testing.assert_array_equal(seed_everything(5, rank=0).random(4), single)  # rank 0 = a single process
    assert not np.allclose(seed_everything(5, rank=1).random(4), single)
    np.testing.assert_array_equal(seed_everything(5, rank=1).random(4), seed_everything(5, rank=1).random(4))


def test_checkpoints_of_the_previous_version_resume(cases, tmp_path):
    """Checkpoints written before the new settings existed (and with one random state) resume."""
    config = tiny_config(iterations=6, tensorboard=False)
    make_trainer(cases[0], tmp_path, config).run(stop_at=3)
    path = tmp_path / "checkpoints" / "checkpoint-0000003.pt"
    old = load_checkpoint(path)
    for key in ("loss", "optimizer", "device", "amp", "validate_every", "early_stopping_patience", "tensorboard"):
        del old["config"][key]
    old["random_state"] = old.pop("random_states")[0]
    for key in ("scaler", "validation", "stopped_early"):
        del old[key]
    save_checkpoint(tmp_path / "checkpoints", 3, old)
    result = make_trainer(cases[0], tmp_path, config).run(resume=True)
    assert result.iterations == 6 and result.resumed_from == 3
    assert not result.network_is_best and result.validation == []
