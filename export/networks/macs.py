"""Count multiply-adds of one forward pass: convolutions and linears by forward hooks, plus each dynamic
layer's own aggregation (the part its core op computes), from the op's math.

Element-wise work (norms, activations, softmax, bilinear interpolation weights) is not counted, as in
the papers' tables. The count is for the whole batch of the input given.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ...plugins.dcnv3 import DCNv3, DCNv4
from ...plugins.ddf import DDFPack
from ...plugins.deform_conv import ExternalOffsetDeformConv2d, ModulatedDeformConv2d
from ...plugins.drconv import DRConv2d
from ...plugins.dynamic_conv.module import _ExpertConv2d
from ...plugins.involution import Involution
from ...plugins.skconv import SKConv2d


def _conv(m: nn.Conv2d, out: torch.Tensor) -> int:
    return out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)


def _linear(m: nn.Linear, out: torch.Tensor) -> int:
    return out.numel() * m.in_features


def _deform(m: ExternalOffsetDeformConv2d, out: torch.Tensor) -> int:
    """The conv over the sampled columns, plus 4 MACs per bilinear sample (+1 for DCNv2's mask).

    The offset conv is an nn.Conv2d, counted on its own.
    """
    taps = math.prod(m.kernel_size)
    per_sample = 5 if isinstance(m, ModulatedDeformConv2d) else 4
    samples = out.shape[0] * m.in_channels * taps * out.shape[2] * out.shape[3]
    return out.numel() * (m.in_channels // m.groups) * taps + samples * per_sample


def _dcn3(m: DCNv3 | DCNv4, out: torch.Tensor) -> int:
    """Per output channel and point: a bilinear sample (4 MACs) times the point's weight (1 MAC).

    5 per sample as InternImage counts its core op; the projections are nn.Linear.
    """
    return out.numel() * m.points * 5


def _window(m: DDFPack | Involution, out: torch.Tensor) -> int:
    """One k x k window per output element (filters come from the layer's own convs)."""
    return out.numel() * m.kernel_size ** 2


def _drconv(m: DRConv2d, out: torch.Tensor) -> int:
    """A dense conv with the filter of the pixel's region (guide and generator convs are counted on their own)."""
    return out.numel() * m.in_channels * math.prod(m.kernel_size)


def _experts(m: _ExpertConv2d, out: torch.Tensor) -> int:
    """The conv with the aggregated kernel plus the aggregation of K kernels (and biases) per sample."""
    per_sample = m.num_experts * (m.weight[0].numel() + (m.out_channels if m.bias is not None else 0))
    return out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size) + out.shape[0] * per_sample


def _select(m: SKConv2d, out: torch.Tensor) -> int:
    """The attention-weighted sum of the M branches (branch and squeeze convs are nn.Conv2d)."""
    return out.numel() * m.num_branches


_RULES: tuple[tuple[type, Callable[[nn.Module, torch.Tensor], int]], ...] = (
    (nn.Conv2d, _conv), (nn.Linear, _linear), (ExternalOffsetDeformConv2d, _deform), ((DCNv3, DCNv4), _dcn3),
    ((DDFPack, Involution), _window), (DRConv2d, _drconv), (_ExpertConv2d, _experts), (SKConv2d, _select))


def _rule(module: nn.Module) -> Callable[[nn.Module, torch.Tensor], int] | None:
    return next((rule for kinds, rule in _RULES if isinstance(module, kinds)), None)


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of ``model(*inputs)``, run in eval mode without grad (the model's mode is restored)."""
    total = 0
    training = model.training
    model.eval()

    def hook(module: nn.Module, _args: object, out: torch.Tensor) -> None:
        nonlocal total
        total += _rule(module)(module, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if _rule(m) is not None]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return total


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
