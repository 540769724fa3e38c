"""DRConv layer, paper form: guide conv, filter generator, region-select conv."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from ..errors import DynconvError
from .functional import drconv, drconv_straight_through
from .pooling import AdaptiveAvgPool2d


class DRConv2d(nn.Module):
    """Dynamic Region-Aware Convolution (Chen et al., CVPR 2021), as described in the paper.

    - Guide: ``G = Conv2d(C -> m, k, stride, padding, dilation)(x)`` ``[N, m, Ho, Wo]``; pixel (i, j)
      belongs to region ``argmax_t G[:, t, i, j]``.
    - Filter generator: ``AdaptiveAvgPool(k) -> Conv1x1(C -> m*m) -> Sigmoid ->
      Conv1x1(m*m -> m*O*C, groups=m)`` gives ``[N, m*O*C, kh, kw]``, read as ``[N, m, O, C, kh, kw]``:
      one ``[O, C, kh, kw]`` filter per region and sample (tap (u, v) comes from pooled pixel (u, v)).
    - Output: ``Y[n, :, i, j] = (W_{n,t*} ⋆ x[n])[:, i, j]``, ``[N, O, Ho, Wo]`` by the conv rule.

    Training mode runs :func:`drconv_straight_through` (hard selection forward, softmax gradient to
    the guide); eval mode runs the core op :func:`drconv`. Both give identical outputs.

    The official megvii code differs: its region filters are a CondConv-style mixture of a
    parameter bank (``2*sigmoid(Linear(GAP(x)))/num_W`` coefficients per region), and the region
    mask comes from outside the layer (computed once per ShuffleNetV2 block). This is the paper form.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 region_num: int = 8, stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1) -> None:
        super().__init__()
        if min(in_channels, out_channels, region_num) < 1:
            raise DynconvError(f"DRConv2d: in_channels={in_channels}, out_channels={out_channels} and "
                               f"region_num={region_num} must all be >= 1")
        self.in_channels, self.out_channels, self.region_num = in_channels, out_channels, region_num
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        m = region_num
        self.guide = nn.Conv2d(in_channels, m, self.kernel_size, self.stride, self.padding, self.dilation)
        self.filter_generator = nn.Sequential(
            AdaptiveAvgPool2d(self.kernel_size),
            nn.Conv2d(in_channels, m * m, 1),
            nn.Sigmoid(),
            nn.Conv2d(m * m, m * out_channels * in_channels, 1, groups=m),
        )

    def region_filters(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample filters ``[N, m, O, C, kh, kw]``."""
        return self.filter_generator(x).reshape(-1, self.region_num, self.out_channels, self.in_channels,
                                                *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        guide = self.guide(x)
        filters = self.region_filters(x)
        conv = drconv_straight_through if self.training else drconv
        return conv(x, guide, filters, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"region_num={self.region_num}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}")
