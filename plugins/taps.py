"""Shift-and-slice helpers shared by the reference decompositions of windowed ops.

A k×k window op over a zero-padded input reads, for tap (u, v), the strided view
``xp[..., u*dh :: sh, v*dw :: sw]`` cropped to the output size. Ending each slice at
``-(k-1-u)*d`` (instead of computing the output size) keeps the graph free of shape arithmetic,
so exported ONNX stays valid for every dynamic height and width.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F


def pad_nchw(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Zero-pad the last two dims symmetrically (no-op when both pads are 0)."""
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (pad_w, pad_w, pad_h, pad_h))


def tap_slice(xp: torch.Tensor, u: int, v: int, kernel: Sequence[int], stride: Sequence[int],
              dilation: Sequence[int]) -> torch.Tensor:
    """The strided view of padded ``xp`` read by tap (u, v); its size is the conv output size."""
    end_w = -(kernel[1] - 1 - v) * dilation[1] or None
    return _row_windows(xp, u, kernel, stride, dilation)[..., v * dilation[1]:end_w:stride[1]]


def _row_windows(xp: torch.Tensor, u: int, kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int]) -> torch.Tensor:
    """``[..., Ho, Wp]``: the padded rows kernel row ``u`` reads, one per output row."""
    end_h = -(kernel[0] - 1 - u) * dilation[0] or None
    return xp[..., u * dilation[0]:end_h:stride[0], :]


def taps(kernel: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """(tap index, u, v) in row-major order: index = u*kw + v."""
    kh, kw = kernel
    for u in range(kh):
        for v in range(kw):
            yield u * kw + v, u, v


def column_index(width_out: int | torch.Tensor, kw: int, stride_w: int, dilation_w: int,
                 device: torch.device) -> torch.Tensor:
    """``[kw, Wo]`` int64: the padded-input column read by tap column ``v`` at output column ``j``,
    ``j*sw + v*dw`` (for :func:`row_taps`; built once per op call from the dynamic ``Wo``)."""
    taps_w = (torch.arange(kw, device=device) * dilation_w).unsqueeze(1)
    return taps_w + (torch.arange(width_out, device=device) * stride_w).unsqueeze(0)


def row_taps(xp: torch.Tensor, u: int, columns: torch.Tensor, kernel: Sequence[int], stride: Sequence[int],
             dilation: Sequence[int]) -> torch.Tensor:
    """The kw taps of kernel row ``u`` of padded ``xp`` at once: ``[..., Ho, kw, Wo]`` (tap ``v`` at -2).

    One strided ``Slice`` takes the row's windows vertically, one ``Gather`` with ``columns``
    (:func:`column_index`) all kw columns of each: a fixed handful of ONNX nodes per kernel row
    and a kw-times (not kh*kw-times) copy of the input at a time.
    """
    return _row_windows(xp, u, kernel, stride, dilation)[..., columns]
