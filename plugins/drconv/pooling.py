"""Adaptive average pooling written as two MatMuls, so it exports for any (dynamic) input size.

``F.adaptive_avg_pool2d`` to a size other than 1 does not survive export with dynamic H/W: the
TorchScript exporter refuses it ("input size not accessible") and the torch.export-based one emits
a gather graph specialised to the example's window sizes (wrong indices at other sizes).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


def pooling_matrix(size: Any, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``[bins, size]`` averaging matrix: row i averages positions ``floor(i*size/bins) .. ceil((i+1)*size/bins)-1``.

    Position p is in bin i iff ``p*bins + bins > i*size`` and ``p*bins < (i+1)*size`` (integer form
    of PyTorch's adaptive-pooling bin edges); built from Range/Mul/Less so ``size`` stays symbolic.
    """
    pos = torch.arange(size, device=like.device)
    rows = torch.arange(bins, device=like.device).unsqueeze(1)
    inside = ((pos * bins + bins > rows * size) & (pos * bins < (rows + 1) * size)).to(like.dtype)
    return inside / inside.sum(1, keepdim=True)


def adaptive_avg_pool2d(x: torch.Tensor, output_size: Sequence[int]) -> torch.Tensor:
    """Same values as ``F.adaptive_avg_pool2d(x, output_size)`` for ``[N, C, H, W]`` input (up to rounding).

    An axis pooled to size 1 is a plain mean (one ReduceMean node for both, e.g. 1x1 DRConv's filter
    generator).
    """
    if tuple(output_size) == (1, 1):
        return x.mean((-2, -1), keepdim=True)
    if output_size[0] == 1:
        x = x.mean(-2, keepdim=True)
    else:
        x = torch.matmul(pooling_matrix(x.shape[-2], output_size[0], x), x)
    if output_size[1] == 1:
        return x.mean(-1, keepdim=True)
    return torch.matmul(x, pooling_matrix(x.shape[-1], output_size[1], x).transpose(0, 1))


class AdaptiveAvgPool2d(nn.Module):
    """Module form of :func:`adaptive_avg_pool2d`."""

    def __init__(self, output_size: int | Sequence[int]) -> None:
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adaptive_avg_pool2d(x, self.output_size)
