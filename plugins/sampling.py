"""Bilinear sampling in pixel units for the reference decompositions of the sampling ops (DCNv1/v2, DCNv3/v4).

A sample point is given as an exact integer part plus a small fractional displacement, so no coordinate
is ever rounded at the magnitude of the image size (``grid_sample``'s normalised coordinates lose ~1e-4
px at 1344 px in float32). The image is zero-padded by one pixel; a point with ``-1 <= floor(y) <= H-1``
(and alike in x) reads its four neighbours from the padded image, zeros outside the image included.
Points further out get weight 0 (torchvision's and the DCNv3 kernel's rule: a point with ``y <= -1`` or
``y >= H`` reads 0). Exported graphs use standard ops with dynamic sizes only (Pad, Gather, Where,
Mul, ReduceSum); eager runs use one fused ``embedding_bag`` for the same weighted sum.
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


def bilinear_sample(value: torch.Tensor, batch: torch.Tensor, y: tuple[torch.Tensor, torch.Tensor],
                    x: tuple[torch.Tensor, torch.Tensor], scale: torch.Tensor | None = None,
                    sum_last: bool = False) -> torch.Tensor:
    """``scale * bilinear(value[batch], y, x)``: ``[*S, C]`` for points of shape S.

    ``value`` is ``[B, H, W, C]``; ``batch`` (int64) picks the image; ``y``/``x`` are
    ``(floor int64, fraction)`` pairs from :func:`split_coordinate`; ``scale`` (e.g. a modulation
    mask) multiplies each point. All of them broadcast together to S. ``sum_last`` sums the
    samples over the last axis of S (``[*S[:-1], C]``).
    """
    b, h, w, c = value.shape
    (iy, fy), (ix, fx) = y, x
    inside = (iy >= -1) & (iy < h) & (ix >= -1) & (ix < w)
    top_left = (batch * (h + 2) + (iy + 1)) * (w + 2) + (ix + 1)  # row of the padded image
    top_left = torch.where(inside, top_left, torch.zeros_like(top_left))
    index = torch.stack((top_left, top_left + 1, top_left + (w + 2), top_left + (w + 3)), -1)  # [*S, 4]
    wy = torch.stack((1 - fy, fy), -1).unsqueeze(-1)  # [*S, 2, 1]
    wx = torch.stack((1 - fx, fx), -1).unsqueeze(-2)  # [*S, 1, 2]
    keep = inside.to(fy.dtype) if scale is None else inside.to(fy.dtype) * scale
    weights = (wy * wx).flatten(-2) * keep.unsqueeze(-1)  # [*S, 4]
    image = F.pad(value, (0, 0, 1, 1, 1, 1)).reshape(-1, c)  # [B*(H+2)*(W+2), C]
    if is_traced(value):
        return (F.embedding(index, image) * weights.unsqueeze(-1)).sum((-3, -2) if sum_last else -2)
    shape = torch.broadcast_shapes(index.shape, weights.shape)
    kept = shape[:-2] if sum_last else shape[:-1]
    bag = 4 * shape[-2] if sum_last else 4
    out = F.embedding_bag(index.expand(shape).reshape(-1, bag), image,
                          per_sample_weights=weights.expand(shape).reshape(-1, bag), mode="sum")
    return out.reshape(*kept, c)
