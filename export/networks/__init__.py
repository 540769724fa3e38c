"""Published architectures built from dynconv's layers, with their papers' sizes.

Each entry builds the network with random weights (``dynconv.export.examples.build_example`` seeds
it); ``reduced`` builds the same layout with one block per stage, for cheap export tests. Paper
numbers are (parameters, multiply-adds at 224x224) with the table they come from, where published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from .efficientnet_condconv import condconv_efficientnet_b0
from .internimage import flash_internimage_t, internimage_t
from .resnet_family import ddfnet50, dy_resnet50, rednet50, resnet50_dcn, sknet50
from .shufflenet_drconv import drconv_shufflenetv2


@dataclass(frozen=True)
class PaperSize:
    params: float | None
    macs: float | None
    source: str
    macs_tolerance: float = 0.02


@dataclass(frozen=True)
class Network:
    full: Callable[[], nn.Module]
    reduced: Callable[[], nn.Module]
    paper: PaperSize | None = None
    detection: bool = False


ONE = (1, 1, 1, 1)
NETWORKS: dict[str, Network] = {
    # InternImage prints "5G" to one significant figure, so the tolerance is that rounding's half-step
    "internimage_t": Network(internimage_t, lambda: internimage_t(ONE), PaperSize(
        30e6, 5e9, "InternImage (CVPR 2023) ImageNet-1K table and README: InternImage-T 30M / 5G", 0.1), True),
    "flash_internimage_t": Network(flash_internimage_t, lambda: flash_internimage_t(ONE), PaperSize(
        30e6, 5e9, "DCNv4 (CVPR 2024) ImageNet table, as read: FlashInternImage-T 30M / 5G", 0.1)),
    "rednet50": Network(rednet50, lambda: rednet50(ONE), PaperSize(
        15.5e6, 2.7e9, "Involution (CVPR 2021) ImageNet table, RedNet-50 15.5M / 2.7G (README: 15.54M / 2.71G)")),
    "ddfnet50": Network(ddfnet50, lambda: ddfnet50(ONE), PaperSize(
        16.8e6, 2.3e9, "DDF (CVPR 2021) ImageNet table, as read: DDF-ResNet-50 16.8M / 2.3G (README: 16.8M)")),
    "resnet50_dcn": Network(resnet50_dcn, lambda: resnet50_dcn(ONE), None, True),
    "drconv_shufflenetv2": Network(drconv_shufflenetv2, lambda: drconv_shufflenetv2((1, 1, 1))),
    "dy_resnet50": Network(dy_resnet50, lambda: dy_resnet50(ONE), PaperSize(
        100.88e6, None, "ODConv (ICLR 2022) ResNet-50 table, as read: DyConv (4x) 100.88M")),
    "condconv_efficientnet_b0": Network(
        condconv_efficientnet_b0, lambda: condconv_efficientnet_b0((1,) * 7), PaperSize(
            24.0e6, 413e6, "CondConv README (tensorflow/tpu): CondConv-EfficientNet-B0, 8 experts, 24.0M / 413M")),
    "sknet50": Network(sknet50, lambda: sknet50(ONE), PaperSize(
        27.5e6, 4.47e9, "SKNet (CVPR 2019) ImageNet table, as read: SKNet-50 27.5M / 4.47G")),
}

NETWORK_INPUT_SHAPE = (1, 3, 224, 224)
REDUCED_INPUT_SHAPE = (1, 3, 64, 64)
