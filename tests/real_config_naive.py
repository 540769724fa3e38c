"""Naive float64 implementations of the dynamic ops, written from the papers and the authors' kernels.

Used by ``test_real_configs.py`` as an independent reference: plain loops over taps/points/groups,
explicit index arithmetic and explicit bounds checks (no padding tricks, no dynconv code). Arrays are
numpy float64; every function documents whose semantics it follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def conv_out(size: int, k: int, s: int, p_begin: int, p_end: int, d: int) -> int:
    return (size + p_begin + p_end - d * (k - 1) - 1) // s + 1


def bilinear_zero(img: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``[C, *S]`` samples of ``img [C, H, W]`` at points ``(y, x)`` of shape S.

    The rule shared by torchvision/mmcv ``deform_conv2d`` and the DCNv3/DCNv4 CUDA kernels: a point is
    read only when ``-1 < y < H`` and ``-1 < x < W``; each of its four neighbours counts only when it
    lies inside the image (zero padding).
    """
    h, w = img.shape[1], img.shape[2]
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    ly, lx = y - y0, x - x0
    inside = (y > -1) & (y < h) & (x > -1) & (x < w)
    out = np.zeros((img.shape[0],) + y.shape)
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yy, xx = y0 + dy, x0 + dx
            ok = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            values = img[:, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
            out += np.where(ok, wy * wx, 0.0) * values
    return out


def deform_conv2d(x: np.ndarray, weight: np.ndarray, offset: np.ndarray, mask: np.ndarray | None,
                  bias: np.ndarray | None, stride: Sequence[int], padding: Sequence[int],
                  dilation: Sequence[int], groups: int, offset_groups: int) -> np.ndarray:
    """DCNv1/DCNv2 as torchvision/mmcv (``modulated_deformable_im2col`` + GEMM).

    Tap ``k = u*kw + v`` of offset group g reads ``offset[2*(g*K + k)]`` as dy and ``+1`` as dx,
    ``mask[g*K + k]``; sample at ``(i*sh - ph + u*dh + dy, j*sw - pw + v*dw + dx)``.
    """
    n, cin = x.shape[0], x.shape[1]
    cout, cpg, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho, wo = offset.shape[2], offset.shape[3]
    k = kh * kw
    per_og = cin // offset_groups
    ii, jj = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    cols = np.zeros((n, cin, kh, kw, ho, wo))
    for b in range(n):
        for g in range(offset_groups):
            for u in range(kh):
                for v in range(kw):
                    q = g * k + u * kw + v
                    y = ii * sh - ph + u * dh + offset[b, 2 * q]
                    xx = jj * sw - pw + v * dw + offset[b, 2 * q + 1]
                    m = 1.0 if mask is None else mask[b, q]
                    cols[b, g * per_og:(g + 1) * per_og, u, v] = bilinear_zero(
                        x[b, g * per_og:(g + 1) * per_og], y, xx) * m
    out = np.zeros((n, cout, ho, wo))
    opg = cout // groups
    for g in range(groups):
        wg = weight[g * opg:(g + 1) * opg]  # [opg, cpg, kh, kw]
        cg = cols[:, g * cpg:(g + 1) * cpg]  # [n, cpg, kh, kw, ho, wo]
        out[:, g * opg:(g + 1) * opg] = np.einsum("ocuv,ncuvij->noij", wg, cg)
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out


def dcnv3_points(kh: int, kw: int, remove_center: bool) -> list[tuple[int, int]]:
    """(i, j) = (column, row) of each point in the CUDA kernels' order: i over kw outer, j over kh inner."""
    return [(i, j) for i in range(kw) for j in range(kh)
            if not (remove_center and i == kw // 2 and j == kh // 2)]


def dcnv3_core(x: np.ndarray, offset: np.ndarray, mask: np.ndarray, kernel: Sequence[int], stride: Sequence[int],
               pad: Sequence[int], dilation: Sequence[int], group: int, offset_scale: float,
               remove_center: bool) -> np.ndarray:
    """``dcnv3_im2col_gpu_kernel`` / DCNv4 ``forward_kernel_dcn``: NHWC, (dx, dy) pairs, p = i*kh + j.

    ``w_im = ow*sw - pw + hw + (i*dw - hw + dx)*scale`` with ``hw = (dw*(kw-1)) >> 1`` (h alike).
    """
    n, c = x.shape[0], x.shape[3]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pad, dilation
    ho, wo = offset.shape[1], offset.shape[2]
    cg = c // group
    half_h, half_w = (dh * (kh - 1)) >> 1, (dw * (kw - 1)) >> 1
    points = dcnv3_points(kh, kw, remove_center)
    npts = len(points)
    oh, ow = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    out = np.zeros((n, ho, wo, c))
    for b in range(n):
        for g in range(group):
            img = x[b, :, :, g * cg:(g + 1) * cg].transpose(2, 0, 1)
            for p, (i, j) in enumerate(points):
                q = g * npts + p
                loc_w = ow * sw - pw + half_w + (i * dw - half_w + offset[b, :, :, 2 * q]) * offset_scale
                loc_h = oh * sh - ph + half_h + (j * dh - half_h + offset[b, :, :, 2 * q + 1]) * offset_scale
                sampled = bilinear_zero(img, loc_h, loc_w)  # [cg, ho, wo]
                out[b, :, :, g * cg:(g + 1) * cg] += (sampled * mask[b, :, :, q]).transpose(1, 2, 0)
    return out


def ddf(x: np.ndarray, channel_filter: np.ndarray, spatial_filter: np.ndarray, k: int, dilation: int,
        stride: int, combine: str) -> np.ndarray:
    """The ddfnet CUDA kernel: windows centred at (i*s, j*s), out-of-image taps skipped.

    Output size is the spatial filter's (the official kernel's ``floor(H/s)`` when it divides).
    """
    n, c, h, w = x.shape
    ho, wo = spatial_filter.shape[2], spatial_filter.shape[3]
    r = (k - 1) // 2
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            for u in range(k):
                for v in range(k):
                    y, xx = i * stride + (u - r) * dilation, j * stride + (v - r) * dilation
                    if not (0 <= y < h and 0 <= xx < w):
                        continue
                    fs = spatial_filter[:, u * k + v, i, j][:, None]  # [n, 1]
                    fc = channel_filter[:, :, u, v]  # [n, c]
                    f = fs * fc if combine == "mul" else fs + fc
                    out[:, :, i, j] += x[:, :, y, xx] * f
    return out


def involution(x: np.ndarray, weight: np.ndarray, kernel: Sequence[int], stride: Sequence[int],
               padding: Sequence[int], dilation: Sequence[int], groups: int) -> np.ndarray:
    """d-li14's aggregation: ``out[c] = sum_t W[g(c)*K + t] * x[c, i*s - p + u*d, j*s - p + v*d]``, zero padding."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho, wo = weight.shape[2], weight.shape[3]
    cpg = c // groups
    out = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            for u in range(kh):
                for v in range(kw):
                    y, xx = i * sh - ph + u * dh, j * sw - pw + v * dw
                    if not (0 <= y < h and 0 <= xx < w):
                        continue
                    wt = weight[:, np.arange(groups) * kh * kw + u * kw + v, i, j]  # [n, groups]
                    out[:, :, i, j] += x[:, :, y, xx] * np.repeat(wt, cpg, axis=1)
    return out


def conv2d(x: np.ndarray, weight: np.ndarray, stride: Sequence[int], padding: Sequence[int],
           dilation: Sequence[int], groups: int = 1) -> np.ndarray:
    """Plain grouped convolution by tap loops (zero padding), for the per-sample/per-region references."""
    n, c, h, w = x.shape
    o, cpg, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho, wo = conv_out(h, kh, sh, ph, ph, dh), conv_out(w, kw, sw, pw, pw, dw)
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    out = np.zeros((n, o, ho, wo))
    opg = o // groups
    for g in range(groups):
        for u in range(kh):
            for v in range(kw):
                window = xp[:, g * cpg:(g + 1) * cpg, u * dh:u * dh + (ho - 1) * sh + 1:sh,
                            v * dw:v * dw + (wo - 1) * sw + 1:sw]
                out[:, g * opg:(g + 1) * opg] += np.einsum("oc,ncij->noij", weight[g * opg:(g + 1) * opg, :, u, v],
                                                           window)
    return out


def drconv(x: np.ndarray, guide: np.ndarray, filters: np.ndarray, stride: Sequence[int], padding: Sequence[int],
           dilation: Sequence[int]) -> np.ndarray:
    """Paper form: every pixel takes region ``argmax guide`` (first maximum), per-sample per-region conv."""
    n = x.shape[0]
    regions = np.argmax(guide, axis=1)  # [n, ho, wo]
    outs = []
    for b in range(n):
        per_region = np.stack([conv2d(x[b:b + 1], filters[b, t], stride, padding, dilation)[0]
                               for t in range(filters.shape[1])])  # [m, o, ho, wo]
        outs.append(np.take_along_axis(per_region, regions[b][None, None], axis=0)[0])
    return np.stack(outs)


def mixture_conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, routing: np.ndarray,
                   stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], groups: int) -> np.ndarray:
    """DynamicConv/CondConv as the authors compute it: per-sample kernel ``sum_e r_e W_e``, then a conv."""
    outs = []
    for b in range(x.shape[0]):
        kernel = np.tensordot(routing[b], weight, axes=1)
        y = conv2d(x[b:b + 1], kernel, stride, padding, dilation, groups)[0]
        if bias is not None:
            y = y + (routing[b] @ bias).reshape(-1, 1, 1)
        outs.append(y)
    return np.stack(outs)
