"""U-Net variants taken as they are from MONAI: Attention U-Net and V-Net.

Registered lazily (see :mod:`.registry`): this module, and with it MONAI, is imported only when a
card names one of them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.nets import AttentionUnet, VNet

from .registry import register_network
from .unet import SliceWise2D


@register_network("attention_unet")
def build_attention_unet(
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    strides: Sequence[int] = (2, 2, 2),
    spatial_dims: int = 3,
    dropout: float = 0.0,
) -> torch.nn.Module:
    """Attention U-Net (Oktay et al. 2018), MONAI ``AttentionUnet``."""
    net = AttentionUnet(spatial_dims, in_channels, out_channels, channels=channels, strides=strides, dropout=dropout)
    return SliceWise2D(net) if spatial_dims == 2 else net


@register_network("vnet")
def build_vnet(in_channels: int, out_channels: int, dropout: float = 0.0) -> torch.nn.Module:
    """V-Net (Milletari et al. 2016), MONAI ``VNet``, 3D; patch sides must be multiples of 16."""
    return VNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, dropout_prob_down=dropout,
                dropout_prob_up=(dropout, dropout))
