"""Single-op models: one core op with random, valid inputs, for plugin parity tests and benchmarks.

An :class:`OpCase` names a core op, its attributes and how to make inputs for a given
``(N, C, H, W)``; ``case.model()`` wraps the op in an ``nn.Module`` whose graph inputs are the op's
runtime tensors (DCN's weight and bias are parameters, as in a real network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..plugins.registration import call_op
from ..plugins.registry import get_spec
from ..plugins.spec import OpSpec, conv_out

InputFactory = Callable[[int, int, int, int, torch.Generator], dict[str, torch.Tensor | None]]


@dataclass
class OpCase:
    """One op configuration. ``attrs(C)`` gives its attributes for C input channels (group counts
    may depend on C); ``make(n, c, h, w, gen)`` returns the op's tensors by spec input name."""

    op: str
    attrs: Callable[[int], dict[str, Any]]
    make: InputFactory
    layout: str = "NCHW"
    label: str = ""
    parameters: tuple[str, ...] = field(default_factory=tuple)

    @property
    def spec(self) -> OpSpec:
        return get_spec(self.op)

    def inputs(self, n: int, c: int, h: int, w: int, seed: int = 0) -> dict[str, torch.Tensor | None]:
        return self.make(n, c, h, w, torch.Generator().manual_seed(seed))

    def model(self, n: int, c: int, h: int, w: int, seed: int = 0) -> tuple["CoreOpModel", tuple[torch.Tensor, ...]]:
        """The wrapper module and its graph inputs (tensors in spec order, parameters excluded)."""
        tensors = self.inputs(n, c, h, w, seed)
        module = CoreOpModel(self.spec, self.attrs(c), tensors, self.parameters)
        return module.eval(), tuple(t for name, t in tensors.items() if t is not None and name not in self.parameters)


class CoreOpModel(nn.Module):
    """Calls one core op; the names in ``parameters`` are held as parameters, the rest are inputs."""

    def __init__(self, spec: OpSpec, attrs: dict[str, Any], tensors: dict[str, torch.Tensor | None],
                 parameters: tuple[str, ...]) -> None:
        super().__init__()
        self.spec, self.attrs = spec, dict(attrs)
        self.present = [tensors.get(t.name) is not None for t in spec.inputs]
        self.held = [t.name in parameters for t in spec.inputs]
        for name in parameters:
            if tensors.get(name) is not None:
                self.register_parameter(name, nn.Parameter(tensors[name].clone(), requires_grad=False))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        it = iter(inputs)
        tensors = []
        for t, present, held in zip(self.spec.inputs, self.present, self.held):
            tensors.append(None if not present else getattr(self, t.name) if held else next(it))
        return call_op(self.spec, tensors, self.attrs)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * scale


def deform_conv_case(cout_factor: int = 1, kernel=3, stride=1, padding=1, dilation=1, groups=1, offset_groups=1,
                     mask: bool = True, bias: bool = True) -> OpCase:
    k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)

    def make(n, c, h, w, gen):
        ho, wo = conv_out(h, k[0], s[0], p[0], p[0], d[0]), conv_out(w, k[1], s[1], p[1], p[1], d[1])
        taps = offset_groups * k[0] * k[1]
        return {"input": _randn(gen, n, c, h, w),
                "weight": _randn(gen, c * cout_factor, c // groups, *k, scale=(c // groups * k[0] * k[1]) ** -0.5),
                "offset": _randn(gen, n, 2 * taps, ho, wo, scale=1.5),
                "mask": torch.sigmoid(_randn(gen, n, taps, ho, wo)) if mask else None,
                "bias": _randn(gen, c * cout_factor) if bias else None}

    attrs = dict(stride=list(s), padding=list(p), dilation=list(d), groups=groups, offset_groups=offset_groups)
    return OpCase("DynconvDeformConv2d", lambda c: attrs, make, parameters=("weight", "bias"),
                  label=f"dcn{'v2' if mask else 'v1'} k{k} s{s} p{p} d{d} g{groups} og{offset_groups}")


def dcnv3_case(kernel=3, stride=1, padding=1, dilation=1, group_channels=16, offset_scale=1.0,
               remove_center=0) -> OpCase:
    k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    points = k[0] * k[1] - remove_center

    def make(n, c, h, w, gen):
        g = c // group_channels
        ho, wo = conv_out(h, k[0], s[0], p[0], p[0], d[0]), conv_out(w, k[1], s[1], p[1], p[1], d[1])
        mask = torch.softmax(_randn(gen, n, ho, wo, g, points), -1).reshape(n, ho, wo, g * points)
        return {"input": _randn(gen, n, h, w, c), "offset": _randn(gen, n, ho, wo, g * points * 2, scale=1.5),
                "mask": mask}

    def attrs(c: int) -> dict:
        return dict(kernel_size=list(k), stride=list(s), padding=list(p), dilation=list(d), group=c // group_channels,
                    group_channels=group_channels, offset_scale=offset_scale, remove_center=remove_center)

    return OpCase("DynconvDCNv3", attrs, make, layout="NHWC",
                  label=f"dcnv3 k{k} s{s} p{p} d{d} cg{group_channels} os{offset_scale} rc{remove_center}")


def ddf_case(kernel=3, stride=1, dilation=1, combine="mul") -> OpCase:
    def make(n, c, h, w, gen):
        r = dilation * (kernel - 1) // 2
        ho, wo = conv_out(h, kernel, stride, r, r, dilation), conv_out(w, kernel, stride, r, r, dilation)
        return {"input": _randn(gen, n, c, h, w), "channel_filter": _randn(gen, n, c, kernel, kernel),
                "spatial_filter": _randn(gen, n, kernel * kernel, ho, wo)}

    attrs = dict(kernel_size=kernel, stride=stride, dilation=dilation, combine=combine)
    return OpCase("DynconvDDF", lambda c: attrs, make,
                  label=f"ddf k{kernel} s{stride} d{dilation} {combine}")


def involution_case(kernel=7, stride=1, padding=None, dilation=1, group_channels=16) -> OpCase:
    k, s, d = _pair(kernel), _pair(stride), _pair(dilation)
    p = _pair(padding) if padding is not None else (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)

    def make(n, c, h, w, gen):
        ho, wo = conv_out(h, k[0], s[0], p[0], p[0], d[0]), conv_out(w, k[1], s[1], p[1], p[1], d[1])
        return {"input": _randn(gen, n, c, h, w),
                "weight": _randn(gen, n, (c // group_channels) * k[0] * k[1], ho, wo, scale=0.3)}

    def attrs(c: int) -> dict:
        return dict(kernel_size=list(k), stride=list(s), padding=list(p), dilation=list(d), groups=c // group_channels)

    return OpCase("DynconvInvolution", attrs, make, label=f"involution k{k} s{s} p{p} d{d} cg{group_channels}")


GUIDE_MARGIN = 0.1  # >> FP16 rounding of |guide| <~ 5 (2^-11 x 5 x 2 ~ 0.005): no argmax flips in FP16 cases


def _guide_with_margin(guide: torch.Tensor) -> torch.Tensor:
    """Lift each pixel's top region by GUIDE_MARGIN so that rounding cannot change the argmax."""
    top = guide.argmax(1, keepdim=True)
    return guide.scatter_add(1, top, torch.full(top.shape, GUIDE_MARGIN, dtype=guide.dtype))


def drconv_case(kernel=3, stride=1, padding=1, dilation=1, region_num=4, cout_factor=1) -> OpCase:
    k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)

    def make(n, c, h, w, gen):
        ho, wo = conv_out(h, k[0], s[0], p[0], p[0], d[0]), conv_out(w, k[1], s[1], p[1], p[1], d[1])
        return {"input": _randn(gen, n, c, h, w), "guide": _guide_with_margin(_randn(gen, n, region_num, ho, wo)),
                "filters": _randn(gen, n, region_num, c * cout_factor, c, *k, scale=(c * k[0] * k[1]) ** -0.5)}

    attrs = dict(kernel_size=list(k), stride=list(s), padding=list(p), dilation=list(d), region_num=region_num)
    return OpCase("DynconvDRConv", lambda c: attrs, make,
                  label=f"drconv k{k} s{s} p{p} d{d} m{region_num}")


def parity_grid() -> list[OpCase]:
    """The attribute grid the GPU parity tests run for every op (asymmetric cases included)."""
    return [
        deform_conv_case(),
        deform_conv_case(stride=2, dilation=2, padding=2, groups=2, offset_groups=4),
        deform_conv_case(kernel=(3, 5), stride=(1, 2), padding=(1, 2), dilation=(2, 1), mask=False, bias=False),
        deform_conv_case(cout_factor=2, kernel=1, padding=0, offset_groups=2),
        dcnv3_case(),
        dcnv3_case(kernel=(3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), offset_scale=2.0),
        dcnv3_case(remove_center=1, group_channels=8, offset_scale=0.5),
        ddf_case(),
        ddf_case(stride=2, dilation=2, combine="add"),
        ddf_case(kernel=5),
        involution_case(),
        involution_case(kernel=3, stride=2, dilation=2),
        involution_case(kernel=(3, 5), stride=(2, 1), padding=(1, 1), dilation=(1, 2), group_channels=8),
        drconv_case(),
        drconv_case(stride=2, dilation=2, padding=2, region_num=8),
        drconv_case(kernel=(3, 1), stride=(1, 2), padding=(1, 0), region_num=2, cout_factor=2),
    ]


def benchmark_cases() -> list[OpCase]:
    """One 3x3 configuration per op, as in the issue's speed targets."""
    return [deform_conv_case(), deform_conv_case(mask=False), dcnv3_case(), ddf_case(), involution_case(kernel=3),
            drconv_case()]
