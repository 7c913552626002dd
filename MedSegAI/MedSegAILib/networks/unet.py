"""The plain U-Net: nnU-Net's architecture, built so that inference needs no MONAI import.

Two 3x3x3 conv-norm-LeakyReLU per stage, strided-conv downsampling, transposed-conv upsampling:
the design of MONAI's ``DynUNet`` (``res_block=False``, no deep supervision), the best-validated
U-Net and one that makes good use of CPU conv kernels. :class:`UNet` rebuilds it with the same
module tree, parameter names, construction order and weight initialisation, so bundles trained
with either load into either, and a seed gives the same weights in both (tested against MONAI).

Why not MONAI's class: ``import monai`` loads every MONAI sub-package (data, transforms, apps...),
1.5-2.5 s of start-up on a 2-core CPU, more than a whole 3 mm brain-extraction inference. The
residual variant (``res_block=True``) and other norms are still MONAI's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from .registry import register_network

_NEGATIVE_SLOPE = 0.01  # nnU-Net's LeakyReLU


class SliceWise2D(nn.Module):
    """Apply a 2D network to every axial slice of a ``(B, C, X, Y, Z)`` tensor.

    This lets 2D models share the 3D sliding-window path: a patch of ``(X, Y, Z)`` is processed
    as ``B*Z`` independent slices.
    """

    def __init__(self, net2d: nn.Module) -> None:
        super().__init__()
        self.net = net2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, nx, ny, nz = x.shape
        slices = x.permute(0, 4, 1, 2, 3).reshape(b * nz, c, nx, ny)
        out = self.net(slices)
        return out.reshape(b, nz, out.shape[1], nx, ny).permute(0, 2, 3, 4, 1)


def _conv(dims: int, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int], bias: bool = False,
          transposed: bool = False) -> nn.Sequential:
    """A convolution wrapped as MONAI's ``Convolution`` (parameters under ``conv.``), padded so that
    the output size is the input size divided by the stride (times it, when transposed)."""
    padding = tuple((k - s + 1) // 2 for k, s in zip(kernel, stride))
    if transposed:
        output_padding = tuple(2 * p + s - k for k, s, p in zip(kernel, stride, padding))
        layer = (nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d)(
            cin, cout, tuple(kernel), tuple(stride), padding, output_padding, bias=bias)
    else:
        layer = (nn.Conv3d if dims == 3 else nn.Conv2d)(cin, cout, tuple(kernel), tuple(stride), padding, bias=bias)
    return nn.Sequential(OrderedDict(conv=layer))


class ConvBlock(nn.Module):
    """conv-norm-LeakyReLU twice; the first convolution carries the stride."""

    def __init__(self, dims: int, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int]) -> None:
        super().__init__()
        self.conv1 = _conv(dims, cin, cout, kernel, stride)
        self.conv2 = _conv(dims, cout, cout, kernel, [1] * dims)
        self.lrelu = nn.LeakyReLU(_NEGATIVE_SLOPE, inplace=True)
        norm = nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d
        self.norm1 = norm(cout, affine=True)
        self.norm2 = norm(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lrelu(self.norm1(self.conv1(x)))
        return self.lrelu(self.norm2(self.conv2(x)))


class UpBlock(nn.Module):
    """Transposed-conv upsampling, concatenation with the skip connection, then a :class:`ConvBlock`."""

    def __init__(self, dims: int, cin: int, cout: int, kernel: Sequence[int], up_kernel: Sequence[int],
                 stride: Sequence[int]) -> None:
        super().__init__()
        self.transp_conv = _conv(dims, cin, cout, up_kernel, stride, transposed=True)
        self.conv_block = ConvBlock(dims, 2 * cout, cout, kernel, [1] * dims)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat((self.transp_conv(x), skip), dim=1))


class OutBlock(nn.Module):
    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _conv(dims, cin, cout, [1] * dims, [1] * dims, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SkipLayer(nn.Module):
    """One level of the U: down, the levels below, up with this level's output as the skip.
    Nested as in MONAI (``skip_layers.next_layer...``), so that state dicts match."""

    def __init__(self, downsample: nn.Module, upsample: UpBlock, next_layer: nn.Module) -> None:
        super().__init__()
        self.downsample = downsample
        self.next_layer = next_layer
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down = self.downsample(x)
        return self.upsample(self.next_layer(down), down)


class UNet(nn.Module):
    """nnU-Net-style U-Net, state-dict compatible with MONAI's ``DynUNet`` (see the module docstring).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: input channels and classes.
        kernel_size: per stage, an int or one per axis.
        strides: per stage (the first is the stem's, usually 1), an int or one per axis.
        upsample_kernel_size: per upsampling stage (``len(strides) - 1``), usually the strides.
        filters: channels per stage.

    Example:
        >>> net = UNet(3, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], [8, 16, 32])
        >>> net(torch.zeros(1, 1, 16, 16, 8)).shape
        torch.Size([1, 2, 16, 16, 8])
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: Sequence,
                 strides: Sequence, upsample_kernel_size: Sequence, filters: Sequence[int]) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError("spatial_dims must be 2 or 3")
        n = len(strides)
        if n < 3 or len(kernel_size) != n or len(filters) < n or len(upsample_kernel_size) != n - 1:
            raise ValueError(f"need at least 3 stages with one kernel size and filter count per stride and one "
                             f"upsampling kernel per stage but the first; got kernel_size {list(kernel_size)}, "
                             f"strides {list(strides)}, upsample_kernel_size {list(upsample_kernel_size)}, "
                             f"filters {list(filters)}")
        kernels, stride, up = (_per_axis(v, spatial_dims) for v in (kernel_size, strides, upsample_kernel_size))
        if any(len(v) != spatial_dims for v in kernels + stride + up):
            raise ValueError(f"kernel sizes and strides need {spatial_dims} values per stage")
        f = list(filters)[:n]
        # built in MONAI's order, so that a seed draws the same weights
        self.input_block = ConvBlock(spatial_dims, in_channels, f[0], kernels[0], stride[0])
        self.downsamples = nn.ModuleList(ConvBlock(spatial_dims, f[i - 1], f[i], kernels[i], stride[i])
                                         for i in range(1, n - 1))
        self.bottleneck = ConvBlock(spatial_dims, f[-2], f[-1], kernels[-1], stride[-1])
        self.upsamples = nn.ModuleList(UpBlock(spatial_dims, f[i], f[i - 1], kernels[i], up[i - 1], stride[i])
                                       for i in range(n - 1, 0, -1))
        self.output_block = OutBlock(spatial_dims, f[0], out_channels)
        torch.rand(1)  # DynUNet draws one number here (its deep-supervision placeholder): seed parity
        self.apply(_initialise)
        layer: nn.Module = self.bottleneck
        for down, upsample in zip(reversed([self.input_block, *self.downsamples]), self.upsamples):
            layer = SkipLayer(down, upsample, layer)
        self.skip_layers = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_block(self.skip_layers(x))


def _initialise(module: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.01), zero biases (as DynUNet)."""
    if isinstance(module, (nn.Conv3d, nn.Conv2d, nn.ConvTranspose3d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(module.weight, a=_NEGATIVE_SLOPE)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _per_axis(values: Sequence, spatial_dims: int) -> list[list[int]]:
    """Per-stage kernel sizes or strides, each as one value per axis."""
    return [[v] * spatial_dims if isinstance(v, int) else list(v) for v in values]


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
) -> nn.Module:
    """nnU-Net style U-Net; ``strides[0]`` is the stem's stride (usually 1).

    Example:
        >>> net = build_unet(1, 3, filters=(8, 16, 32), strides=(1, 2, 2))
        >>> net(torch.zeros(1, 1, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
    """
    if spatial_dims not in (2, 3):
        raise ValueError("spatial_dims must be 2 or 3")
    if len(filters) != len(strides):
        raise ValueError(f"filters ({len(filters)}) and strides ({len(strides)}) need one entry per stage")
    stage_strides = _per_axis(strides, spatial_dims)
    kernels = [kernel_size] * len(filters)
    if res_block or norm != "instance":
        from monai.networks.nets import DynUNet  # residual blocks and other norms: MONAI's own class

        net: nn.Module = DynUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                                 kernel_size=kernels, strides=stage_strides, upsample_kernel_size=stage_strides[1:],
                                 filters=list(filters), norm_name=(norm, {"affine": True}), res_block=res_block)
    else:
        net = UNet(spatial_dims, in_channels, out_channels, kernels, stage_strides, stage_strides[1:], filters)
    return SliceWise2D(net) if spatial_dims == 2 else net
