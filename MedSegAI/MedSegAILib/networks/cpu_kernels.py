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


def _redirected(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this call is float32 inference on the CPU, where the faster kernels apply."""
    return (input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32
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
    ``(voxels, in) @ (in, out x kernel voxels)``, then each voxel's block put in place."""

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or not _redirected(input, self.weight):
            return super().forward(input, output_size)
        batch, _, x, y, z = input.shape
        kx, ky, kz = self.kernel_size
        blocks = input.permute(0, 2, 3, 4, 1).reshape(-1, self.in_channels)
        weight = self.weight.reshape(self.in_channels, -1)  # (in, out * kx * ky * kz), out-major
        if self.bias is None:
            out = blocks @ weight
        else:
            out = torch.addmm(self.bias.repeat_interleave(kx * ky * kz), blocks, weight)
        out = out.view(batch, x, y, z, self.out_channels, kx, ky, kz).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return out.reshape(batch, self.out_channels, x * kx, y * ky, z * kz)


def _takes_onednn(module: nn.Module) -> bool:
    return type(module) is nn.Conv3d and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def _is_block_upsampling(module: nn.Module) -> bool:
    return (type(module) is nn.ConvTranspose3d and tuple(module.kernel_size) == tuple(module.stride)
            and not any(module.padding) and not any(module.output_padding) and module.groups == 1
            and set(module.dilation) == {1} and module.padding_mode == "zeros")


def use_fast_cpu_kernels(network: nn.Module) -> int:
    """Turn, in place, every plain ``nn.Conv3d`` of ``network`` with zero padding given in voxels into
    an :class:`OneDNNConv3d` (where PyTorch has oneDNN) and every plain ``nn.ConvTranspose3d`` whose
    kernel equals its stride into a :class:`MatmulConvTranspose3d`; returns how many modules changed.
    Parameters, state dict and results stay the same."""
    onednn = torch.backends.mkldnn.is_available()
    count = 0
    for module in network.modules():
        if onednn and _takes_onednn(module):
            module.__class__ = OneDNNConv3d
        elif _is_block_upsampling(module):
            module.__class__ = MatmulConvTranspose3d
        else:
            continue
        count += 1
    return count
