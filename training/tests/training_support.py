"""A tiny synthetic case, network, card and configuration shared by the trainer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from MedSegAILib.bundle import parse_card
from MedSegAILib.geometry import compose_ijk_to_ras
from MedSegAILib.image import Volume
from medsegai_training.augmentation import AugmentationConfig
from medsegai_training.data import LabelMapping, LoadedCase, case_from_volumes
from medsegai_training.export import label_entry
from medsegai_training.trainer import TrainConfig, Trainer

TINY_NETWORK = {"name": "unet", "args": {"in_channels": 1, "out_channels": 3, "filters": [4, 8, 16],
                                         "strides": [[1, 1, 1], [2, 2, 1], [2, 2, 2]]}}
TINY_CARD = {
    "format_version": 1,
    "id": "test-tiny-trained",
    "version": "0.0.1",
    "title": "Tiny model trained on synthetic data (tests only)",
    "description": "Trained for a few iterations on a synthetic volume by the training smoke test.",
    "modality": "CT",
    "inputs": [{"name": "CT", "modality": "CT"}],
    "labels": [label_entry(1, "bright blob", (255, 0, 0), ("SCT", "113197003", "Rib")),
               label_entry(2, "dark blob", (0, 0, 255), ("SCT", "39607008", "Lung"), ("SCT", "7771000", "Left"))],
    "network": TINY_NETWORK,
    "preprocessing": {"target_spacing": [2.0, 2.0, 5.0], "normalization": {"type": "ct_window", "window": [-1000, 1000]}},
    "inference": {"patch_size": [16, 16, 8], "overlap": 0.25},
    "license": {"name": "Apache-2.0"},
    "files": {"weights": "weights.safetensors"},
}


def synthetic_case(seed: int = 0):
    """A 32 x 28 x 12 'CT' on an LPS-oriented grid: air, a soft-tissue body, a bright blob (source
    value 10 -> model label 1) on one side and a dark blob (source value 20 -> label 2) on the other."""
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[0:12, 0:28, 0:32]
    ct = np.full((12, 28, 32), -1000.0, dtype=np.float32)
    body = ((i - 16) / 13.0) ** 2 + ((j - 14) / 11.0) ** 2 <= 1
    ct[body] = 40.0
    bright = ((i - 10) / 4.0) ** 2 + ((j - 14) / 4.0) ** 2 + ((k - 6) / 3.0) ** 2 <= 1
    dark = ((i - 22) / 4.5) ** 2 + ((j - 13) / 5.0) ** 2 + ((k - 5) / 3.5) ** 2 <= 1
    ct[bright] = 600.0
    ct[dark] = -700.0
    ct += rng.normal(0, 20, ct.shape).astype(np.float32)
    labels = np.zeros(ct.shape, dtype=np.uint8)
    labels[bright] = 10
    labels[dark] = 20
    labels[body & ~bright & ~dark & (i > 28)] = 30  # a source label the model does not learn
    ijk_to_ras = compose_ijk_to_ras((2.0, 2.0, 5.0), np.diag([-1.0, -1.0, 1.0]), (30.0, 20.0, -40.0))
    return Volume(ct, ijk_to_ras), Volume(labels, ijk_to_ras)


def tiny_config(**changes) -> TrainConfig:
    base = dict(iterations=40, batch_size=2, patch_size=(16, 16, 8), learning_rate=1e-2, warmup_iterations=4,
                checkpoint_every=10, log_every=5, threads=1, seed=3,
                augmentation=AugmentationConfig(affine_probability=0.5, noise_probability=0.5))
    base.update(changes)
    return TrainConfig(**base)


def make_trainer(case, work_dir: Path, config: TrainConfig, lines: list | None = None, **trainer_args) -> Trainer:
    """A trainer of the tiny network on ``case``; log lines go to ``lines`` (when given)."""
    return Trainer(TINY_NETWORK["name"], TINY_NETWORK["args"], [(case.prepared.image, case.prepared.labels)],
                   case.model_spacing, config, work_dir, log=(lines.append if lines is not None else lambda _: None),
                   **trainer_args)


def tiny_case(seed: int = 0) -> LoadedCase:
    """:func:`synthetic_case` prepared with the tiny card's preprocessing."""
    volume, labels = synthetic_case(seed)
    card = parse_card(TINY_CARD, "tiny card")
    return case_from_volumes(f"synthetic{seed}", [volume], labels, LabelMapping({10: 1, 20: 2}), card.preprocessing)
