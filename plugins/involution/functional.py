"""Functional involution: the registered custom op and its reference decomposition."""

from __future__ import annotations

from typing import Sequence

import torch

from ..registration import call_op, define_op
from ..sampling import is_traced
from ..taps import column_index, pad_nchw, row_taps, tap_slice, taps
from .spec import INVOLUTION


def involution_reference(input: torch.Tensor, weight: torch.Tensor, kernel_size: Sequence[int],
                         stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                         groups: int) -> torch.Tensor:
    """``sum_t window_t * kernel_t`` over the kh*kw taps of each group's per-pixel kernel.

    Traced for export, each kernel row's kw taps come at once (:func:`row_taps`: one Slice and one
    Gather), so the node count grows with kh only and the buffer is kw times the input; eager runs
    add one strided slice per tap (no buffer).
    """
    if not is_traced(input):
        return _involution_by_taps(input, weight, kernel_size, stride, padding, dilation, groups)
    n, c = input.shape[0], input.shape[1]
    ho, wo = weight.shape[-2], weight.shape[-1]
    kh, kw = kernel_size
    groups = weight.shape[1] // (kh * kw)  # from the shape: one exported graph for every group count
    xp = pad_nchw(input, padding[0], padding[1]).unflatten(1, (groups, -1))  # [N, G, C/G, Hp, Wp]
    kernels = weight.unflatten(1, (groups, 1, kh, kw)).transpose(4, 5)  # [N, G, 1, kh, Ho, kw, Wo]
    columns = column_index(wo, kw, stride[1], dilation[1], input.device)
    out = None
    for u in range(kh):
        term = (row_taps(xp, u, columns, kernel_size, stride, dilation) * kernels[:, :, :, u]).sum(-2)
        out = term if out is None else out + term  # [N, G, C/G, Ho, Wo]
    return out.reshape(n, c, ho, wo)


def _involution_by_taps(input: torch.Tensor, weight: torch.Tensor, kernel_size: Sequence[int],
                        stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                        groups: int) -> torch.Tensor:
    n, c = input.shape[0], input.shape[1]
    kh, kw = kernel_size
    xp = pad_nchw(input, padding[0], padding[1])
    kernels = weight.reshape(n, groups, 1, kh * kw, weight.shape[-2], weight.shape[-1])
    out = None
    for t, u, v in taps(kernel_size):
        window = tap_slice(xp, u, v, kernel_size, stride, dilation)
        window = window.reshape(n, groups, c // groups, window.shape[-2], window.shape[-1])
        term = window * kernels[:, :, :, t]
        out = term if out is None else out + term
    return out.reshape(n, c, out.shape[-2], out.shape[-1])


define_op(INVOLUTION, involution_reference)


def involution(input: torch.Tensor, weight: torch.Tensor, kernel_size: int | Sequence[int] = 7,
               stride: int | Sequence[int] = 1, padding: int | Sequence[int] | None = None,
               dilation: int | Sequence[int] = 1, groups: int = 1) -> torch.Tensor:
    """Involution aggregation with per-pixel, per-group kernels.

    Args:
        input: ``[N, C, H, W]``.
        weight: ``[N, groups*kh*kw, Ho, Wo]``; channel ``g*kh*kw + u*kw + v`` holds tap (u, v) of group g.
        padding: defaults to ``dilation*(k-1)//2`` per axis ("same" for stride 1).

    Returns:
        ``[N, C, Ho, Wo]`` with ``Ho = floor((H + 2*ph - dh*(kh-1) - 1)/sh) + 1``.
    """
    k = INVOLUTION.attribute("kernel_size").coerce(INVOLUTION.name, kernel_size)
    d = INVOLUTION.attribute("dilation").coerce(INVOLUTION.name, dilation)
    if padding is None:
        padding = [d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2]
    return call_op(INVOLUTION, [input, weight], dict(kernel_size=k, stride=stride, padding=padding,
                                                     dilation=d, groups=groups))
