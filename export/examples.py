"""Small deterministic example networks, one per op family plus a mixed one.

Each is a ResNet-style stack: a strided 3x3 stem, bottleneck blocks whose middle 3x3 layer is the
dynamic op, global pooling and a linear classifier. Weights come from a fixed seed, and layers that
their papers zero-initialise (offset and mask predictors, attention heads) get small random values,
so every dynamic path actually changes the output.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..plugins.dcnv3 import DCNv3, DCNv4
from ..plugins.ddf import DDFPack
from ..plugins.deform_conv import DeformConv2d, ModulatedDeformConv2d
from ..plugins.drconv import DRConv2d
from ..plugins.dynamic_conv import CondConv2d, DynamicConv2d
from ..plugins.errors import DynconvError
from ..plugins.involution import Involution
from ..plugins.skconv import SKConv2d
from .networks import NETWORK_INPUT_SHAPE, NETWORKS, REDUCED_INPUT_SHAPE

LayerFactory = Callable[[int, int], nn.Module]
DEFAULT_INPUT_SHAPE = (1, 3, 64, 64)


class ChannelsLast(nn.Module):
    """Run an NHWC layer (DCNv3/DCNv4) inside an NCHW network."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Bottleneck(nn.Module):
    """1x1 reduce -> dynamic 3x3 (carries the stride) -> 1x1 expand, with a residual shortcut."""

    def __init__(self, channels: int, mid: int, stride: int, make_layer: LayerFactory) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU())
        self.dynamic = make_layer(mid, stride)
        self.post = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, channels, 1, bias=False),
                                  nn.BatchNorm2d(channels))
        self.shortcut = nn.Identity() if stride == 1 else nn.AvgPool2d(stride, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.post(self.dynamic(self.reduce(x))) + self.shortcut(x))


class ExampleNet(nn.Module):
    """stem (3x3 s2) -> bottlenecks -> global average pool -> linear classifier."""

    def __init__(self, layers: list[tuple[LayerFactory, int]], channels: int = 64, mid: int = 32,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.blocks = nn.Sequential(*[Bottleneck(channels, mid, stride, make) for make, stride in layers])
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def _dcnv1(c: int, s: int) -> nn.Module:
    return DeformConv2d(c, c, 3, stride=s, padding=1, bias=False)


def _dcnv2(c: int, s: int) -> nn.Module:
    return ModulatedDeformConv2d(c, c, 3, stride=s, padding=1, offset_groups=2, bias=False)


def _dcnv3(c: int, s: int) -> nn.Module:
    return ChannelsLast(DCNv3(c, kernel_size=3, stride=1, pad=1, group=c // 16))


def _dcnv4(c: int, s: int) -> nn.Module:
    return ChannelsLast(DCNv4(c, kernel_size=3, stride=1, pad=1, group=c // 16))


def _ddf(c: int, s: int) -> nn.Module:
    return DDFPack(c, kernel_size=3, stride=s)


def _involution(c: int, s: int) -> nn.Module:
    return Involution(c, kernel_size=7, stride=s, group_channels=16)


def _drconv(c: int, s: int) -> nn.Module:
    return DRConv2d(c, c, 3, region_num=4, stride=s, padding=1)


def _dynamic_conv(c: int, s: int) -> nn.Module:
    return DynamicConv2d(c, c, 3, stride=s, padding=1, num_experts=4)


def _condconv(c: int, s: int) -> nn.Module:
    return CondConv2d(c, c, 3, stride=s, padding=1, num_experts=4)


def _skconv(c: int, s: int) -> nn.Module:
    return SKConv2d(c, c, stride=s)


def _family(make: LayerFactory, strided: bool = True) -> list[tuple[LayerFactory, int]]:
    return [(make, 1), (make, 2 if strided else 1)]


EXAMPLES: dict[str, Callable[[], list[tuple[LayerFactory, int]]]] = {
    "dcnv1": lambda: _family(_dcnv1),
    "dcnv2": lambda: _family(_dcnv2),
    "dcnv3": lambda: _family(_dcnv3, strided=False),
    "dcnv4": lambda: _family(_dcnv4, strided=False),
    "ddf": lambda: _family(_ddf),
    "involution": lambda: _family(_involution),
    "drconv": lambda: _family(_drconv),
    "dynamic_conv": lambda: _family(_dynamic_conv),
    "condconv": lambda: _family(_condconv),
    "skconv": lambda: _family(_skconv),
    "mixed": lambda: [(_dcnv2, 1), (_dcnv3, 1), (_ddf, 2), (_involution, 1), (_drconv, 2), (_dcnv1, 1)],
}


# the small op-family examples above plus the published architectures of .networks
EXAMPLE_NAMES: list[str] = sorted(EXAMPLES) + sorted(NETWORKS)


def build_example(name: str, seed: int = 0, reduced: bool = False) -> tuple[nn.Module, torch.Tensor]:
    """The example network ``name`` in eval mode and a seeded input.

    Op-family examples take DEFAULT_INPUT_SHAPE; published networks take NETWORK_INPUT_SHAPE, or with
    ``reduced`` are built one block per stage and take REDUCED_INPUT_SHAPE (cheap export tests).
    """
    if name not in EXAMPLES and name not in NETWORKS:
        raise DynconvError(f"unknown example {name!r}; choose from {EXAMPLE_NAMES}")
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if name in NETWORKS:
            model = NETWORKS[name].reduced() if reduced else NETWORKS[name].full()
            shape = REDUCED_INPUT_SHAPE if reduced else NETWORK_INPUT_SHAPE
        else:
            model, shape = ExampleNet(EXAMPLES[name]()), DEFAULT_INPUT_SHAPE
        _wake_zero_initialised(model, generator)
        _randomise_norm_statistics(model, generator)
    model.eval()
    return model, torch.randn(shape, generator=generator)


def _wake_zero_initialised(model: nn.Module, generator: torch.Generator) -> None:
    """Give all-zero weights (offset/mask/attention predictors) small random values."""
    with torch.no_grad():
        for param in model.parameters():
            if param.numel() > 1 and not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


def _randomise_norm_statistics(model: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
