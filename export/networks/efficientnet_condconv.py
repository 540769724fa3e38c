"""CondConv-EfficientNet-B0 (Yang et al., NeurIPS 2019) with 8 experts.

EfficientNet-B0 whose last three stages (112, 192 and 320 channels: 8 MBConv blocks) use CondConv for
the expand, depthwise and project convs; each such block computes one routing ``sigmoid(Linear(GAP(x)))``
from its input and shares it between its three CondConv layers (dynconv's ``CondConv2d`` with
``external_routing=True``). Parameter paths follow timm's EfficientNet (``conv_stem``, ``bn1``,
``blocks.S.B.conv_pw/conv_dw/conv_pwl/se/routing_fn``, ``conv_head``, ``bn2``, ``classifier``). No checkpoint
loader: timm's ``tf_efficientnet_cc_b0_8e`` pads TF-'same' (asymmetric for stride 2), which these layers do not.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...plugins.dynamic_conv import CondConv2d

# (repeats, kernel, stride, expansion, out channels, condconv) per stage of EfficientNet-B0
B0_STAGES = ((1, 3, 1, 1, 16, False), (2, 3, 2, 6, 24, False), (2, 5, 2, 6, 40, False), (3, 3, 2, 6, 80, False),
             (3, 5, 1, 6, 112, True), (4, 5, 2, 6, 192, True), (1, 3, 1, 6, 320, True))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act1 = nn.SiLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv_expand(self.act1(self.conv_reduce(x.mean(dim=(2, 3), keepdim=True)))))


class MBConv(nn.Module):
    """[1x1 expand -> BN -> SiLU] -> kxk depthwise -> BN -> SiLU -> SE(in/4) -> 1x1 project -> BN (+ input)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int,
                 experts: int) -> None:
        super().__init__()
        mid = in_channels * expansion

        def conv(cin: int, cout: int, k: int, s: int, groups: int) -> nn.Module:
            if experts:
                return CondConv2d(cin, cout, k, s, k // 2, groups=groups, bias=False, num_experts=experts,
                                  external_routing=True)
            return nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False)

        self.routing_fn = nn.Linear(in_channels, experts) if experts else None
        self.conv_pw = conv(in_channels, mid, 1, 1, 1) if expansion != 1 else None
        self.bn1 = nn.BatchNorm2d(mid) if expansion != 1 else None
        self.conv_dw = conv(mid, mid, kernel, stride, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, max(1, in_channels // 4))
        self.conv_pwl = conv(mid, out_channels, 1, 1, 1)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU()
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = ()
        if self.routing_fn is not None:
            extra = (torch.sigmoid(self.routing_fn(x.mean(dim=(2, 3)))),)
        out = x
        if self.conv_pw is not None:
            out = self.act(self.bn1(self.conv_pw(out, *extra)))
        out = self.se(self.act(self.bn2(self.conv_dw(out, *extra))))
        out = self.bn3(self.conv_pwl(out, *extra))
        return out + x if self.residual else out


class EfficientNetCondConv(nn.Module):
    def __init__(self, stages: Sequence[tuple] = B0_STAGES, experts: int = 8, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act = nn.SiLU()
        channels, stage_modules = 32, []
        for repeats, kernel, stride, expansion, out_channels, condconv in stages:
            blocks = []
            for i in range(repeats):
                blocks.append(MBConv(channels, out_channels, kernel, stride if i == 0 else 1, expansion,
                                     experts if condconv else 0))
                channels = out_channels
            stage_modules.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stage_modules)
        self.conv_head = nn.Conv2d(channels, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act(self.bn1(self.conv_stem(x))))
        x = self.act(self.bn2(self.conv_head(x)))
        return self.classifier(x.mean(dim=(2, 3)))


def condconv_efficientnet_b0(repeats: Sequence[int] | None = None) -> EfficientNetCondConv:
    """CondConv-EfficientNet-B0 with 8 experts; ``repeats`` overrides the blocks per stage (for reduced tests)."""
    stages = B0_STAGES if repeats is None else tuple((r,) + s[1:] for r, s in zip(repeats, B0_STAGES))
    return EfficientNetCondConv(stages)
