"""Functional DRConv: the registered region-select conv, its reference and the straight-through path."""

from __future__ import annotations

from typing import Sequence

import torch

from ..registration import attribute_sizes, call_op, define_op
from ..taps import pad_nchw, tap_slice, taps
from .spec import DRCONV


def region_outputs(input: torch.Tensor, filters: torch.Tensor, kernel_size: Sequence[int], stride: Sequence[int],
                   padding: Sequence[int], dilation: Sequence[int], region_num: int) -> torch.Tensor:
    """All m region convolutions, ``[N, m, O, Ho, Wo]``: one batched MatMul per kernel tap (m× conv FLOPs)."""
    n = input.shape[0]
    xp = pad_nchw(input, padding[0], padding[1])
    weight = filters.flatten(1, 2)  # [N, m*O, C, kh, kw]
    out = None
    window = input
    for _, u, v in taps(kernel_size):
        window = tap_slice(xp, u, v, kernel_size, stride, dilation)
        term = torch.matmul(weight[..., u, v], window.flatten(2))  # [N, m*O, Ho*Wo]
        out = term if out is None else out + term
    return out.reshape(n, region_num, -1, window.shape[-2], window.shape[-1])


def region_select(guide: torch.Tensor, region_num: int) -> torch.Tensor:
    """Boolean one-hot ``[N, m, Ho, Wo]`` of ``argmax`` over regions (ArgMax + Equal in ONNX; first max wins)."""
    index = torch.argmax(guide, dim=1, keepdim=True)
    regions = torch.arange(region_num, device=guide.device).reshape(1, region_num, 1, 1)
    return index == regions


def drconv_reference(input: torch.Tensor, guide: torch.Tensor, filters: torch.Tensor, kernel_size: Sequence[int],
                     stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                     region_num: int) -> torch.Tensor:
    """Exact decomposition: every region's conv, then keep the argmax region per pixel (Where + ReduceSum)."""
    out = region_outputs(input, filters, kernel_size, stride, padding, dilation, region_num)
    select = region_select(guide, region_num).unsqueeze(2)
    return torch.where(select, out, 0.0).sum(1)  # a scalar zero: no zeros tensor sized at run time


define_op(DRCONV, drconv_reference)


def _attrs(filters: torch.Tensor, stride: int | Sequence[int], padding: int | Sequence[int],
           dilation: int | Sequence[int]) -> dict:
    regions, kh, kw = attribute_sizes(filters, 1, -2, -1)
    return dict(kernel_size=[kh, kw], stride=stride, padding=padding, dilation=dilation, region_num=regions)


def drconv(input: torch.Tensor, guide: torch.Tensor, filters: torch.Tensor, stride: int | Sequence[int] = 1,
           padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1) -> torch.Tensor:
    """Region-select convolution: each output pixel uses the filter of its argmax guide region.

    ``out[n, :, i, j] = (filters[n, t] ⋆ input[n])[:, i, j]`` with ``t = argmax_t guide[n, t, i, j]``
    (the first maximum wins on ties, as ``torch.argmax``). No gradient reaches ``guide``; use
    :func:`drconv_straight_through` for training.

    Args:
        input: ``[N, C, H, W]``.
        guide: ``[N, m, Ho, Wo]`` region logits.
        filters: ``[N, m, O, C, kh, kw]``; ``filters[n, t]`` is region t's conv weight for sample n.

    Returns:
        ``[N, O, Ho, Wo]`` with ``Ho = floor((H + 2*ph - dh*(kh-1) - 1)/sh) + 1`` (Wo alike).
    """
    if filters.dim() != 6:
        return call_op(DRCONV, [input, guide, filters], dict(stride=stride, padding=padding, dilation=dilation))
    return call_op(DRCONV, [input, guide, filters], _attrs(filters, stride, padding, dilation))


def drconv_straight_through(input: torch.Tensor, guide: torch.Tensor, filters: torch.Tensor,
                            stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                            dilation: int | Sequence[int] = 1) -> torch.Tensor:
    """DRConv with the paper's straight-through guide gradient (training path; same forward as :func:`drconv`).

    Forward: the hard argmax selection, bit-identical to :func:`drconv`. Backward: with
    ``S = softmax(guide)`` and ``g_t = sum_o dL/dY_o * Y^(t)_o`` (Y^(t) = region t's conv),
    ``dL/dguide_t = S_t * (g_t - sum_u S_u g_u)``; input and filters get the selected region's gradient.
    Written as ``mask = onehot + (S - S.detach())``, which equals the one-hot exactly in value.
    """
    attrs = DRCONV.normalize(_attrs(filters, stride, padding, dilation) if filters.dim() == 6 else
                             dict(stride=stride, padding=padding, dilation=dilation))
    DRCONV.validate([tuple(input.shape), tuple(guide.shape), tuple(filters.shape)], attrs)
    m = attrs["region_num"]
    out = region_outputs(input, filters, **attrs)
    probs = torch.softmax(guide, dim=1)
    mask = region_select(guide, m).to(out.dtype) + (probs - probs.detach())
    return (out * mask.unsqueeze(2)).sum(1)
