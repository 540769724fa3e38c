"""Bilinear sampling in pixel units for the reference decompositions of the sampling ops (DCNv1/v2, DCNv3/v4).

A sample point is given as an exact integer part plus a small fractional displacement, so no coordinate
is ever rounded at the magnitude of the image size (``grid_sample``'s normalised coordinates lose ~1e-4
px at 1344 px in float32). The image is zero-padded by two pixels and ``floor(y)`` clamped to
``[-2, H]`` (x alike): a point with ``-1 <= floor(y) <= H-1`` reads its four neighbours, zeros outside
the image included, and a point further out reads four padding zeros, which is torchvision's and the
DCNv3 kernel's rule (a point with ``y <= -1`` or ``y >= H`` reads 0) without a validity mask. Exported
graphs use standard ops with dynamic sizes only (Pad, Clip/Min, Gather, Mul, ReduceSum); eager runs use
one fused ``embedding_bag`` for the same weighted sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def split_coordinate(whole: torch.Tensor, displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``whole + displacement`` as (int64 floor, fraction in [0, 1)), exactly.

    ``whole`` holds integers (int64), ``displacement`` a small float; the fraction is computed from
    the displacement alone, which is exact in floating point, so the result does not depend on
    how large ``whole`` is.
    """
    floor = torch.floor(displacement)
    return whole + floor.to(torch.int64), displacement - floor


def is_traced(value: torch.Tensor) -> bool:
    """True while an exporter traces (TorchScript, or fake/functional tensors of torch.export)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or type(value) is not torch.Tensor


def as_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` in ``dtype``, unchanged (no ``Cast`` node in exported graphs) when it already is."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def bilinear_sample(value: torch.Tensor, batch: torch.Tensor, y: tuple[torch.Tensor, torch.Tensor],
                    x: tuple[torch.Tensor, torch.Tensor], scale: torch.Tensor | None = None,
                    sum_last: bool = False, groups: int = 1, group: torch.Tensor | None = None) -> torch.Tensor:
    """``scale * bilinear(value[batch], y, x)``: ``[*S, C/groups]`` for points of shape S.

    ``value`` is ``[B, H, W, C]``; ``batch`` (int64) picks the image; ``y``/``x`` are
    ``(floor int64, fraction)`` pairs from :func:`split_coordinate`; ``scale`` (e.g. a modulation
    mask) multiplies each point. With ``groups`` > 1 the channels split into that many groups and
    ``group`` (int64) says which one each point reads (channel-group images need no transpose).
    All of them broadcast together to S. ``sum_last`` sums the samples over the last axis of S
    (``[*S[:-1], C/groups]``).
    """
    h, w = value.shape[1], value.shape[2]
    (iy, fy), (ix, fx) = y, x
    low = torch.full((), -2, dtype=iy.dtype, device=iy.device)  # Max/Min, not Clip: TensorRT's int Clip is limited
    high_y, high_x = (torch.as_tensor(size, dtype=iy.dtype, device=iy.device) for size in (h, w))
    iy = torch.minimum(torch.maximum(iy, low), high_y)  # floor(y) <= -2 or >= H: only padding is read
    ix = torch.minimum(torch.maximum(ix, low), high_x)
    top_left = (batch * (h + 4) + (iy + 2)) * (w + 4) + (ix + 2)  # pixel of the padded image
    if group is not None:
        top_left = top_left * groups + group  # row of the [pixels*groups, C/groups] table
    corner = torch.arange(4, device=value.device)  # corners (0, 0), (0, 1), (1, 0), (1, 1) as (dy, dx)
    corner_y, corner_x = corner // 2, corner % 2
    index = top_left.unsqueeze(-1) + (corner_x * groups + corner_y * ((w + 4) * groups))  # [*S, 4]
    wy = (1 - corner_y) + fy.unsqueeze(-1) * (2 * corner_y - 1)  # 1 - fy, 1 - fy, fy, fy
    wx = (1 - corner_x) + fx.unsqueeze(-1) * (2 * corner_x - 1)  # 1 - fx, fx, 1 - fx, fx
    weights = wy * wx if scale is None else wy * wx * scale.unsqueeze(-1)  # [*S, 4]
    image = F.pad(value, (0, 0, 2, 2, 2, 2)).reshape(-1, value.shape[3] // groups)  # [B*(H+4)*(W+4)*groups, C/groups]
    if is_traced(value):
        return (F.embedding(index, image) * weights.unsqueeze(-1)).sum((-3, -2) if sum_last else -2)
    shape = torch.broadcast_shapes(index.shape, weights.shape)
    kept = shape[:-2] if sum_last else shape[:-1]
    bag = 4 * shape[-2] if sum_last else 4
    out = F.embedding_bag(index.expand(shape).reshape(-1, bag), image,
                          per_sample_weights=weights.expand(shape).reshape(-1, bag), mode="sum")
    return out.reshape(*kept, image.shape[1])
