"""InternImage-T (DCNv3, Wang et al., CVPR 2023) and FlashInternImage-T (DCNv4, Xiong et al., CVPR 2024).

NHWC inside, like the originals, with their parameter paths (``patch_embed.*``, ``levels.N.blocks.M.dcn.*``,
``levels.N.blocks.M.mlp.fc1/fc2``, ``levels.N.norm.0``, ``levels.N.downsample.conv/norm.1``,
``conv_head.0/1.0``, ``head``), so the authors' classification checkpoints load key for key.
FlashInternImage's DCNv4 has no output-projection bias and its MLP's fc2 no bias (the released config).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...plugins.dcnv3 import DCNv3, DCNv4

T_DEPTHS = (4, 4, 18, 4)
T_GROUPS = (4, 8, 16, 32)


class ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def _layer_norm(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(channels, eps=1e-6))


class Stem(nn.Module):
    """conv3x3 s2 (3 -> C/2) -> BN -> GELU -> conv3x3 s2 (-> C) -> BN; NCHW in, NHWC out."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels // 2, 3, 2, 1)
        self.norm1 = nn.Sequential(nn.BatchNorm2d(channels // 2))
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(channels // 2, channels, 3, 2, 1)
        self.norm2 = nn.Sequential(nn.BatchNorm2d(channels), ToChannelsLast())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class Mlp(nn.Module):
    def __init__(self, channels: int, hidden: int, fc2_bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels, bias=fc2_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Layer(nn.Module):
    """x + dcn(LN(x)), then x + mlp(LN(x)) (pre-norm, no layer scale: the T configuration)."""

    def __init__(self, channels: int, group: int, flash: bool, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = _layer_norm(channels)
        self.dcn = (DCNv4(channels, group=group, offset_scale=1.0, output_bias=False) if flash
                    else DCNv3(channels, group=group, offset_scale=1.0))
        self.norm2 = _layer_norm(channels)
        self.mlp = Mlp(channels, int(channels * mlp_ratio), fc2_bias=not flash)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dcn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Downsample(nn.Module):
    """conv3x3 s2 (C -> 2C, no bias) -> LayerNorm; NHWC in and out."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 3, 2, 1, bias=False)
        self.norm = nn.Sequential(ToChannelsLast(), nn.LayerNorm(2 * channels, eps=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)))


class Level(nn.Module):
    def __init__(self, channels: int, depth: int, group: int, downsample: bool, flash: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Layer(channels, group, flash) for _ in range(depth))
        self.norm = _layer_norm(channels)
        self.downsample = Downsample(channels) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x if self.downsample is None else self.downsample(x)


class InternImage(nn.Module):
    """stem (stride 4) -> 4 levels (C, 2C, 4C, 8C) -> conv_head 1x1 (8C -> 12C) + BN + GELU -> GAP -> head."""

    def __init__(self, flash: bool = False, channels: int = 64, depths: Sequence[int] = T_DEPTHS,
                 groups: Sequence[int] = T_GROUPS, num_classes: int = 1000, cls_scale: float = 1.5) -> None:
        super().__init__()
        self.patch_embed = Stem(channels)
        self.levels = nn.ModuleList(
            Level(channels * 2 ** i, depth, group, i < len(depths) - 1, flash)
            for i, (depth, group) in enumerate(zip(depths, groups)))
        features = channels * 2 ** (len(depths) - 1)
        head_width = int(features * cls_scale)
        self.conv_head = nn.Sequential(nn.Conv2d(features, head_width, 1, bias=False),
                                       nn.Sequential(nn.BatchNorm2d(head_width)), nn.GELU())
        self.head = nn.Linear(head_width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for level in self.levels:
            x = level(x)
        x = self.conv_head(x.permute(0, 3, 1, 2))
        return self.head(x.mean(dim=(2, 3)))


def internimage_t(depths: Sequence[int] = T_DEPTHS) -> InternImage:
    """InternImage-T: C=64, depths 4-4-18-4, groups 4-8-16-32, MLP ratio 4, offset scale 1."""
    return InternImage(flash=False, depths=depths)


def flash_internimage_t(depths: Sequence[int] = T_DEPTHS) -> InternImage:
    """FlashInternImage-T: InternImage-T's layout with DCNv4.

    The authors zero the offset/weight predictor (the op then starts trivial). For random weights it gets
    ``N(0, 0.1/sqrt(C))``: DCNv4's weights are not softmax-normalised, and larger ones (e.g. 0.05) make
    30 stacked layers chaotic (FP32 and FP64 eager runs then differ by 2e-3 of the output scale).
    """
    model = InternImage(flash=True, depths=depths)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, DCNv4):
                nn.init.normal_(layer.offset_mask.weight, std=0.1 / layer.channels ** 0.5)
    return model
