"""AdamW with a linear warm-up and a cosine decay, as a pure function of the iteration.

The learning rate is computed from the iteration number alone, so a resumed run continues the
schedule exactly without any scheduler state.
"""

from __future__ import annotations

import math

import torch


def learning_rate(iteration: int, total: int, base_lr: float, warmup: int = 0, min_ratio: float = 0.01) -> float:
    """Learning rate for (0-based) ``iteration`` of ``total``.

    Example:
        >>> [round(learning_rate(i, 10, 1.0, warmup=2, min_ratio=0.0), 3) for i in (0, 1, 2, 9)]
        [0.5, 1.0, 1.0, 0.0]
    """
    if warmup and iteration < warmup:
        return base_lr * (iteration + 1) / warmup
    span = max(1, total - warmup - 1)  # the last iteration reaches min_ratio
    progress = min(1.0, (iteration - warmup) / span)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_optimizer(network: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; normalisation parameters and biases get no weight decay."""
    decay, no_decay = [], []
    for name, p in network.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
