"""Deep supervision for U-Nets in training: nnU-Net's loss on the upper decoder stages too.

A U-Net has to place small structures (hippocampus, pallidum) from a single full-resolution output,
and early in training the gradient that reaches its deep stages through that output is weak. nnU-Net
therefore adds a 1x1x1 convolution ("head") to each upper decoder stage and a loss on each, against
the labels at that stage's resolution, with weights halving per stage. The brain-structure U-Net
without it was still at loss 1.56 after 100 iterations where DeepLabv3+, whose output is a quarter
resolution map upsampled, was at 0.83. With it, at 600 iterations, the U-Net's mean Dice on Colin27
did not change (0.239 against 0.241), but it found other structures: hippocampus, amygdala and
pallidum instead of caudate and putamen. Both U-Nets were still under-trained: on their own training
image they scored 0.36 and 0.26.

The heads exist only here: the wrapped network is unchanged, so its weights export to an ordinary
bundle and inference never sees the heads (MONAI's ``DynUNet`` instead puts them into the network).

Example:
    >>> from MedSegAILib.networks import build_network
    >>> unet = build_network("unet", {"in_channels": 1, "out_channels": 3, "filters": [8, 16, 32, 64],
    ...                               "strides": [1, 2, 2, 2]})
    >>> outputs = DeepSupervision(unet, levels=2)(torch.zeros(1, 1, 16, 16, 16))
    >>> [tuple(o.shape[2:]) for o in outputs]
    [(16, 16, 16), (8, 8, 8), (4, 4, 4)]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DeepSupervision(nn.Module):
    """``network``'s logits and, in the same forward, those of 1x1 heads on its ``levels`` decoder
    stages below the output, highest resolution first.

    Args:
        network: a U-Net with MONAI's ``DynUNet`` module layout (``upsamples``, each with a
            ``conv_block.conv2.conv``): MedSegAI's ``unet`` and MONAI's ``DynUNet``.
        levels: decoder stages to supervise besides the output (at most the decoder's stages - 1).
    """

    def __init__(self, network: nn.Module, levels: int) -> None:
        super().__init__()
        upsamples = getattr(network, "upsamples", None)
        if upsamples is None:
            raise ValueError(f"deep supervision needs a U-Net with decoder stages; {type(network).__name__} has none")
        if not 1 <= levels < len(upsamples):
            raise ValueError(f"deep supervision levels must be 1 to {len(upsamples) - 1} for this U-Net, got {levels}")
        self.network = network
        # upsamples run deepest first; the last one feeds the output, the ones before it are supervised
        self._stages = [upsamples[len(upsamples) - 1 - level] for level in range(1, levels + 1)]
        classes = network.output_block.conv.conv.out_channels
        dims = 3 if isinstance(self._stages[0].conv_block.conv2.conv, nn.Conv3d) else 2
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.heads = nn.ModuleList(conv(stage.conv_block.conv2.conv.out_channels, classes, 1) for stage in self._stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: dict[int, torch.Tensor] = {}
        hooks = [stage.register_forward_hook(lambda _m, _i, out, k=k: features.__setitem__(k, out))
                 for k, stage in enumerate(self._stages)]
        try:
            logits = self.network(x)
        finally:
            for hook in hooks:
                hook.remove()
        return [logits, *(head(features[k]) for k, head in enumerate(self.heads))]


def level_weights(levels: int) -> list[float]:
    """nnU-Net's loss weights: halving per stage, the output's first, summing to 1."""
    raw = [0.5 ** level for level in range(levels + 1)]
    return [w / sum(raw) for w in raw]


def deep_supervision_loss(loss_fn, outputs: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """``loss_fn`` on every output against ``labels`` (``(B, 1, ...)`` integers) taken to that
    output's size by nearest neighbour, weighted by :func:`level_weights`."""
    total = outputs[0].new_zeros(())
    for weight, logits in zip(level_weights(len(outputs) - 1), outputs):
        target = labels if logits.shape[2:] == labels.shape[2:] else \
            F.interpolate(labels.float(), size=logits.shape[2:], mode="nearest").long()
        total = total + weight * loss_fn(logits.float(), target)
    return total
