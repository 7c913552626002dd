"""Fixed seeds, one random stream per process, and random states that travel with checkpoints.

All data randomness (patch positions, augmentation) comes from one ``numpy.random.Generator``
owned by the trainer, so saving its state in a checkpoint makes a resumed run draw exactly the
patches the uninterrupted run would have drawn. In distributed training every rank has its own
streams, derived from ``(seed, rank)``, so the ranks draw different patches; rank 0's are those
of a single-process run with the same seed.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rank_seed(seed: int, rank: int = 0) -> int:
    """``seed`` for rank 0, an independent seed derived from ``(seed, rank)`` for the others.

    Example:
        >>> rank_seed(7, 0), rank_seed(7, 1) == rank_seed(7, 1), rank_seed(7, 1) != rank_seed(7, 2)
        (7, True, True)
    """
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def seed_everything(seed: int, rank: int = 0) -> np.random.Generator:
    """Seed Python, NumPy's legacy global state and torch with this rank's seed; return the
    generator for data sampling. (Distributed training copies rank 0's initial weights to all
    ranks, so the ranks' different torch seeds do not give them different networks.)"""
    own = rank_seed(seed, rank)
    random.seed(own)
    np.random.seed(own % 2**32)
    torch.manual_seed(own)
    return np.random.default_rng(own)


def random_state(rng: np.random.Generator) -> dict:
    """Everything needed to continue the random streams (checkpoint-safe: plain types and tensors)."""
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def restore_random_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
