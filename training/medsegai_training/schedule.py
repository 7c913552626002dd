"""Optimisers (AdamW, or SGD with Nesterov momentum as in nnU-Net) and a linear warm-up followed by
a cosine decay, as a pure function of the iteration.

The learning rate is computed from the iteration number alone, so a resumed run continues the
schedule exactly without any scheduler state.
"""

from __future__ import annotations

import math

import torch

OPTIMIZERS = ("adamw", "sgd")
SGD_MOMENTUM = 0.99  # nnU-Net's value, with Nesterov momentum


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


def build_optimizer(network: torch.nn.Module, lr: float, weight_decay: float,
                    name: str = "adamw") -> torch.optim.Optimizer:
    """AdamW (``"adamw"``) or SGD with Nesterov momentum 0.99 (``"sgd"``, nnU-Net's choice; it
    usually wants a larger learning rate, about 1e-2). Normalisation parameters and biases get no
    weight decay."""
    decay, no_decay = [], []
    for p in network.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=SGD_MOMENTUM, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
