"""Selective Kernel convolution (Li et al., CVPR 2019): split, fuse, select; standard ONNX only."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DynconvError


class SKConv2d(nn.Module):
    """SKConv with M branches.

    - Split: branch i is ``ReLU(BN(Conv(x)))`` with a 3×3 kernel and dilation ``1+i`` (``dilated=True``,
      the paper's efficient form of the 5×5 branch) or kernel ``3+2i`` with dilation 1; padding keeps
      the size, ``stride`` and ``groups`` as given. ``U_i [N, O, Ho, Wo]``.
    - Fuse: ``s = GAP(sum_i U_i)`` ``[N, O]``, ``z = ReLU(BN(FC(s)))`` ``[N, d]``, ``d = max(O // reduction, min_dim)``.
    - Select: ``a = softmax_i(FC_i(z))`` over branches, per channel; ``V = sum_i a_i * U_i`` ``[N, O, Ho, Wo]``.

    The per-branch FCs are one 1×1 conv ``d -> M*O`` (channel ``i*O + o`` is branch i), with a bias
    unless ``select_bias=False`` (timm's ``SelectiveKernel`` and the official Caffe model have none).
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, num_branches: int = 2, stride: int = 1,
                 groups: int = 1, reduction: int = 16, min_dim: int = 32, dilated: bool = True,
                 select_bias: bool = True) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if num_branches < 1 or reduction < 1 or min_dim < 1:
            raise DynconvError(f"SKConv2d: num_branches={num_branches}, reduction={reduction} and "
                               f"min_dim={min_dim} must all be >= 1")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise DynconvError(f"SKConv2d: in_channels={in_channels} and out_channels={out_channels} "
                               f"must be divisible by groups={groups}")
        self.out_channels, self.num_branches = out_channels, num_branches
        self.branches = nn.ModuleList()
        for i in range(num_branches):
            kernel, dilation = (3, 1 + i) if dilated else (3 + 2 * i, 1)
            pad = dilation * (kernel - 1) // 2
            self.branches.append(nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel, stride, pad, dilation, groups, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ))
        hidden = max(out_channels // reduction, min_dim)
        self.squeeze = nn.Sequential(
            nn.Conv2d(out_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.select = nn.Conv2d(hidden, num_branches * out_channels, 1, bias=select_bias)

    def attention(self, fused: torch.Tensor) -> torch.Tensor:
        """Branch weights ``[N, M, O, 1, 1]`` (softmax over M) from ``sum_i U_i``."""
        z = self.squeeze(fused.mean(dim=(2, 3), keepdim=True))
        logits = self.select(z).reshape(-1, self.num_branches, self.out_channels, 1, 1)
        return torch.softmax(logits, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([branch(x) for branch in self.branches], dim=1)  # [N, M, O, Ho, Wo]
        return (feats * self.attention(feats.sum(1))).sum(1)
