"""Functional deformable convolution (DCNv1/DCNv2): the registered custom op and its reference."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import DynconvError
from ..registration import attribute_sizes, call_op, define_op
from ..sampling import as_dtype, bilinear_sample, split_coordinate
from .spec import DEFORM_CONV2D


def deform_conv2d_reference(input: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor,
                            mask: torch.Tensor | None, bias: torch.Tensor | None, stride: Sequence[int],
                            padding: Sequence[int], dilation: Sequence[int], groups: int,
                            offset_groups: int) -> torch.Tensor:
    """Bilinear samples of all taps (one ``Gather`` in exported graphs), then one grouped MatMul.

    Tap (u, v) of output pixel (i, j) reads ``y = i*sh - ph + u*dh + dy``, ``x = j*sw - pw + v*dw + dx``
    on the unpadded input, split into the exact integer ``i*sh - ph + u*dh + floor(dy)`` and the
    fraction ``dy - floor(dy)`` (see :mod:`..sampling`), so FP32 accuracy does not degrade on large
    maps; points with y <= -1 or y >= H read 0 (torchvision's rule). Offset group g reads its
    channel slice of the NHWC image (no per-group transpose). The samples ``[N, G, Ho*Wo, K*(Cin/G)]`` are contracted with the
    weight as ``[G, K*(Cin/G), Cout/G]`` by a batched MatMul (a Conv would need a static kernel
    shape in the TorchScript exporter). Sizes come from tensor shapes, so exports stay valid for
    dynamic N/H/W. Half inputs are computed in float32.
    """
    dtype = input.dtype
    compute = torch.promote_types(dtype, torch.float32)
    n, cin = input.shape[0], input.shape[1]
    cout, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
    ho, wo = offset.shape[2], offset.shape[3]
    (sh, sw), (dh, dw) = stride, dilation
    ph, pw = padding[0], padding[1]
    g, og, k = groups, offset_groups, kh * kw
    device = input.device
    off = as_dtype(offset, compute).reshape(n, og, k, 2, ho, wo).permute(3, 0, 1, 4, 5, 2)  # (dy, dx) [N, og, Ho, Wo, K]
    # Integer part of each tap's position: window origin plus tap, [Ho, 1, K] and [Wo, K]; tap k = u*kw + v.
    tap_y = (torch.arange(kh, device=device) * dh).reshape(kh, 1).expand(kh, kw).reshape(k)
    tap_x = (torch.arange(kw, device=device) * dw).reshape(1, kw).expand(kh, kw).reshape(k)
    whole_y = (torch.arange(ho, device=device) * sh - ph).reshape(-1, 1, 1) + tap_y
    whole_x = (torch.arange(wo, device=device) * sw - pw).reshape(-1, 1) + tap_x
    batch = torch.arange(n, device=device).reshape(-1, 1, 1, 1, 1)  # [N, 1, 1, 1, 1]
    channel_group = torch.arange(og, device=device).reshape(-1, 1, 1, 1) if og > 1 else None  # [og, 1, 1, 1]
    m = None if mask is None else as_dtype(mask, compute).reshape(n, og, k, ho, wo).permute(0, 1, 3, 4, 2)
    sampled = bilinear_sample(as_dtype(input, compute).permute(0, 2, 3, 1), batch, split_coordinate(whole_y, off[0]),
                              split_coordinate(whole_x, off[1]), m, groups=og,
                              group=channel_group)  # [N, og, Ho, Wo, K, Cin/og]
    kernel = (as_dtype(weight, compute).reshape(g, cout // g, cin // g, k).permute(0, 3, 2, 1)
              .reshape(g, k * (cin // g), cout // g))  # [G, (K, Cin/G), Cout/G]
    out = torch.matmul(_group_columns(sampled, n, og, g, cin, ho * wo, k), kernel)  # [N, G, Ho*Wo, Cout/G]
    out = out.transpose(2, 3).reshape(n, cout, ho, wo)
    if bias is not None:
        out = out + as_dtype(bias, compute).reshape(-1, 1, 1)
    return as_dtype(out, dtype)


def _group_columns(sampled: torch.Tensor, n: int, og: int, g: int, cin: int, pixels: int, k: int) -> torch.Tensor:
    """``[N, og, Ho, Wo, K, Cin/og]`` samples as ``[N, G, Ho*Wo, K*(Cin/G)]`` columns of the grouped conv."""
    if og == g:
        return sampled.reshape(n, g, pixels, k * (cin // g))
    by_channel = sampled.reshape(n, og, pixels, k, cin // og).permute(0, 2, 3, 1, 4)  # [N, HoWo, K, og, Cin/og]
    return by_channel.reshape(n, pixels, k, g, cin // g).permute(0, 3, 1, 2, 4).reshape(n, g, pixels, k * (cin // g))


define_op(DEFORM_CONV2D, deform_conv2d_reference)


def _infer_groups(total: int, per_group: int, what: str, explicit: int | None) -> int:
    if per_group <= 0 or total % per_group != 0:
        raise DynconvError(f"{DEFORM_CONV2D.name}: cannot infer {what}: {total} is not a multiple of {per_group}")
    inferred = total // per_group
    if explicit is not None and explicit != inferred:
        raise DynconvError(f"{DEFORM_CONV2D.name}: {what}={explicit} disagrees with the shapes, which give {inferred}")
    return inferred


def split_padding(padding: int | Sequence[int]) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """``p``, ``(ph, pw)`` or ``(top, left, bottom, right)`` as (symmetric ``(ph, pw)`` for the op,
    extra zero padding ``(left, right, top, bottom)`` for ``F.pad``).

    Zero rows and columns added to the input are exactly padding for this op: a bilinear sample reads
    0 outside the image either way. So the op keeps ``min(top, bottom)``/``min(left, right)`` and the
    surplus side is padded explicitly (a ``Pad`` node before the op in exported graphs).
    """
    values = [padding] * 2 if isinstance(padding, int) else [int(p) for p in padding]
    if len(values) == 2:
        values = values * 2
    if len(values) != 4 or any(p < 0 for p in values):
        raise DynconvError(f"{DEFORM_CONV2D.name}: padding must be p, (ph, pw) or (top, left, bottom, right) "
                           f"with non-negative values, got {padding!r}")
    top, left, bottom, right = values
    ph, pw = min(top, bottom), min(left, right)
    return (ph, pw), (left - pw, right - pw, top - ph, bottom - ph)


def pad_surplus(input: torch.Tensor, padding: int | Sequence[int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """``input`` with the asymmetric part of ``padding`` added (see :func:`split_padding`), and the rest."""
    symmetric, extra = split_padding(padding)
    return (F.pad(input, extra) if any(extra) else input), symmetric


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None, stride: int | Sequence[int] = (1, 1),
                  padding: int | Sequence[int] = (0, 0), dilation: int | Sequence[int] = (1, 1),
                  mask: torch.Tensor | None = None, *, groups: int | None = None,
                  offset_groups: int | None = None) -> torch.Tensor:
    """Deformable convolution (DCNv1; DCNv2 with ``mask``), argument order of ``torchvision.ops.deform_conv2d``.

    ``out[n,o,i,j] = bias[o] + sum_{c in group(o), u, v} weight[o, c', u, v] * m * x_c(y, x)`` with
    ``y = i*sh - ph + u*dh + dy``, ``x = j*sw - pw + v*dw + dx``, ``q = g_off(c)*kh*kw + u*kw + v``,
    ``(dy, dx) = offset[n, 2q:2q+2, i, j]``, ``m = mask[n, q, i, j]`` (1 without mask) and
    ``x_c`` the bilinear interpolation of channel c (0 outside the image). ``padding`` may also be
    ``(top, left, bottom, right)`` (ONNX ``DeformConv``'s order): ``ph``/``pw`` above are then top/left
    and the output size uses the sums.

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
    weight_channels, kh, kw = attribute_sizes(weight, 1, 2, 3)
    (in_channels,), (offset_channels,) = attribute_sizes(input, 1), attribute_sizes(offset, 1)
    groups = _infer_groups(in_channels, weight_channels, "groups", groups)
    offset_groups = _infer_groups(offset_channels, 2 * kh * kw, "offset_groups", offset_groups)
    input, padding = pad_surplus(input, padding)
    return call_op(DEFORM_CONV2D, [input, weight, offset, mask, bias],
                   dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                        offset_groups=offset_groups))
