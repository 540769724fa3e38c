"""A ResNet-50-style backbone whose convolutions come from a factory, so each network picks its dynamic layers.

Parameter paths follow torchvision/timm/mmcls ResNets (``layerS.B.conv1/bn1/conv2/bn2/conv3/bn3``,
``layerS.B.downsample.0/1``, ``fc``) except the stem, which is ``stem`` (an ``nn.Sequential``) plus
``maxpool``; checkpoint loaders rename the authors' stem keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

RESNET50_DEPTHS = (3, 4, 6, 3)


@dataclass(frozen=True)
class ConvSlot:
    """Where a convolution sits: ``role`` is conv1 (1x1 reduce), conv2 (3x3), conv3 (1x1 expand) or downsample."""

    role: str
    stage: int
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int


ConvFactory = Callable[[ConvSlot], nn.Module]


def plain_conv(slot: ConvSlot, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(slot.in_channels, slot.out_channels, slot.kernel_size, slot.stride, slot.kernel_size // 2,
                     groups=groups, bias=False)


class ConvModule(nn.Sequential):
    """Conv -> BatchNorm -> ReLU with mmcv ``ConvModule``'s parameter paths (``conv``, ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU()


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand, residual; ``norm2=False`` when conv2 normalises itself."""

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int, stage: int,
                 make_conv: ConvFactory, norm2: bool = True) -> None:
        super().__init__()
        self.conv1 = make_conv(ConvSlot("conv1", stage, in_channels, width, 1, 1))
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = make_conv(ConvSlot("conv2", stage, width, width, 3, stride))
        self.bn2 = nn.BatchNorm2d(width) if norm2 else nn.Identity()
        self.conv3 = make_conv(ConvSlot("conv3", stage, width, out_channels, 1, 1))
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                make_conv(ConvSlot("downsample", stage, in_channels, out_channels, 1, stride)),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """stem -> maxpool -> four bottleneck stages (strides 1, 2, 2, 2) -> GAP -> fc.

    ``widths``: the 3x3 width per stage (64, 128, 256, 512 for ResNet-50; doubled for ResNeXt-50 32x4d);
    stage outputs are 256, 512, 1024, 2048. ``num_classes=0`` makes it a detection backbone returning
    the four stage outputs (C2..C5).
    """

    def __init__(self, make_conv: ConvFactory, stem: nn.Module | None = None, depths: Sequence[int] = RESNET50_DEPTHS,
                 widths: Sequence[int] = (64, 128, 256, 512), num_classes: int = 1000, norm2: bool = True) -> None:
        super().__init__()
        self.stem = stem if stem is not None else nn.Sequential(ConvModule(3, 64, 7, 2))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        for stage, (depth, width) in enumerate(zip(depths, widths)):
            out_channels = 256 * 2 ** stage
            blocks = [Bottleneck(in_channels if b == 0 else out_channels, width, out_channels,
                                 2 if stage > 0 and b == 0 else 1, stage, make_conv, norm2) for b in range(depth)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            in_channels = out_channels
        self.fc = nn.Linear(in_channels, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.maxpool(self.stem(x))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        if self.fc is None:
            return tuple(features)
        return self.fc(x.mean(dim=(2, 3)))
