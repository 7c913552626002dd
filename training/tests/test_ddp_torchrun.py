"""Distributed training for real: ``torchrun --standalone --nproc_per_node 2`` on the CPU (Gloo),
one thread per process, a few iterations of the tiny network (see ddp_worker.py).

Marked slow: starting two processes that import torch and MONAI takes 20-35 s on a busy 2-core
machine (deselect with ``-m "not slow"``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsegai_training.checkpoint import list_checkpoints, load_checkpoint
from medsegai_training.run_log import read_log

HERE = Path(__file__).resolve().parent
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.slow
def test_two_processes_train_checkpoint_once_and_resume(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(HERE / "ddp_worker.py"),
                           str(run), "4", "6"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    for session in ("first", "resumed", "uninterrupted"):
        a, b = ranks[0][session], ranks[1][session]
        assert a["weights_sha256"] == b["weights_sha256"]  # DDP keeps the replicas identical
        assert a["losses"] == b["losses"]  # the logged loss is the mean over the ranks
        assert a["first_batch_sha256"] != b["first_batch_sha256"]  # each rank draws its own patches
        assert a["log_lines"] and not b["log_lines"]  # only rank 0 logs
        assert a["network_is_best"]
    first, resumed = ranks[0]["first"], ranks[0]["resumed"]
    assert first["iterations"] == 4 and resumed["iterations"] == 6
    assert resumed["resumed_from"] == 4 and resumed["sessions"] == 2 and resumed["losses"][:4] == first["losses"]
    assert "resumed from checkpoint-0000004.pt at iteration 4" in resumed["log_lines"][0]
    assert any(line.startswith("distributed: 2 processes, device cpu") for line in first["log_lines"])
    # every rank's random stream travelled with the checkpoint: resuming changed nothing
    np.testing.assert_allclose(resumed["losses"], ranks[0]["uninterrupted"]["losses"], rtol=1e-5)

    # rank 0 alone wrote one set of checkpoints and one log, without duplicate lines
    assert [n for n, _ in list_checkpoints(run / "checkpoints")] == [4, 6]
    saved = load_checkpoint(run / "checkpoints" / "checkpoint-0000006.pt")
    assert len(saved["random_states"]) == 2 and len(saved["validation"]) == 3
    assert (run / "checkpoints" / "best.pt").exists()
    log = read_log(run / "train_log.jsonl")
    assert [r["iteration"] for r in log if "loss" in r] == [2, 4, 6]
    assert [r["iteration"] for r in log if "val_dice" in r] == [2, 4, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0.json", "rank1.json", "run", "run-uninterrupted"]
