"""megvii-research/DRConv's ``DRConv`` (the official code) expressed through dynconv's DRConv op.

The official layer takes its region map from outside: ``forward(inputs, mask, Alpha, use_alpha, beta)``
with ``mask`` the region index ``[N, h, w]`` (the argmax of the block's guide ``Alpha``), resized
(nearest) to the output size when it differs. Its filters are routed from a bank: per sample and
region t, ``W_t = sum_e coef[n, t, e] * weight[:, e]`` with ``coef = 2*sigmoid(routing_fc(GAP(x)))/num_W``,
read as ``[O, C, kh, kw]`` (the ``F.unfold`` channel order). The output is the conv of each pixel's
region filter plus ``bias``: dynconv's DRConv op on a one-hot guide of ``mask``. ``Alpha``,
``use_alpha`` and ``beta`` only shape the official backward, so inference ignores them; ``groups`` is
stored but unused by the official forward, and so is it here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..plugins.drconv import drconv


class RoutedRegionConv(nn.Module):
    """The official ``DRConv`` forward on dynconv's DRConv op (same parameter names and shapes)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], groups_num: int, num_W: int,  # noqa: N803
                 bias: bool) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.groups_num, self.num_W = groups_num, num_W
        self.weight = nn.Parameter(torch.zeros(out_channels * in_channels * kernel_size[0] * kernel_size[1], num_W))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.routing_fc = nn.Linear(in_channels, groups_num * num_W)

    def _output_size(self, height: int, width: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        return (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor, Alpha: torch.Tensor | None = None,  # noqa: N803
                use_alpha: bool = False, beta: float = 1.0) -> torch.Tensor:
        n, m = inputs.shape[0], self.groups_num
        coef = 2.0 * torch.sigmoid(self.routing_fc(inputs.mean((2, 3)))) / self.num_W  # [N, m*num_W]
        filters = F.linear(coef.reshape(n, m, self.num_W), self.weight)  # [N, m, O*C*kh*kw]
        filters = filters.reshape(n, m, self.out_channels, self.in_channels, *self.kernel_size)
        regions = torch.arange(m, device=inputs.device).reshape(1, m, 1, 1)
        guide = (mask.unsqueeze(1) == regions).to(inputs.dtype)  # one-hot region map [N, m, h, w]
        guide = F.interpolate(guide, size=self._output_size(inputs.shape[2], inputs.shape[3]), mode="nearest")
        out = drconv(inputs, guide, filters, self.stride, self.padding, self.dilation)
        return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1)
