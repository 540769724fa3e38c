"""DDF layers: FilterNorm and DDFPack (the drop-in replacement for a 3x3 conv in DDF-ResNet)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DynconvError
from .functional import ddf

_EPS = 1e-10


def _standardize(f: torch.Tensor, dim: int) -> torch.Tensor:
    """``(f - mean) / (std + 1e-10)`` over ``dim``, std unbiased (divided by n - 1) as ``torch.std``.

    Written as explicit ReduceMean/Sub/Mul/ReduceSum/Div/Sqrt so both exporters emit standard ops.
    """
    n = f.shape[dim]
    centred = f - f.mean(dim=dim, keepdim=True)
    std = ((centred * centred).sum(dim=dim, keepdim=True) / (n - 1)).sqrt()
    return centred / (std + _EPS)


class FilterNorm(nn.Module):
    """Filter normalisation of DDF, as the official code computes it (no running statistics).

    - ``'spatial'``: input ``[N, G*k*k, H, W]``; per (n, g, pixel) the k*k taps are standardised
      (unbiased std, +1e-10) and scaled by the fixed gain ``calculate_gain(nonlinearity)/k``.
    - ``'channel'``: input ``[N, C*k*k, ...]`` (trailing dims multiply to 1); per (n, c) the k*k taps
      are standardised and multiplied by a learnable ``gamma[C*k*k]`` initialised
      ``randn * gain/k``. Output ``[N, C*k*k]``.

    ``channels`` is G (heads) for 'spatial' and C for 'channel'.
    """

    def __init__(self, channels: int, kernel_size: int, filter_type: str, nonlinearity: str = "relu") -> None:
        super().__init__()
        if filter_type not in ("spatial", "channel"):
            raise DynconvError(f"FilterNorm: filter_type must be 'spatial' or 'channel', got {filter_type!r}")
        if kernel_size < 2:
            raise DynconvError(f"FilterNorm: kernel_size must be >= 2 (one tap has no std), got {kernel_size}")
        self.channels, self.kernel_size, self.filter_type = channels, kernel_size, filter_type
        scale = nn.init.calculate_gain(nonlinearity) / kernel_size
        if filter_type == "channel":
            self.gamma = nn.Parameter(torch.randn(channels * kernel_size * kernel_size) * scale)
        else:
            self.gain = scale

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        kk = self.kernel_size * self.kernel_size
        if self.filter_type == "spatial":
            n, h, w = f.shape[0], f.shape[2], f.shape[3]
            f = _standardize(f.reshape(n, self.channels, kk, h, w), 2)
            return f.reshape(n, self.channels * kk, h, w) * self.gain
        f = _standardize(f.reshape(f.shape[0], self.channels, kk), 2)
        return f.reshape(f.shape[0], self.channels * kk) * self.gamma

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, filter_type={self.filter_type!r}"


class DDFPack(nn.Module):
    """Decoupled dynamic filter layer (Zhou et al., CVPR 2021), with both filter branches.

    - spatial branch: ``Conv1x1(C -> head*k*k, stride s, bias) -> FilterNorm('spatial')``:
      ``[N, head*k*k, Ho, Wo]``;
    - channel branch: ``GAP -> Conv1x1(C -> max(int(se_ratio*C), 1)) -> ReLU -> Conv1x1(-> C*k*k)
      -> FilterNorm('channel')`` (learnable gamma): ``[N, C, k, k]``;
    - heads: x, Fc, Fs reshaped to ``[N*head, C/head, H, W]``, ``[N*head, C/head, k, k]``,
      ``[N*head, k*k, Ho, Wo]`` (each contiguous block of C/head channels shares one spatial filter),
      then the core op :func:`ddf`.

    Shapes: ``[N, C, H, W] -> [N, C, ceil(H/s), ceil(W/s)]``. The official code requires H, W
    divisible by s (its kernel gives floor(H/s) but the spatial branch ceil(H/s)); for those sizes
    both agree exactly, and other sizes work here with windows centred at ``(i*s, j*s)``.
    """

    def __init__(self, in_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1, head: int = 1,
                 se_ratio: float = 0.2, nonlinearity: str = "relu", kernel_combine: str = "mul") -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 3:
            raise DynconvError(f"DDFPack: kernel_size must be odd and >= 3, got {kernel_size}")
        if head < 1 or in_channels % head != 0:
            raise DynconvError(f"DDFPack: in_channels={in_channels} must be divisible by head={head}")
        if kernel_combine not in ("mul", "add"):
            raise DynconvError(f"DDFPack: kernel_combine must be 'mul' or 'add', got {kernel_combine!r}")
        if not 0 < se_ratio:
            raise DynconvError(f"DDFPack: se_ratio must be positive, got {se_ratio}")
        k = kernel_size
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.head, self.kernel_combine = head, kernel_combine
        hidden = max(int(in_channels * se_ratio), 1)
        self.spatial_branch = nn.Sequential(
            nn.Conv2d(in_channels, head * k * k, 1, stride=stride),
            FilterNorm(head, k, "spatial", nonlinearity),
        )
        self.channel_branch = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, in_channels * k * k, 1),
            FilterNorm(in_channels, k, "channel", nonlinearity),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g, k = self.head, self.kernel_size
        channel_filter = self.channel_branch(x).reshape(n * g, c // g, k, k)
        spatial_filter = self.spatial_branch(x)
        ho, wo = spatial_filter.shape[2], spatial_filter.shape[3]
        spatial_filter = spatial_filter.reshape(n * g, k * k, ho, wo)
        out = ddf(x.reshape(n * g, c // g, h, w), channel_filter, spatial_filter,
                  k, self.dilation, self.stride, self.kernel_combine)
        return out.reshape(n, c, ho, wo)
