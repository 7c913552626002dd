"""Validation during training: Dice per label on the model grid, and the early-stopping rule.

Each validation case is segmented whole with the core's sliding window, as at inference (the
training patch, overlap 0.25, Gaussian blending). Dice is pooled over the validation cases, per label: 2 * sum(TP) /
(sum(predicted) + sum(reference)) -- nnU-Net's "pseudo Dice" -- and 1.0 for a label that is
neither in the references nor predicted. In distributed training each rank segments its share of
the cases and the voxel counts are summed over the ranks.

A validation is recorded as ``{"iteration": n, "dice": {label name: Dice}, "mean_dice": m}``; the
best one has the highest mean Dice (the earliest on ties).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from MedSegAILib.sliding_window import sliding_window_inference

from .distributed import Distributed

OVERLAP = 0.25


def validation_dice(network: torch.nn.Module, cases: Sequence[tuple[np.ndarray, np.ndarray]],
                    patch_size: Sequence[int], labels: Mapping[int, str], env: Distributed,
                    amp: bool = False, padding: str = "constant") -> dict[str, float]:
    """Pooled Dice of every label (value -> name) over ``cases`` (``(image (C, X, Y, Z), labels
    (X, Y, Z))``), padded where smaller than the patch as the card's ``inference.padding`` says.
    ``network`` is the bare module (not the DDP wrapper): ranks may run different numbers of forward
    passes. Leaves the network in eval mode."""
    values = list(labels)
    counts = torch.zeros(len(values), 3, dtype=torch.int64, device=env.device)  # overlap, predicted, reference
    network.eval()
    with torch.no_grad(), torch.autocast(env.device.type, dtype=torch.float16, enabled=amp):
        for image, reference in cases[env.rank::env.world_size]:
            x = torch.from_numpy(np.ascontiguousarray(image))[None].to(env.device)
            logits = sliding_window_inference(x, tuple(patch_size), network, overlap=OVERLAP, blending="gaussian",
                                                padding=padding)
            predicted = logits.argmax(1)[0]
            target = torch.from_numpy(reference.astype(np.int64)).to(env.device)
            for n, value in enumerate(values):
                p, r = predicted == value, target == value
                counts[n, 0] += (p & r).sum()
                counts[n, 1] += p.sum()
                counts[n, 2] += r.sum()
    overlap, predicted, reference = env.sum(counts).cpu().double().unbind(1)
    total = predicted + reference
    return {labels[v]: 1.0 if total[n] == 0 else float(2 * overlap[n] / total[n]) for n, v in enumerate(values)}


def record(iteration: int, dice: Mapping[str, float]) -> dict:
    """A validation record (plain types, checkpoint- and JSON-safe)."""
    return {"iteration": int(iteration), "dice": {k: round(float(v), 6) for k, v in dice.items()},
            "mean_dice": round(float(np.mean(list(dice.values()))), 6)}


def best_record(history: Sequence[dict]) -> dict | None:
    """The validation with the highest mean Dice (the earliest of equals); None without validations."""
    best = None
    for entry in history:
        if best is None or entry["mean_dice"] > best["mean_dice"]:
            best = entry
    return best


def should_stop(history: Sequence[dict], patience: int) -> bool:
    """Early stopping: ``patience`` validations in a row without a better mean Dice (0: never).

    Example:
        >>> h = [record(10, {"a": 0.5}), record(20, {"a": 0.6}), record(30, {"a": 0.6}), record(40, {"a": 0.55})]
        >>> should_stop(h, 2), should_stop(h, 3), should_stop(h, 0)
        (True, False, False)
    """
    best = best_record(history)
    if not patience or best is None:
        return False
    since = next(len(history) - 1 - i for i, entry in enumerate(history) if entry is best)
    return since >= patience
