"""Functional deformable convolution (DCNv1/DCNv2): the registered custom op and its reference."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import DynconvError
from ..registration import call_op, define_op
from .spec import DEFORM_CONV2D


def deform_conv2d_reference(input: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor,
                            mask: torch.Tensor | None, bias: torch.Tensor | None, stride: Sequence[int],
                            padding: Sequence[int], dilation: Sequence[int], groups: int,
                            offset_groups: int) -> torch.Tensor:
    """Per kernel row: one bilinear ``grid_sample`` over the row's taps, times the mask, then a MatMul.

    Tap (u, v) of output pixel (i, j) reads ``y = i*sh - ph + u*dh + dy``, ``x = j*sw - pw + v*dw + dx``
    on the unpadded input; ``grid_sample(align_corners=False, padding_mode="zeros")`` at the
    normalised ``(p + 0.5) * 2/size - 1`` applies torchvision's rule exactly (corners outside the
    image read 0, so points with y <= -1 or y >= H contribute nothing). Offset groups are folded
    into the batch (``[N*og, Cin/og, H, W]``). Row u's samples ``[N, G, (Cin/G)*kw, Ho*Wo]`` are
    contracted with ``weight[:, :, u, :]`` as ``[G, Cout/G, (Cin/G)*kw]`` by a batched MatMul (a
    Conv would need a static kernel shape in the TorchScript exporter) and accumulated, so only
    kw taps of samples live at a time (1/kh of an im2col buffer, and kh GridSample nodes instead
    of kh*kw, which keeps torch.export fast). Sizes come from tensor shapes (GridSample, MatMul,
    Range), so exports stay valid for dynamic N/H/W. Half inputs are computed in float32.
    """
    dtype = input.dtype
    compute = torch.promote_types(dtype, torch.float32)
    n, cin, h, w = input.shape
    cout, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
    ho, wo = offset.shape[2], offset.shape[3]
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    g, og, taps_n = groups, offset_groups, kh * kw
    device = input.device
    # Reshapes list every size (no -1 inside unflatten) so ONNX shape inference keeps their ranks.
    value = input.to(compute).reshape(n * og, cin // og, h, w)
    off = offset.to(compute).reshape(n, og, taps_n, 2, ho, wo)
    # Tap k = u*kw + v sits at (u*dh, v*dw); arange + expand, as constant tensors break torch.export.
    tap_y = (torch.arange(kh, dtype=compute, device=device) * dh).reshape(kh, 1).expand(kh, kw).reshape(taps_n, 1, 1)
    tap_x = (torch.arange(kw, dtype=compute, device=device) * dw).reshape(1, kw).expand(kh, kw).reshape(taps_n, 1, 1)
    # Pixel coordinates of the window origins, +0.5 folded in for the normalisation below.
    base_y = (torch.arange(ho, dtype=compute, device=device) * sh + (0.5 - ph)).unsqueeze(-1)  # [Ho, 1]
    base_x = torch.arange(wo, dtype=compute, device=device) * sw + (0.5 - pw)  # [Wo]
    y = (off[:, :, :, 0] + (tap_y + base_y)) * (2.0 / h) - 1.0  # [N, og, K, Ho, Wo]
    x = (off[:, :, :, 1] + (tap_x + base_x)) * (2.0 / w) - 1.0
    # One kernel row (kw taps) per grid_sample: rows of the grid/mask are (v, Ho) pairs.
    grid = torch.stack((x, y), -1).reshape(n * og, kh, kw * ho, wo, 2)
    weights = None if mask is None else mask.to(compute).reshape(n * og, 1, kh, kw * ho, wo)
    kernel = (weight.to(compute).reshape(g, cout // g, cin // g, kh, kw).permute(3, 0, 1, 2, 4)
              .reshape(kh, g, cout // g, cin // g * kw))  # [kh, G, Cout/G, (Cin/G, kw)]
    out = None
    for u in range(kh):
        sampled = F.grid_sample(value, grid[:, u], mode="bilinear", padding_mode="zeros", align_corners=False)
        if weights is not None:
            sampled = sampled * weights[:, :, u]  # [N*og, Cin/og, kw*Ho, Wo]
        columns = sampled.reshape(n, g, cin // g * kw, ho * wo)
        term = torch.matmul(kernel[u], columns)  # [N, G, Cout/G, Ho*Wo]
        out = term if out is None else out + term
    out = out.reshape(n, cout, ho, wo)
    if bias is not None:
        out = out + bias.to(compute).reshape(-1, 1, 1)
    return out.to(dtype)


define_op(DEFORM_CONV2D, deform_conv2d_reference)


def _infer_groups(total: int, per_group: int, what: str, explicit: int | None) -> int:
    if per_group <= 0 or total % per_group != 0:
        raise DynconvError(f"{DEFORM_CONV2D.name}: cannot infer {what}: {total} is not a multiple of {per_group}")
    inferred = total // per_group
    if explicit is not None and explicit != inferred:
        raise DynconvError(f"{DEFORM_CONV2D.name}: {what}={explicit} disagrees with the shapes, which give {inferred}")
    return inferred


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None, stride: int | Sequence[int] = (1, 1),
                  padding: int | Sequence[int] = (0, 0), dilation: int | Sequence[int] = (1, 1),
                  mask: torch.Tensor | None = None, *, groups: int | None = None,
                  offset_groups: int | None = None) -> torch.Tensor:
    """Deformable convolution (DCNv1; DCNv2 with ``mask``), argument order of ``torchvision.ops.deform_conv2d``.

    ``out[n,o,i,j] = bias[o] + sum_{c in group(o), u, v} weight[o, c', u, v] * m * x_c(y, x)`` with
    ``y = i*sh - ph + u*dh + dy``, ``x = j*sw - pw + v*dw + dx``, ``q = g_off(c)*kh*kw + u*kw + v``,
    ``(dy, dx) = offset[n, 2q:2q+2, i, j]``, ``m = mask[n, q, i, j]`` (1 without mask) and
    ``x_c`` the bilinear interpolation of channel c (0 outside the image).

    Args:
        input: ``[N, Cin, H, W]``.
        offset: ``[N, 2*offset_groups*kh*kw, Ho, Wo]``.
        weight: ``[Cout, Cin/groups, kh, kw]``.
        bias: ``[Cout]`` or None.
        mask: ``[N, offset_groups*kh*kw, Ho, Wo]`` or None (DCNv1).
        groups, offset_groups: inferred from the shapes like torchvision does
            (``Cin / weight.shape[1]`` and ``offset.shape[1] / (2*kh*kw)``); when given they must agree.

    Returns:
        ``[N, Cout, Ho, Wo]`` with ``Ho = floor((H + 2*ph - dh*(kh-1) - 1)/sh) + 1`` (Wo alike).
    """
    for name, t in (("input", input), ("offset", offset), ("weight", weight)):
        if t.dim() != 4:
            raise DynconvError(f"{DEFORM_CONV2D.name}: {name} must be 4-D, got shape {list(t.shape)}")
    kh, kw = int(weight.shape[2]), int(weight.shape[3])
    groups = _infer_groups(int(input.shape[1]), int(weight.shape[1]), "groups", groups)
    offset_groups = _infer_groups(int(offset.shape[1]), 2 * kh * kw, "offset_groups", offset_groups)
    return call_op(DEFORM_CONV2D, [input, weight, offset, mask, bias],
                   dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                        offset_groups=offset_groups))
