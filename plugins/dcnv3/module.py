"""DCNv3 (InternImage) and DCNv4 (FlashInternImage) layers around the shared core op."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DynconvError
from ..sampling import as_dtype
from .functional import dcnv3, dcnv4


def _check_common(name: str, channels: int, kernel_size: int, stride: int, pad: int, dilation: int, group: int,
                  remove_center: bool) -> None:
    if group < 1 or channels % group != 0:
        raise DynconvError(f"{name}: channels={channels} must be divisible by group={group}")
    if remove_center and kernel_size % 2 == 0:
        raise DynconvError(f"{name}: remove_center needs an odd kernel_size, got {kernel_size}")
    if stride != 1 or 2 * pad != dilation * (kernel_size - 1):
        # Offsets and weights are predicted at the input resolution, so the op output must keep it.
        raise DynconvError(f"{name}: offsets are predicted per input pixel, so stride must be 1 and "
                           f"pad = dilation*(kernel_size-1)/2; got stride={stride}, pad={pad}, "
                           f"dilation={dilation}, kernel_size={kernel_size}")


def _gate(y: torch.Tensor, value: torch.Tensor, scale: torch.Tensor, group_channels: int) -> torch.Tensor:
    """Centre feature scale: ``y*(1 - l) + value*l`` with the per-group ``l`` [N, H, W, G] spread over Cg channels."""
    n, h, w, g = scale.shape
    scale = scale.unsqueeze(-1).expand(n, h, w, g, group_channels).reshape(n, h, w, g * group_channels)
    return y * (1 - scale) + value * scale


class _ChannelsLast(nn.Module):
    """NCHW -> NHWC permute (a module so parameter paths match InternImage's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class DCNv3(nn.Module):
    """DCNv3 layer of InternImage (Wang et al., CVPR 2023); input and output ``[N, H, W, C]``.

    With ``G`` groups of ``Cg = C/G`` channels and ``P = k*k - remove_center`` points:
    ``v = input_proj(x)``; ``q = GELU(LN(DWConv_{dw_k}(x)))`` (LayerNorm eps 1e-6 over channels);
    ``offset = Linear(C -> G*P*2)(q)``; ``mask = softmax_P(Linear(C -> G*P)(q))`` per group;
    ``y = dcnv3(v, offset, mask)`` (see :func:`dynconv.plugins.dcnv3.dcnv3`); with
    ``center_feature_scale``: ``l = sigmoid(q @ W_c^T + b_c)`` per group (repeated over its Cg
    channels), ``y = y*(1 - l) + v*l``; ``out = output_proj(y)``. The offset and mask Linears start
    at zero (zero offsets, uniform weights 1/P), like the original; parameter names match
    InternImage's ``DCNv3`` so its state dicts load unchanged.
    """

    def __init__(self, channels: int = 64, kernel_size: int = 3, dw_kernel_size: int | None = None, stride: int = 1,
                 pad: int = 1, dilation: int = 1, group: int = 4, offset_scale: float = 1.0,
                 center_feature_scale: bool = False, remove_center: bool = False, act_layer: str = "GELU",
                 norm_layer: str = "LN") -> None:
        super().__init__()
        _check_common("DCNv3", channels, kernel_size, stride, pad, dilation, group, remove_center)
        if (act_layer, norm_layer) != ("GELU", "LN"):  # InternImage's signature; every released model uses these
            raise DynconvError(f"DCNv3: act_layer={act_layer!r}, norm_layer={norm_layer!r} are not supported; "
                               "the offset branch is DWConv -> LayerNorm ('LN') -> GELU")
        dw_kernel_size = kernel_size if dw_kernel_size is None else dw_kernel_size
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.pad, self.dilation = pad, dilation
        self.group, self.group_channels, self.offset_scale = group, channels // group, offset_scale
        self.remove_center = int(remove_center)
        self.points = kernel_size * kernel_size - self.remove_center
        # Same parameter paths as InternImage (dw_conv.0 conv, dw_conv.1.1 LayerNorm), so checkpoints load.
        self.dw_conv = nn.Sequential(
            nn.Conv2d(channels, channels, dw_kernel_size, padding=(dw_kernel_size - 1) // 2, groups=channels),
            nn.Sequential(_ChannelsLast(), nn.LayerNorm(channels, eps=1e-6)),
            nn.GELU())
        self.offset = nn.Linear(channels, group * self.points * 2)
        self.mask = nn.Linear(channels, group * self.points)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self.center_feature_scale = center_feature_scale
        if center_feature_scale:
            self.center_feature_scale_proj_weight = nn.Parameter(torch.zeros(group, channels))
            self.center_feature_scale_proj_bias = nn.Parameter(torch.zeros(group))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for layer in (self.offset, self.mask):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = self.input_proj(x)
        query = self.dw_conv(x.permute(0, 3, 1, 2))
        offset = self.offset(query)
        logits = self.mask(query)  # softmax per group of P points; rows of P keep exports free of size plumbing
        mask = as_dtype(logits.reshape(-1, self.points).softmax(-1).reshape_as(logits), value.dtype)
        y = dcnv3(value, offset, mask, self.kernel_size, self.stride, self.pad, self.dilation, self.group,
                  self.group_channels, self.offset_scale, self.remove_center)
        if self.center_feature_scale:
            scale = F.linear(query, self.center_feature_scale_proj_weight, self.center_feature_scale_proj_bias)
            scale = scale.sigmoid()
            y = _gate(y, value, scale, self.group_channels)
        return self.output_proj(y)


class DCNv4(nn.Module):
    """DCNv4 layer (Xiong et al., CVPR 2024); input and output ``[N, H, W, C]``.

    Differences from :class:`DCNv3`: no softmax (weights are unbounded), no LayerNorm/GELU on the
    offset branch (optional plain depthwise conv ``dw_kernel_size``), and one Linear predicts
    offsets and weights together: ``om = offset_mask(q)`` with ``ceil(G*P*3/8)*8`` outputs, per group
    ``[2P offsets (x, y) | P weights]`` (trailing channels unused);
    ``y = dcnv4(value_proj(x), om)``; ``out = output_proj(y)``. ``without_pointwise`` drops
    value_proj/output_proj. With ``center_feature_scale`` the gate is computed, as in the original,
    from the aggregated ``y``: ``l = sigmoid(y @ W_c^T + b_c)``, ``y = y*(1 - l) + v*l``.
    Like the original, ``forward`` also takes ``[N, H*W, C]`` plus ``shape=(H, W)`` (a square map when
    omitted) and then returns ``[N, H*W, C]``. Requires ``C/G % 16 == 0`` like the original CUDA kernel.
    """

    def __init__(self, channels: int = 64, kernel_size: int = 3, stride: int = 1, pad: int = 1, dilation: int = 1,
                 group: int = 4, offset_scale: float = 1.0, dw_kernel_size: int | None = None,
                 center_feature_scale: bool = False, remove_center: bool = False, output_bias: bool = True,
                 without_pointwise: bool = False) -> None:
        super().__init__()
        _check_common("DCNv4", channels, kernel_size, stride, pad, dilation, group, remove_center)
        if (channels // group) % 16 != 0:
            raise DynconvError(f"DCNv4: channels/group = {channels // group} must be a multiple of 16 "
                               f"(as in the original kernel); change channels={channels} or group={group}")
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.pad, self.dilation = pad, dilation
        self.group, self.group_channels, self.offset_scale = group, channels // group, offset_scale
        self.remove_center = int(remove_center)
        self.points = kernel_size * kernel_size - self.remove_center
        self.dw_kernel_size = dw_kernel_size
        if dw_kernel_size is not None:
            self.offset_mask_dw = nn.Conv2d(channels, channels, dw_kernel_size, padding=(dw_kernel_size - 1) // 2,
                                            groups=channels)
        self.offset_mask = nn.Linear(channels, math.ceil(group * self.points * 3 / 8) * 8)
        self.without_pointwise = without_pointwise
        if not without_pointwise:
            self.value_proj = nn.Linear(channels, channels)
            self.output_proj = nn.Linear(channels, channels, bias=output_bias)
        self.center_feature_scale = center_feature_scale
        if center_feature_scale:
            self.center_feature_scale_proj_weight = nn.Parameter(torch.zeros(group, channels))
            self.center_feature_scale_proj_bias = nn.Parameter(torch.zeros(group))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)
        if not self.without_pointwise:
            nn.init.xavier_uniform_(self.value_proj.weight)
            nn.init.zeros_(self.value_proj.bias)
            nn.init.xavier_uniform_(self.output_proj.weight)
            if self.output_proj.bias is not None:
                nn.init.zeros_(self.output_proj.bias)

    def forward(self, x: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
        if x.dim() == 3:  # the original's token layout [N, H*W, C]; shape=(H, W), square when omitted
            n, length, c = x.shape
            if shape is None:
                side = math.isqrt(length)
                if side * side != length:
                    raise DynconvError(f"DCNv4: {length} tokens are not a square map: pass shape=(H, W)")
                shape = (side, side)
            return self.forward(x.reshape(n, shape[0], shape[1], c)).reshape(n, length, c)
        value = x if self.without_pointwise else self.value_proj(x)
        query = x
        if self.dw_kernel_size is not None:
            query = self.offset_mask_dw(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        offset_mask = self.offset_mask(query)
        y = dcnv4(value, offset_mask, self.kernel_size, self.stride, self.pad, self.dilation, self.group,
                  self.group_channels, self.offset_scale, self.remove_center)
        if self.center_feature_scale:
            scale = F.linear(y, self.center_feature_scale_proj_weight, self.center_feature_scale_proj_bias).sigmoid()
            y = _gate(y, value, scale, self.group_channels)
        return y if self.without_pointwise else self.output_proj(y)
