"""Functional DCNv3/DCNv4: the registered custom op and its grid-sample reference decomposition."""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import DynconvError
from ..registration import call_op, define_op
from ..sampling import as_dtype, bilinear_sample, split_coordinate
from .spec import DCNV3, num_points


def _tap_coordinates(kernel_size: Sequence[int], dilation: Sequence[int], remove_center: int,
                     dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``i*dw - hw`` and ``j*dh - hh`` per point, each ``[P]``.

    Point order is the CUDA kernel's: tap column i (x) outer, row j (y) inner, ``p = i*kh + j``, the
    centre ``(kw//2, kh//2)`` left out when ``remove_center`` (later points move down by one).

    Built from ``arange`` (not ``torch.tensor``), which both exporters fold into constants.
    """
    (kh, kw), (dh, dw) = kernel_size, dilation
    xs = torch.arange(kw, dtype=dtype, device=device) * dw - dw * (kw - 1) // 2
    ys = torch.arange(kh, dtype=dtype, device=device) * dh - dh * (kh - 1) // 2
    tap_x = xs.unsqueeze(1).expand(kw, kh).reshape(-1)  # p = i*kh + j: x index outer
    tap_y = ys.unsqueeze(0).expand(kw, kh).reshape(-1)
    if remove_center:
        c = (kw // 2) * kh + kh // 2
        tap_x = torch.cat((tap_x[:c], tap_x[c + 1:]))
        tap_y = torch.cat((tap_y[:c], tap_y[c + 1:]))
    return tap_x, tap_y


def dcnv3_reference(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: Sequence[int],
                    stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], group: int,
                    group_channels: int, offset_scale: float, remove_center: int) -> torch.Tensor:
    """Mask-weighted bilinear samples of all points (one ``Gather`` in exported graphs), summed per pixel.

    Point p of output pixel (oh, ow) reads ``lx = (ow*sw - pw + hw) + (tap_x + dx)*offset_scale``
    (y alike): the bracketed window centre is an exact integer, the small rest is split into floor
    and fraction on its own (see :mod:`..sampling`), so FP32 accuracy does not degrade on large
    maps. Samples outside the image read 0 (the kernel's rule). Sizes come from tensor shapes, so
    exported graphs stay valid for dynamic N/H/W; so do ``group`` and ``group_channels`` (the spec's
    checks make them equal to the attributes), so one exported graph serves every stage of a network.
    Half inputs are sampled in float32, like the kernel's float32 accumulation.
    """
    dtype = input.dtype
    compute = torch.promote_types(dtype, torch.float32)
    n, ho, wo = offset.shape[0], offset.shape[1], offset.shape[2]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    half_h, half_w = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    p = kh * kw - remove_center
    g = mask.shape[-1] // p  # ``group`` as the shapes give it: one exported graph serves every group count
    device = input.device
    tap_x, tap_y = _tap_coordinates(kernel_size, dilation, remove_center, compute, device)
    # Window centres [Wo, 1, 1] and [Ho, 1, 1, 1] against points [N, Ho, Wo, G, P].
    centre_x = (torch.arange(wo, device=device) * sw + (half_w - pw)).reshape(-1, 1, 1)
    centre_y = (torch.arange(ho, device=device) * sh + (half_h - ph)).reshape(-1, 1, 1, 1)
    off = as_dtype(offset, compute).reshape(n, ho, wo, g, p, 2)
    batch = torch.arange(n, device=device).reshape(-1, 1, 1, 1, 1)  # [N, 1, 1, 1, 1]
    channel_group = torch.arange(g, device=device).reshape(-1, 1)  # [G, 1]
    dy, dx = off[..., 1] + tap_y, off[..., 0] + tap_x
    if offset_scale != 1:  # no Mul by 1 in exported graphs
        dy, dx = dy * offset_scale, dx * offset_scale
    out = bilinear_sample(as_dtype(input, compute), batch, split_coordinate(centre_y, dy),
                          split_coordinate(centre_x, dx), as_dtype(mask, compute).reshape_as(dy), sum_last=True,
                          groups=g, group=channel_group)  # [N, Ho, Wo, G, Cg]
    return as_dtype(out.reshape(n, ho, wo, input.shape[-1]), dtype)


define_op(DCNV3, dcnv3_reference)


def dcnv3(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_size: int | Sequence[int] = 3,
          stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1,
          group: int = 1, group_channels: int | None = None, offset_scale: float = 1.0,
          remove_center: bool | int = False) -> torch.Tensor:
    """DCNv3 aggregation: per group, a mask-weighted sum of bilinear samples at deformed taps.

    ``out[n,oh,ow,g*Cg+c] = sum_p mask[n,oh,ow,g*P+p] * x_gc(ly, lx)`` with, for point p at tap
    (i, j) (kernel_w outer loop: ``p = i*kh + j``, centre skipped when ``remove_center``),
    ``lx = ow*sw - pw + hw + (i*dw - hw + dx)*offset_scale``, ``ly = oh*sh - ph + hh + (j*dh - hh + dy)*offset_scale``,
    ``hw = dw*(kw-1)//2``, ``hh = dh*(kh-1)//2``, ``(dx, dy) = offset[n,oh,ow,2*(g*P+p) : +2]``; samples
    outside the image read 0. The mask is used as given (the DCNv3 module softmaxes it beforehand).

    Args:
        input: ``[N, H, W, G*Cg]`` (channels-last).
        offset: ``[N, Ho, Wo, G*P*2]``, (x, y) pairs; ``P = kh*kw - remove_center``.
        mask: ``[N, Ho, Wo, G*P]``.
        group_channels: defaults to ``C // group``.

    Returns:
        ``[N, Ho, Wo, G*Cg]`` with ``Ho = floor((H + 2*ph - dh*(kh-1) - 1)/sh) + 1`` (Wo alike).
    """
    if group_channels is None:
        group_channels = input.shape[-1] // group
    return call_op(DCNV3, [input, offset, mask], dict(
        kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, group=group,
        group_channels=group_channels, offset_scale=offset_scale, remove_center=int(remove_center)))


def split_offset_mask(offset_mask: torch.Tensor, group: int, points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split DCNv4's packed ``[N, Ho, Wo, >= G*P*3]`` tensor into DCNv3's ``offset`` and ``mask``.

    Group g occupies channels ``g*3P .. g*3P + 3P - 1`` as ``[2P offsets (x, y) | P mask]``; channels
    past ``G*3P`` (DCNv4 pads to a multiple of 8) are ignored. Returns ``[N,Ho,Wo,G*2P]``, ``[N,Ho,Wo,G*P]``.
    """
    used = group * points * 3
    if offset_mask.dim() != 4 or offset_mask.shape[-1] < used:
        raise DynconvError(f"DCNv4: offset_mask must be [N, Ho, Wo, >= group*P*3 = {used}], "
                           f"got shape {list(offset_mask.shape)}")
    # constant channel indices (one Gather each in exported graphs, no size arithmetic)
    base = torch.arange(group, device=offset_mask.device).unsqueeze(1) * (3 * points)
    lanes = torch.arange(3 * points, device=offset_mask.device)
    offset = offset_mask.index_select(-1, (base + lanes[: 2 * points]).reshape(-1))
    return offset, offset_mask.index_select(-1, (base + lanes[2 * points:]).reshape(-1))


def dcnv4(input: torch.Tensor, offset_mask: torch.Tensor, kernel_size: int | Sequence[int] = 3,
          stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 1, dilation: int | Sequence[int] = 1,
          group: int = 1, group_channels: int | None = None, offset_scale: float = 1.0,
          remove_center: bool | int = False) -> torch.Tensor:
    """DCNv4 aggregation: :func:`dcnv3` on the offsets and (unnormalised) weights packed in ``offset_mask``.

    Args:
        input: ``[N, H, W, G*Cg]``.
        offset_mask: ``[N, Ho, Wo, >= G*P*3]``, per group ``[2P offsets (x, y) | P mask]`` (see
            :func:`split_offset_mask`).

    Returns:
        ``[N, Ho, Wo, G*Cg]``, as :func:`dcnv3`.
    """
    k = DCNV3.attribute("kernel_size").coerce(DCNV3.name, kernel_size)
    p = num_points(dict(kernel_size=k, remove_center=int(remove_center)))
    offset, mask = split_offset_mask(offset_mask, group, p)
    return dcnv3(input, offset, mask, k, stride, padding, dilation, group, group_channels, offset_scale, remove_center)
