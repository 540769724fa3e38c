"""ResNet-50 variants with a dynamic layer: RedNet-50, DDF-ResNet-50, ResNet-50-DCNv2, DY-ResNet-50, SKNet-50."""

from __future__ import annotations

from torch import nn

from ...plugins.ddf import DDFPack
from ...plugins.deform_conv import ModulatedDeformConv2d
from ...plugins.dynamic_conv import DynamicConv2d
from ...plugins.involution import Involution
from ...plugins.skconv import SKConv2d
from .resnet import ConvModule, ConvSlot, ResNet, plain_conv


def rednet50(depths: tuple[int, ...] = (3, 4, 6, 3)) -> ResNet:
    """RedNet-50 (Li et al., CVPR 2021): involution (k=7, 16 channels per group, r=4) replaces every
    bottleneck 3x3; the stem is conv3x3 s2 (3->32) -> involution(32, k=3) -> BN -> ReLU -> conv3x3 (32->64)."""
    def make(slot: ConvSlot) -> nn.Module:
        return Involution(slot.in_channels, 7, slot.stride) if slot.role == "conv2" else plain_conv(slot)

    stem = nn.Sequential(ConvModule(3, 32, 3, 2), Involution(32, 3, 1), nn.BatchNorm2d(32), nn.ReLU(),
                         ConvModule(32, 64, 3, 1))
    return ResNet(make, stem=stem, depths=depths)


def ddfnet50(depths: tuple[int, ...] = (3, 4, 6, 3)) -> ResNet:
    """DDF-ResNet-50 (Zhou et al., CVPR 2021; ``ddf_mul_resnet50``): DDFPack (k=3, se_ratio 0.2, 'mul') replaces
    every bottleneck 3x3 of a torchvision-style ResNet-50."""
    def make(slot: ConvSlot) -> nn.Module:
        if slot.role == "conv2":
            return DDFPack(slot.in_channels, 3, slot.stride, se_ratio=0.2, kernel_combine="mul")
        return plain_conv(slot)

    return ResNet(make, depths=depths)


def resnet50_dcn(depths: tuple[int, ...] = (3, 4, 6, 3)) -> ResNet:
    """The common detector backbone (mmdet ``dcn=DCNv2, deform_groups=1, stage_with_dcn=(F, T, T, T)``):
    ResNet-50 with modulated deformable 3x3 convs in stages c3-c5; returns C2..C5 (no classifier)."""
    def make(slot: ConvSlot) -> nn.Module:
        if slot.role == "conv2" and slot.stage >= 1:
            return ModulatedDeformConv2d(slot.in_channels, slot.out_channels, 3, slot.stride, 1, offset_groups=1,
                                         bias=False)
        return plain_conv(slot)

    return ResNet(make, depths=depths, num_classes=0)


def dy_resnet50(depths: tuple[int, ...] = (3, 4, 6, 3)) -> ResNet:
    """DY-ResNet-50 (Chen et al., CVPR 2020): every convolution but the stem's is a DynamicConv with K=4 experts
    and a C/4 attention bottleneck."""
    def make(slot: ConvSlot) -> nn.Module:
        return DynamicConv2d(slot.in_channels, slot.out_channels, slot.kernel_size, slot.stride,
                             slot.kernel_size // 2, bias=False, num_experts=4, reduction=0.25)

    return ResNet(make, depths=depths)


def sknet50(depths: tuple[int, ...] = (3, 4, 6, 3)) -> ResNet:
    """SKNet-50 (Li et al., CVPR 2019): ResNeXt-50 (32x4d) whose grouped 3x3 is SK[M=2, G=32, r=16, L=32]
    (3x3 and dilated 3x3 branches, each with BN+ReLU, so the block has no bn2)."""
    def make(slot: ConvSlot) -> nn.Module:
        if slot.role == "conv2":
            return SKConv2d(slot.in_channels, slot.out_channels, 2, slot.stride, groups=32, reduction=16, min_dim=32,
                            select_bias=False)
        return plain_conv(slot)

    return ResNet(make, depths=depths, widths=(128, 256, 512, 1024), norm2=False)
