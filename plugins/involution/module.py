"""Involution layer with the paper's kernel-generation branch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DynconvError
from .functional import involution


class Involution(nn.Module):
    """Involution (Li et al., CVPR 2021): a spatial-specific, channel-shared kernel per pixel.

    Kernel generation per output pixel: ``x' = AvgPool(s)(x)`` (ceil mode, so sizes not divisible by
    the stride still line up with the aggregation's convolution-rule output),
    ``W = Conv1x1(C/r -> G*k*k)(ReLU(BN(Conv1x1(C -> C/r)(x'))))``; then
    ``out[n,c,i,j] = sum_{u,v} W[n, g(c)*k*k + u*k + v, i, j] * x[n, c, i*s - p + u*d, j*s - p + v*d]``.

    Shapes: input ``[N, C, H, W]`` -> output ``[N, C, ceil(H/s), ceil(W/s)]`` (p = d*(k-1)/2, odd k).
    The official code requires H, W divisible by s; for those sizes the two agree exactly.
    """

    def __init__(self, channels: int, kernel_size: int = 7, stride: int = 1, reduction_ratio: int = 4,
                 group_channels: int = 16, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise DynconvError(f"Involution: kernel_size must be odd, got {kernel_size}")
        if channels % group_channels != 0:
            raise DynconvError(f"Involution: channels={channels} not divisible by group_channels={group_channels}")
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.groups = channels // group_channels
        hidden = max(channels // reduction_ratio, 1)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=False)
        self.norm = nn.BatchNorm2d(hidden)
        self.span = nn.Conv2d(hidden, kernel_size * kernel_size * self.groups, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True) if self.stride > 1 else x
        weight = self.span(F.relu(self.norm(self.reduce(pooled))))
        return involution(x, weight, self.kernel_size, self.stride, None, self.dilation, self.groups)
