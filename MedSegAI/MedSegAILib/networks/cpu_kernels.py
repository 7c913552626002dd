"""Faster kernels for the 3D convolutions of a network that runs inference on the CPU.

Measured on the 2-core AVX2 EPYC of ``bench/`` (float32, one window, results equal to float32 rounding):

- **Convolutions.** PyTorch sends a 3D convolution of a single window to its reference kernel
  (``slow_conv3d``: im2col and one GEMM) when the kernel is at most 3 wide and batch x channels x the
  first two spatial sizes is at most 20480 (``ConvParams::use_mkldnn`` in ATen's Convolution.cpp: "for
  some case, native is faster"). On 3D networks that catches the first convolution (one input channel)
  and the deepest ones (many channels, few voxels). oneDNN runs those 1.8-3.8x faster: 16 filters on a
  96 x 96 x 16 CT window 2.1 ms instead of 8.0; 128 -> 128 channels on 12 x 12 x 4 voxels 3.8 ms
  instead of 7.0. :class:`OneDNNConv3d` always takes oneDNN's kernel.
- **Transposed convolutions whose kernel equals their stride** (every U-Net decoder's upsampling): the
  kernels do not overlap, so each input voxel's channels map to one output block by a single matrix
  product. :class:`MatmulConvTranspose3d` computes it so: 32 -> 16 channels from 48 x 48 x 16 voxels by
  2 x 2 x 1 in 4.0 ms instead of 16.5; 64 -> 32 from 48^3 by 2^3 in 168 ms instead of 278 (on the
  deepest, smallest ones 0.06-0.2 ms slower).
- **Channels-last layout.** oneDNN blocks channels into SIMD lanes. Given channel-first tensors it
  reorders every input and output of every convolution; given channels-last ones (weights stored so)
  it reads them as they are: 16 -> 16 channels on 48^3 voxels 11.0 ms instead of 28.2. The network's
  3D convolution weights are therefore stored channels-last, and the layers between convolutions
  keep that layout: :class:`ChannelsLastInstanceNorm3d` normalises in it (``instance_norm`` copies
  to channel-first and back, which made channels-last alone 1.16-1.30x slower), and
  :class:`MatmulConvTranspose3d` writes its blocks channels-last. PyTorch's channels-last
  ``group_norm`` with one channel per group would be 4-8x faster still, but its one-pass variance
  is off by up to 1e-3 where a window holds padding, so the norm takes two passes. Whole networks,
  alternating with the channel-first kernels: 0.85 of the time for the brain-extraction U-Net,
  0.91-0.92 for the demo U-Net, DeepLabv3+ and an nnU-Net-size DynUNet; MONAI's residual UNet 1.04.

Only inference is redirected (no autograd, no autocast): training keeps PyTorch's own kernels.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ConvTranspose3d(4, 2, 2, stride=2))
    >>> use_fast_cpu_kernels(net)
    2
    >>> with torch.inference_mode():
    ...     tuple(net(torch.zeros(1, 1, 8, 8, 8)).shape)
    (1, 2, 16, 16, 16)
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS_LAST = torch.channels_last_3d


def _redirected(input: torch.Tensor, weight: torch.Tensor | None = None) -> bool:
    """Whether this call is float32 inference on the CPU, where the faster kernels apply."""
    return (input.device.type == "cpu" and input.dtype == torch.float32
            and (weight is None or weight.dtype == torch.float32)
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu"))


class OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` whose float32 CPU inference always takes oneDNN's kernel (same parameters, same state)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if _redirected(input, weight):
            return torch.ops.aten.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation,
                                                     self.groups)
        return super()._conv_forward(input, weight, bias)


class MatmulConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` with kernel == stride whose float32 CPU inference is one matrix product:
    ``(voxels, in) @ (in, kernel voxels x out)``, then each voxel's block put in place, channels-last."""

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or not _redirected(input, self.weight):
            return super().forward(input, output_size)
        batch, _, x, y, z = input.shape
        kx, ky, kz = self.kernel_size
        blocks = input.permute(0, 2, 3, 4, 1).reshape(-1, self.in_channels)
        weight = self.weight.permute(0, 2, 3, 4, 1).reshape(self.in_channels, -1)  # (in, kx * ky * kz * out)
        if self.bias is None:
            out = blocks @ weight
        else:
            out = torch.addmm(self.bias.repeat(kx * ky * kz), blocks, weight)
        out = out.view(batch, x, y, z, kx, ky, kz, self.out_channels).permute(0, 1, 4, 2, 5, 3, 6, 7)
        return out.reshape(batch, x * kx, y * ky, z * kz, self.out_channels).permute(0, 4, 1, 2, 3)


class ChannelsLastInstanceNorm3d(nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` (no running statistics) whose float32 CPU inference on a channels-last
    input normalises in that layout: each channel's mean, then the mean square of the centred
    values (two passes, as exact as ``instance_norm``), scale and shift into the centred copy."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() != 5 or not _redirected(input) or not input.is_contiguous(memory_format=CHANNELS_LAST):
            return super().forward(input)
        batch, channels, *spatial = input.shape
        values = input.permute(0, 2, 3, 4, 1).reshape(batch, -1, channels)  # a view: (batch, voxels, channels)
        centred = values - values.mean(1, keepdim=True)
        scale = torch.rsqrt((centred * centred).mean(1, keepdim=True) + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        out = centred.mul_(scale) if self.bias is None else torch.addcmul(self.bias, centred, scale, out=centred)
        return out.view(batch, *spatial, channels).permute(0, 4, 1, 2, 3)


def _takes_onednn(module: nn.Module) -> bool:
    return type(module) is nn.Conv3d and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def _is_block_upsampling(module: nn.Module) -> bool:
    return (type(module) is nn.ConvTranspose3d and tuple(module.kernel_size) == tuple(module.stride)
            and not any(module.padding) and not any(module.output_padding) and module.groups == 1
            and set(module.dilation) == {1} and module.padding_mode == "zeros")


def _is_instance_norm(module: nn.Module) -> bool:
    return type(module) is nn.InstanceNorm3d and not module.track_running_stats


def use_fast_cpu_kernels(network: nn.Module) -> int:
    """Turn, in place, every plain ``nn.Conv3d`` of ``network`` with zero padding given in voxels into
    an :class:`OneDNNConv3d` with channels-last weights (where PyTorch has oneDNN), every plain
    ``nn.ConvTranspose3d`` whose kernel equals its stride into a :class:`MatmulConvTranspose3d` and
    every ``nn.InstanceNorm3d`` into a :class:`ChannelsLastInstanceNorm3d`; returns how many
    convolutions changed. Parameters, state dict and results stay the same (up to float32 rounding);
    the outputs of a network so changed come channels-last."""
    onednn = torch.backends.mkldnn.is_available()
    count = 0
    for module in network.modules():
        if onednn and _takes_onednn(module):
            module.__class__ = OneDNNConv3d
            # .to restrides even a one-channel weight, which .contiguous would leave channel-first
            module.weight.data = module.weight.data.to(memory_format=CHANNELS_LAST)
            count += 1
        elif _is_block_upsampling(module):
            module.__class__ = MatmulConvTranspose3d
            count += 1
        elif onednn and _is_instance_norm(module):
            module.__class__ = ChannelsLastInstanceNorm3d
    return count
