"""DRConv-ShuffleNetV2 0.5x (Chen et al., CVPR 2021): ShuffleNetV2 whose right-branch 1x1 convs are DRConv.

As in the authors' example, both pointwise convs of every block's main branch are region-aware
(m=8 regions); dynconv's :class:`DRConv2d` is the paper form (guide conv + pooled filter generator per
layer), not megvii's released form (a per-block mask and a CondConv-style filter bank), so those
checkpoints do not map. Parameter paths follow megvii's ShuffleNetV2 (``first_conv``,
``features.N.branch_main/branch_proj``, ``conv_last``, ``classifier``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...plugins.drconv import DRConv2d

WIDTHS_0_5X = (24, 48, 96, 192, 1024)
REPEATS = (4, 8, 4)


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU()]


def _depthwise(channels: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False), nn.BatchNorm2d(channels)]


class ShuffleBlock(nn.Module):
    """Stride 1: split channels (even -> shortcut, odd -> main); stride 2: both branches see the input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, regions: int) -> None:
        super().__init__()
        self.stride = stride
        inp = in_channels if stride == 2 else in_channels // 2
        mid, main_out = out_channels // 2, out_channels - inp
        self.branch_main = nn.Sequential(
            DRConv2d(inp, mid, 1, region_num=regions), *_bn_relu(mid), *_depthwise(mid, stride),
            DRConv2d(mid, main_out, 1, region_num=regions), *_bn_relu(main_out))
        self.branch_proj = None
        if stride == 2:
            self.branch_proj = nn.Sequential(*_depthwise(in_channels, 2),
                                             nn.Conv2d(in_channels, in_channels, 1, bias=False), *_bn_relu(in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch_proj is not None:
            return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)
        n, c, h, w = x.shape
        pairs = x.reshape(n, c // 2, 2, h, w)
        return torch.cat((pairs[:, :, 0], self.branch_main(pairs[:, :, 1])), 1)


class ShuffleNetV2DRConv(nn.Module):
    def __init__(self, widths: Sequence[int] = WIDTHS_0_5X, repeats: Sequence[int] = REPEATS, regions: int = 8,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), *_bn_relu(widths[0]))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks, channels = [], widths[0]
        for repeat, width in zip(repeats, widths[1:4]):
            for i in range(repeat):
                blocks.append(ShuffleBlock(channels, width, 2 if i == 0 else 1, regions))
                channels = width
        self.features = nn.Sequential(*blocks)
        self.conv_last = nn.Sequential(nn.Conv2d(channels, widths[4], 1, bias=False), *_bn_relu(widths[4]))
        self.classifier = nn.Sequential(nn.Linear(widths[4], num_classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_last(self.features(self.maxpool(self.first_conv(x))))
        return self.classifier(x.mean(dim=(2, 3)))


def drconv_shufflenetv2(repeats: Sequence[int] = REPEATS) -> ShuffleNetV2DRConv:
    """DRConv-ShuffleNetV2 0.5x: widths 24-48-96-192-1024, repeats 4-8-4, m=8 regions."""
    return ShuffleNetV2DRConv(repeats=repeats)
