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
    kh, kw = kernel
    end_h = -(kh - 1 - u) * dilation[0] or None
    end_w = -(kw - 1 - v) * dilation[1] or None
    return xp[..., u * dilation[0]:end_h:stride[0], v * dilation[1]:end_w:stride[1]]


def taps(kernel: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """(tap index, u, v) in row-major order: index = u*kw + v."""
    kh, kw = kernel
    for u in range(kh):
        for v in range(kw):
            yield u * kw + v, u, v


def unfold_row(xp: torch.Tensor, u: int, kernel: Sequence[int], stride: Sequence[int],
               dilation: Sequence[int]) -> torch.Tensor:
    """The kw taps of kernel row ``u`` of padded ``xp`` at once: ``[N, C, kw, Ho*Wo]``, tap ``v`` at index v.

    Exported graphs take one row's taps with one ``unfold`` (a fixed handful of ONNX nodes) instead of kw
    slices, and hold a kw-times (not kh*kw-times) copy of the input at a time.
    """
    kh, kw = kernel
    end_h = -(kh - 1 - u) * dilation[0] or None
    rows = xp[..., u * dilation[0]:end_h:stride[0], :]  # [N, C, Ho, Wp]: the row's windows, vertically
    columns = F.unfold(rows, [1, kw], [1, dilation[1]], [0, 0], [1, stride[1]])  # [N, C*kw, Ho*Wo]
    return columns.reshape(xp.shape[0], xp.shape[1], kw, -1)

