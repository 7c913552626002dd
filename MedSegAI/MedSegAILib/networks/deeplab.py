"""DeepLabv3+ in 3D (Chen et al. 2018) on MONAI blocks.

Encoder: a residual stem and residual stages; stages beyond the output stride keep their
resolution and use atrous (dilated) convolutions instead. ASPP: a 1x1 branch, one 3x3 branch per
atrous rate and an image-pooling branch. Decoder: ASPP features upsampled to the low-level
resolution, concatenated with projected low-level features (the skip), refined and upsampled to
the input size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit

from .registry import register_network

_NORM = ("instance", {"affine": True})
_ACT = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1) -> Convolution:
    return Convolution(3, cin, cout, strides=stride, kernel_size=kernel, dilation=dilation, norm=_NORM, act=_ACT)


class ASPP3D(torch.nn.Module):
    """Atrous spatial pyramid pooling with image pooling."""

    def __init__(self, in_channels: int, out_channels: int, rates: Sequence[int]) -> None:
        super().__init__()
        self.branches = torch.nn.ModuleList(
            [_conv(in_channels, out_channels, kernel=1)] + [_conv(in_channels, out_channels, dilation=r) for r in rates])
        # image pooling: global context; no norm, since a 1x1x1 map has no spatial statistics
        self.pool_proj = Convolution(3, in_channels, out_channels, kernel_size=1, act=_ACT, norm=None)
        self.project = _conv(out_channels * (len(rates) + 2), out_channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [branch(x) for branch in self.branches]
        pooled = self.pool_proj(F.adaptive_avg_pool3d(x, 1))
        feats.append(pooled.expand(-1, -1, *x.shape[2:]))
        return self.project(torch.cat(feats, dim=1))


class DeepLabV3Plus3D(torch.nn.Module):
    """3D DeepLabv3+.

    Args:
        in_channels: input channels (modalities).
        out_channels: classes including background.
        channels: channels of the stem and of each encoder stage.
        output_stride: total downsampling of the encoder (4, 8 or 16); later stages dilate instead.
        low_level_stage: index in ``channels`` of the stage whose output feeds the decoder skip.
        atrous_rates: dilation rates of the ASPP 3x3 branches.
        aspp_channels: channels of each ASPP branch and of the decoder.
        low_level_channels: channels the low-level skip is projected to.

    Example:
        >>> net = DeepLabV3Plus3D(1, 3, channels=(8, 16, 32, 32), atrous_rates=(1, 2, 3))
        >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        output_stride: int = 8,
        low_level_stage: int = 1,
        atrous_rates: Sequence[int] = (1, 2, 3),
        aspp_channels: int = 64,
        low_level_channels: int = 24,
    ) -> None:
        super().__init__()
        if output_stride not in (4, 8, 16):
            raise ValueError("output_stride must be 4, 8 or 16")
        if not 0 < low_level_stage < len(channels) - 1:
            raise ValueError("low_level_stage must be an intermediate stage index")
        self.stem = _conv(in_channels, channels[0])
        stages, stride_so_far, dilation = [], 1, 1
        for cin, cout in zip(channels[:-1], channels[1:]):
            if stride_so_far < output_stride:
                stride, stride_so_far = 2, stride_so_far * 2
            else:
                stride, dilation = 1, dilation * 2
            stages.append(ResidualUnit(3, cin, cout, strides=stride, subunits=2, dilation=dilation, norm=_NORM, act=_ACT))
        self.stages = torch.nn.ModuleList(stages)
        self.low_level_stage = low_level_stage
        self.aspp = ASPP3D(channels[-1], aspp_channels, atrous_rates)
        self.low_proj = _conv(channels[low_level_stage], low_level_channels, kernel=1)
        self.decoder = torch.nn.Sequential(
            _conv(aspp_channels + low_level_channels, aspp_channels), _conv(aspp_channels, aspp_channels))
        self.head = Convolution(3, aspp_channels, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        h = self.stem(x)
        low = h
        for index, stage in enumerate(self.stages, start=1):
            h = stage(h)
            if index == self.low_level_stage:
                low = h
        h = self.aspp(h)
        h = F.interpolate(h, size=low.shape[2:], mode="trilinear", align_corners=False)
        h = self.decoder(torch.cat([h, self.low_proj(low)], dim=1))
        return F.interpolate(self.head(h), size=size, mode="trilinear", align_corners=False)


@register_network("deeplabv3plus")
def build_deeplabv3plus(in_channels: int, out_channels: int, **kwargs) -> torch.nn.Module:
    return DeepLabV3Plus3D(in_channels, out_channels, **kwargs)
