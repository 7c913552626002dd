"""oneDNN for every float32 3D convolution of a network running on the CPU.

PyTorch sends a 3D convolution of a single window to its reference kernel (``slow_conv3d``: im2col and
one GEMM) when the kernel is at most 3 wide and batch x channels x the first two spatial sizes is at most
20480 (``ConvParams::use_mkldnn`` in ATen's Convolution.cpp: "for some case, native is faster"). On 3D
networks that catches the first convolution (one input channel) and the deepest ones (many channels,
few voxels). On the 2-core AVX2 EPYC of ``bench/`` oneDNN runs those 1.8-3.8x faster: 16 filters on a
96 x 96 x 16 CT window 2.1 ms instead of 8.0, 128 -> 128 channels on 12 x 12 x 4 voxels 3.8 ms instead of
7.0. Results agree to float32 rounding.

Only inference is redirected (no autograd, no autocast): training keeps PyTorch's own choice.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1))
    >>> use_onednn_convolutions(net)
    1
    >>> with torch.inference_mode():
    ...     tuple(net(torch.zeros(1, 1, 8, 8, 8)).shape)
    (1, 4, 8, 8, 8)
"""

from __future__ import annotations

import torch
from torch import nn


class OneDNNConv3d(nn.Conv3d):
    """``nn.Conv3d`` whose float32 CPU inference always takes oneDNN's kernel (same parameters, same state)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (input.device.type == "cpu" and input.dtype == torch.float32 and weight.dtype == torch.float32
                and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")):
            return torch.ops.aten.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation,
                                                     self.groups)
        return super()._conv_forward(input, weight, bias)


def use_onednn_convolutions(network: nn.Module) -> int:
    """Turn every plain ``nn.Conv3d`` of ``network`` with zero padding given in voxels into an
    :class:`OneDNNConv3d`, in place; returns how many. Does nothing where PyTorch lacks oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return 0
    count = 0
    for module in network.modules():
        if type(module) is nn.Conv3d and module.padding_mode == "zeros" and not isinstance(module.padding, str):
            module.__class__ = OneDNNConv3d
            count += 1
    return count
