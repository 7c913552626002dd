"""A classical, non-learned baseline: label voxels by intensity windows.

It has no trainable weights (the windows are stored as a buffer, so the bundle format and the
whole pipeline apply unchanged). It serves as a sanity baseline -- e.g. air or bone by HU -- and
as an exactly predictable model for pipeline and geometry tests.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .registry import register_network


class IntensityWindowClassifier(torch.nn.Module):
    """Logit of label ``c`` is ``sharpness * min(x - low_c, high_c - x)``; background's is 0.

    So a voxel gets the label whose window holds it most deeply, or background.

    Example:
        >>> net = IntensityWindowClassifier([[0.5, 1.5]])
        >>> net(torch.tensor([0.0, 1.0]).reshape(1, 1, 2, 1, 1)).argmax(1).flatten().tolist()
        [0, 1]
    """

    def __init__(self, windows: Sequence[Sequence[float]], sharpness: float = 10.0, channel: int = 0) -> None:
        super().__init__()
        self.channel = int(channel)
        w = torch.as_tensor(windows, dtype=torch.float32)
        if w.ndim != 2 or w.shape[1] != 2 or (w[:, 0] >= w[:, 1]).any():
            raise ValueError("windows must be [[low, high], ...] with low < high")
        self.register_buffer("windows", w)
        self.sharpness = float(sharpness)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.windows[:, 0].view(1, -1, 1, 1, 1)
        high = self.windows[:, 1].view(1, -1, 1, 1, 1)
        value = x[:, self.channel:self.channel + 1]
        margin = torch.minimum(value - low, high - value) * self.sharpness
        return torch.cat([torch.zeros_like(value), margin], dim=1)


@register_network("intensity_window")
def build_intensity_window(in_channels: int, out_channels: int, windows: Sequence[Sequence[float]],
                           sharpness: float = 10.0, channel: int = 0) -> torch.nn.Module:
    """``channel`` selects which input (modality) the windows apply to."""
    if not 0 <= channel < in_channels or out_channels != len(windows) + 1:
        raise ValueError("intensity_window needs 0 <= channel < in_channels and outputs background + one channel "
                         "per window")
    return IntensityWindowClassifier(windows, sharpness, channel)
