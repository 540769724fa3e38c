"""Functional DDF: the registered custom op and its shift-and-slice reference decomposition."""

from __future__ import annotations

import torch

from ..errors import DynconvError
from ..registration import call_op, define_op
from ..sampling import is_traced
from ..taps import column_index, pad_nchw, row_taps, tap_slice, taps
from .spec import DDF


def ddf_reference(input: torch.Tensor, channel_filter: torch.Tensor, spatial_filter: torch.Tensor,
                  kernel_size: int, dilation: int, stride: int, combine: str) -> torch.Tensor:
    """``sum_t window_t * F_t`` over the k*k taps, ``F_t`` the combined channel and spatial filter.

    Traced for export, each kernel row's k taps come at once (:func:`row_taps`: one Slice and one
    Gather; the node count grows with k only, the buffer is k times the input); eager runs add one
    strided slice per tap (no buffer). Zero padding makes out-of-image taps contribute 0 in both
    modes: for 'add' the term is ``x * (Fs + Fc)`` and x is 0 there.
    """
    if not is_traced(input):
        return _ddf_by_taps(input, channel_filter, spatial_filter, kernel_size, dilation, stride, combine)
    k = kernel_size
    pad = dilation * (k - 1) // 2
    xp = pad_nchw(input, pad, pad)
    fc = channel_filter.unsqueeze(2).unsqueeze(-1)  # [N, C, 1, k(u), k(v), 1]
    fs = spatial_filter.unflatten(1, (k, k)).transpose(2, 3).unsqueeze(1)  # [N, 1, k(u), Ho, k(v), Wo]
    columns = column_index(spatial_filter.shape[-1], k, stride, dilation, input.device)
    out = None
    for u in range(k):
        taps_u = row_taps(xp, u, columns, [k, k], [stride, stride], [dilation, dilation])  # [N, C, Ho, k, Wo]
        filters = fc[:, :, :, u] * fs[:, :, u] if combine == "mul" else fc[:, :, :, u] + fs[:, :, u]
        term = (taps_u * filters).sum(-2)
        out = term if out is None else out + term
    return out


def _ddf_by_taps(input: torch.Tensor, channel_filter: torch.Tensor, spatial_filter: torch.Tensor,
                 kernel_size: int, dilation: int, stride: int, combine: str) -> torch.Tensor:
    k = (kernel_size, kernel_size)
    s = (stride, stride)
    d = (dilation, dilation)
    pad = dilation * (kernel_size - 1) // 2
    xp = pad_nchw(input, pad, pad)
    out = None
    for t, u, v in taps(k):
        window = tap_slice(xp, u, v, k, s, d)  # [N, C, Ho, Wo]
        fc = channel_filter[:, :, u:u + 1, v:v + 1]  # [N, C, 1, 1]
        fs = spatial_filter[:, t:t + 1]  # [N, 1, Ho, Wo]
        term = window * fc * fs if combine == "mul" else window * (fc + fs)
        out = term if out is None else out + term
    return out


define_op(DDF, ddf_reference)


def ddf(input: torch.Tensor, channel_filter: torch.Tensor, spatial_filter: torch.Tensor,
        kernel_size: int = 3, dilation: int = 1, stride: int = 1, combine: str = "mul") -> torch.Tensor:
    """Decoupled dynamic filter: a per-pixel spatial filter combined with a per-channel filter.

    ``out[n,c,i,j] = sum_{u,v} x[n, c, i*s + (u-r)*d, j*s + (v-r)*d] * F[n,c,u,v,i,j]``, r = (k-1)/2,
    with ``F = Fs[n, u*k+v, i, j] * Fc[n,c,u,v]`` ('mul') or ``Fs[n, u*k+v, i, j] + Fc[n,c,u,v]``
    ('add'); taps outside the image contribute 0.

    Args:
        input: ``[N, C, H, W]``.
        channel_filter: ``[N, C, k, k]``.
        spatial_filter: ``[N, k*k, Ho, Wo]``; channel ``u*k + v`` holds tap (u, v).
        kernel_size: odd k. dilation, stride: ints. combine: 'mul' or 'add'.

    Returns:
        ``[N, C, Ho, Wo]`` with ``Ho = ceil(H/s)``, ``Wo = ceil(W/s)`` (windows centred at (i*s, j*s));
        the official kernel's ``floor(H/s)`` for the sizes it supports (H, W divisible by s).
    """
    attrs = DDF.normalize(dict(kernel_size=kernel_size, dilation=dilation, stride=stride, combine=combine))
    if attrs["kernel_size"] % 2 == 0:
        raise DynconvError(f"{DDF.name}: kernel_size must be odd (windows are centred), got {kernel_size}")
    return call_op(DDF, [input, channel_filter, spatial_filter], attrs)
