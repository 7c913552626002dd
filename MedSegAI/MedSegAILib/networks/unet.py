"""U-Net family builders on MONAI blocks: plain U-Net (2D/3D), Attention U-Net, V-Net.

The plain U-Net is MONAI's ``DynUNet`` (the nnU-Net architecture: two 3x3x3 conv-norm-LeakyReLU
per stage, strided-conv downsampling, transposed-conv upsampling). It is the default because it
is the best-validated design and makes good use of CPU conv kernels.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.nets import AttentionUnet, DynUNet, VNet

from .registry import register_network


class SliceWise2D(torch.nn.Module):
    """Apply a 2D network to every axial slice of a ``(B, C, X, Y, Z)`` tensor.

    This lets 2D models share the 3D sliding-window path: a patch of ``(X, Y, Z)`` is processed
    as ``B*Z`` independent slices.
    """

    def __init__(self, net2d: torch.nn.Module) -> None:
        super().__init__()
        self.net = net2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, nx, ny, nz = x.shape
        slices = x.permute(0, 4, 1, 2, 3).reshape(b * nz, c, nx, ny)
        out = self.net(slices)
        return out.reshape(b, nz, out.shape[1], nx, ny).permute(0, 2, 3, 4, 1)


def _stage_strides(strides: Sequence, spatial_dims: int) -> list[list[int]]:
    return [[s] * spatial_dims if isinstance(s, int) else list(s) for s in strides]


@register_network("unet")
def build_unet(
    in_channels: int,
    out_channels: int,
    filters: Sequence[int] = (16, 32, 64, 128, 256),
    strides: Sequence[int | Sequence[int]] = (1, 2, 2, 2, 2),
    spatial_dims: int = 3,
    kernel_size: int = 3,
    norm: str = "instance",
    res_block: bool = False,
) -> torch.nn.Module:
    """nnU-Net style U-Net (MONAI ``DynUNet``); ``strides[0]`` is the stem's stride (usually 1).

    Example:
        >>> net = build_unet(1, 3, filters=(8, 16, 32), strides=(1, 2, 2))
        >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
    """
    if spatial_dims not in (2, 3):
        raise ValueError("spatial_dims must be 2 or 3")
    if len(filters) != len(strides):
        raise ValueError(f"filters ({len(filters)}) and strides ({len(strides)}) need one entry per stage")
    stage_strides = _stage_strides(strides, spatial_dims)
    net = DynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=[kernel_size] * len(filters),
        strides=stage_strides,
        upsample_kernel_size=stage_strides[1:],
        filters=list(filters),
        norm_name=(norm, {"affine": True}),
        res_block=res_block,
    )
    return SliceWise2D(net) if spatial_dims == 2 else net


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
