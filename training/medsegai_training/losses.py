"""Training losses, by name: ``dice_ce`` (default) and ``dice_focal`` (MONAI).

Both take logits ``(B, C, X, Y, Z)`` and integer labels ``(B, 1, X, Y, Z)``; Dice is the batch
Dice over the foreground labels (background excluded), computed after a softmax.
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss, DiceFocalLoss

LOSSES = {
    "dice_ce": "Dice + cross-entropy (MONAI DiceCELoss: softmax batch Dice over the foreground labels, "
               "cross-entropy over all classes)",
    "dice_focal": "Dice + focal (MONAI DiceFocalLoss: softmax batch Dice and sigmoid focal loss, gamma 2, "
                  "over the foreground labels)",
}


def build_loss(name: str) -> torch.nn.Module:
    """The loss called ``name`` (a key of :data:`LOSSES`)."""
    if name == "dice_ce":
        return DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
    if name == "dice_focal":
        return DiceFocalLoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
    raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
