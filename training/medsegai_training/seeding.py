"""Fixed seeds, and random states that travel with checkpoints.

All data randomness (patch positions, augmentation) comes from one ``numpy.random.Generator``
owned by the trainer, so saving its state in a checkpoint makes a resumed run draw exactly the
patches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy's legacy global state and torch; return the generator for data sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def random_state(rng: np.random.Generator) -> dict:
    """Everything needed to continue the random streams (checkpoint-safe: plain types and tensors)."""
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def restore_random_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
