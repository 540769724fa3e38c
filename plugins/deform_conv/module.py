"""Deformable convolution layers: DCNv1 and DCNv2 with their offset predictors, and a bare op layer."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from ..errors import DynconvError
from .functional import deform_conv2d, pad_surplus, split_padding


class ExternalOffsetDeformConv2d(nn.Module):
    """Deformable convolution whose offsets (and mask) are inputs, like ``torchvision.ops.DeformConv2d``.

    ``forward(input [N,Cin,H,W], offset [N,2*og*kh*kw,Ho,Wo], mask [N,og*kh*kw,Ho,Wo] | None)``
    returns :func:`deform_conv2d` of them with this layer's ``weight [Cout, Cin/groups, kh, kw]`` and
    ``bias [Cout]``. ``offset_groups=None`` infers og from the offset's channels (torchvision);
    an integer (mmcv's ``deform_groups``) is checked against them. ``padding`` may be
    ``(top, left, bottom, right)``; the offset-predicting subclasses pad their ``conv_offset`` alike.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, offset_groups: int | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        name = type(self).__name__
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise DynconvError(f"{name}: in_channels={in_channels} and out_channels={out_channels} "
                               f"must both be divisible by groups={groups}")
        if offset_groups is not None and (offset_groups < 1 or in_channels % offset_groups):
            raise DynconvError(f"{name}: in_channels={in_channels} is not divisible by offset_groups={offset_groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.padding = tuple(padding) if isinstance(padding, Sequence) and len(padding) == 4 else _pair(padding)
        split_padding(self.padding)  # validates
        self.groups, self.offset_groups = groups, offset_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation (Kaiming-uniform weight, fan-in-bounded bias)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation,
                             mask, groups=self.groups, offset_groups=self.offset_groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"offset_groups={self.offset_groups}, bias={self.bias is not None}")


class DeformConv2d(ExternalOffsetDeformConv2d):
    """DCNv1 layer (Dai et al., ICCV 2017) that predicts its own offsets, like mmcv's ``DeformConv2dPack``.

    ``offset = conv_offset(x)``: a ``kh x kw`` conv with this layer's stride/padding/dilation and
    ``2*offset_groups*kh*kw`` output channels (``(dy, dx)`` per group and tap), zero-initialised so
    the layer starts as a plain convolution. Output ``[N, Cout, Ho, Wo]``, the convolution rule.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, offset_groups: int = 1,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         offset_groups, bias)
        self.conv_offset = nn.Conv2d(in_channels, self._predicted_channels(), self.kernel_size, self.stride,
                                     split_padding(self.padding)[0], self.dilation, bias=True)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def _predicted_channels(self) -> int:
        return 2 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``conv_offset`` with this layer's padding, (top, left, bottom, right) included."""
        return self.conv_offset(pad_surplus(x, self.padding)[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, self.predict(x))


class ModulatedDeformConv2d(DeformConv2d):
    """DCNv2 layer (Zhu et al., CVPR 2019), like mmcv's ``ModulatedDeformConv2dPack``.

    ``conv_offset(x)`` has ``3*offset_groups*kh*kw`` channels: the first ``2*og*kh*kw`` are the
    offsets, the last ``og*kh*kw`` the mask logits (``mask = sigmoid``); zero-initialised, so the
    layer starts as a convolution scaled by 0.5.
    """

    def _predicted_channels(self) -> int:
        return 3 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n_mask = self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
        predicted = self.predict(x)  # slices, not torch.split: ONNX Split has no 18 -> 17 adapter
        offset, logits = predicted[:, :2 * n_mask], predicted[:, 2 * n_mask:]
        return ExternalOffsetDeformConv2d.forward(self, x, offset, torch.sigmoid(logits))
