"""Run by ``torchrun`` in test_ddp_torchrun.py: train the tiny network on the synthetic case in two
sessions in WORK_DIR -- up to ``STOP_AT`` iterations, then, with a new trainer that knows only the
files on disk, resumed up to ``ITERATIONS`` -- and uninterrupted in ``WORK_DIR-uninterrupted``.
All in one launch (starting the processes costs more than this training), so the worker holds
the process group around the three sessions: a default process group cannot be reliably set up
twice in one torchrun process.

    torchrun --standalone --nproc_per_node 2 ddp_worker.py WORK_DIR STOP_AT ITERATIONS

Each rank writes ``rank<r>.json`` next to WORK_DIR: per session the result (iterations, losses,
weight checksum, ...), the checksum of its first training batch and the lines it was given to log.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from medsegai_training.distributed import session
from training_support import make_trainer, tiny_case, tiny_config


def sha256(arrays) -> str:
    return hashlib.sha256(b"".join(a.numpy().tobytes() for a in arrays)).hexdigest()


def train(work_dir: Path, iterations: int, stop_at: int | None, resume: bool) -> dict:
    validation = tiny_case(1).prepared
    config = tiny_config(iterations=iterations, checkpoint_every=2, log_every=2, validate_every=2, threads=1,
                         device="cpu", tensorboard=False)
    lines: list[str] = []
    trainer = make_trainer(tiny_case(), work_dir, config, lines, validation_cases=[(validation.image, validation.labels)])
    batches: list[str] = []
    draw = trainer._batch

    def recorded_batch(*args):
        x, y = draw(*args)
        batches.append(sha256([x, y]))
        return x, y

    trainer._batch = recorded_batch
    result = trainer.run(resume=resume, stop_at=stop_at)
    return {"iterations": result.iterations, "losses": result.losses, "sessions": result.sessions,
            "resumed_from": result.resumed_from, "validations": len(result.validation),
            "network_is_best": result.network_is_best, "weights_sha256": sha256(result.network.state_dict().values()),
            "first_batch_sha256": batches[0], "log_lines": lines}


def main() -> None:
    work_dir, stop_at, iterations = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    with session("cpu"):
        report = {"rank": int(os.environ["RANK"]), "world_size": int(os.environ["WORLD_SIZE"]),
                  "first": train(work_dir, iterations, stop_at, resume=False),
                  "resumed": train(work_dir, iterations, None, resume=True),
                  "uninterrupted": train(work_dir.with_name(work_dir.name + "-uninterrupted"), iterations, None,
                                         resume=False)}
    (work_dir.parent / f"rank{report['rank']}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
