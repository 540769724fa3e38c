"""The README's benchmark configurations as op inputs (numpy, torch-free), and their compulsory sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

BENCH_SHAPES: list[tuple[int, int, int, int]] = [(1, 256, 100, 152), (8, 128, 28, 28), (32, 64, 56, 56)]


@dataclass(frozen=True)
class BenchOp:
    label: str        #: table name (dcnv2, dcnv1, dcnv3, ddf, involution, drconv, drconv_smooth)
    op: str           #: torch name of the op in the CPU reference
    yardstick: str    #: "conv" or "depthwise"
    target: float     #: the README's promised ratio to the yardstick
    make: Callable[[tuple[int, int, int, int], np.random.Generator], tuple[list[np.ndarray | None], dict[str, Any]]]
    macs: Callable[[tuple[int, int, int, int]], int]  #: multiply-adds the op's math needs


def _randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _dcn(mask: bool):
    def make(shape, rng):
        n, c, h, w = shape
        inputs = [_randn(rng, n, c, h, w), _randn(rng, c, c, 3, 3, scale=(9 * c) ** -0.5),
                  _randn(rng, n, 18, h, w, scale=1.5),
                  (1 / (1 + np.exp(-_randn(rng, n, 9, h, w)))).astype(np.float32) if mask else None,
                  _randn(rng, c)]
        attrs = dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, offset_groups=1,
                     with_mask=int(mask), with_bias=1)
        return inputs, attrs
    return make


def _dcnv3(shape, rng):
    n, c, h, w = shape
    g = c // 16
    logits = _randn(rng, n, h, w, g, 9)
    mask = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    inputs = [_randn(rng, n, h, w, c), _randn(rng, n, h, w, g * 18, scale=1.5), mask.reshape(n, h, w, g * 9)]
    attrs = dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], group=g, group_channels=16,
                 offset_scale=1.0, remove_center=0)
    return inputs, attrs


def _ddf(shape, rng):
    n, c, h, w = shape
    return [_randn(rng, n, c, h, w), _randn(rng, n, c, 3, 3), _randn(rng, n, 9, h, w)], \
        dict(kernel_size=3, dilation=1, stride=1, combine="mul")


def _involution(shape, rng):
    n, c, h, w = shape
    return [_randn(rng, n, c, h, w), _randn(rng, n, (c // 16) * 9, h, w, scale=0.3)], \
        dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=c // 16)


def _drconv_with(guide: Callable[[np.random.Generator, int, int, int, int], np.ndarray]):
    def make(shape, rng):
        n, c, h, w = shape
        return [_randn(rng, n, c, h, w), guide(rng, n, 4, h, w), _randn(rng, n, 4, c, c, 3, 3, scale=(9 * c) ** -0.5)], \
            dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], region_num=4)
    return make


def smooth_guide(rng: np.random.Generator, n: int, m: int, h: int, w: int, cell: int = 8) -> np.ndarray:
    """``[n, m, h, w]`` region logits drawn on a grid of ``cell``-pixel steps and bilinearly interpolated:
    each region's pixels form blobs a few cells wide, as a trained guide's segments do (an i.i.d. guide
    scatters every region over the whole map, the worst case for the GEMM's gathers)."""
    coarse = rng.standard_normal((n, m, h // cell + 2, w // cell + 2))

    def axis(size: int) -> tuple[np.ndarray, np.ndarray]:
        pos = np.arange(size) / cell
        return pos.astype(np.int64), (pos - np.floor(pos))

    (y0, fy), (x0, fx) = axis(h), axis(w)
    rows = coarse[:, :, y0] * (1 - fy)[:, None] + coarse[:, :, y0 + 1] * fy[:, None]
    return (rows[..., x0] * (1 - fx) + rows[..., x0 + 1] * fx).astype(np.float32)


def _iid_guide(rng: np.random.Generator, n: int, m: int, h: int, w: int) -> np.ndarray:
    return _randn(rng, n, m, h, w)


def _conv_macs(s):
    return s[0] * s[1] * s[2] * s[3] * s[1] * 9


def _dw_macs(s):
    return s[0] * s[1] * s[2] * s[3] * 9


BENCH_OPS: list[BenchOp] = [
    BenchOp("dcnv2", "deform_conv2d", "conv", 1.5, _dcn(True), _conv_macs),
    BenchOp("dcnv1", "deform_conv2d", "conv", 1.5, _dcn(False), _conv_macs),
    BenchOp("dcnv3", "dcnv3", "depthwise", 2.0, _dcnv3, _dw_macs),
    BenchOp("ddf", "ddf", "depthwise", 1.5, _ddf, _dw_macs),
    BenchOp("involution", "involution", "depthwise", 1.5, _involution, _dw_macs),
    BenchOp("drconv", "drconv", "conv", 1.5, _drconv_with(_iid_guide), _conv_macs),
    BenchOp("drconv_smooth", "drconv", "conv", 1.5, _drconv_with(smooth_guide), _conv_macs),
]


def compulsory_bytes(inputs: list[np.ndarray | None], out_elems: int, elem: int) -> int:
    """Every input read once and the output written once (perfect reuse through L2)."""
    return elem * (sum(a.size for a in inputs if a is not None) + out_elems)


def needed_samples(label: str, shape: tuple[int, int, int, int], kernel: str) -> int | None:
    """Distinct bilinear samples the op's math needs: (pixel, tap, channel) for DCNv1/v2, (work item, point)
    for DCNv3 (an item is V channels of one group, V from the kernel name dcnv3_v<V>); None without sampling."""
    n, c, h, w = shape
    if label in ("dcnv1", "dcnv2"):
        return n * h * w * 9 * c
    if label == "dcnv3":
        v = int(kernel.split("_v")[1].split("_")[0])
        return n * h * w * (c // 16) * (-(-16 // v)) * 9
    return None


def _inside_rows(pos: np.ndarray, size: int) -> np.ndarray:
    """How many of a bilinear sample's two neighbouring rows (columns) at ``pos`` lie in [0, size)."""
    lo = np.floor(pos)
    return ((lo >= 0) & (lo < size)).astype(np.int64) + ((lo + 1 >= 0) & (lo + 1 < size))


def inside_corners(label: str, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> int | None:
    """Corner pixels inside the image over all samples of a 3x3 DCNv1/v2 or DCNv3 call (corners outside read
    zero and cost nothing); None for ops without sampling. DCNv1/v2 offsets are [N, 2*9, Ho, Wo] with (dy, dx)
    per tap k = i*3 + j; DCNv3 offsets [N, Ho, Wo, G*9*2] with (dx, dy) per point p = i*3 + j, tap column i
    outer (the ops' specs)."""
    if label not in ("dcnv1", "dcnv2", "dcnv3"):
        return None
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    taps = np.arange(3)
    if label == "dcnv3":
        x, off = inputs[0], inputs[1]
        n, ho, wo = off.shape[:3]
        h, w = x.shape[1], x.shape[2]
        off = off.reshape(n, ho, wo, -1, 3, 3, 2) * attrs.get("offset_scale", 1.0)  # [..., G, i (x), j (y), (dx, dy)]
        cx = (np.arange(wo) * sw - pw + dw).reshape(1, 1, -1, 1, 1, 1) + (taps * dw - dw).reshape(-1, 1)
        cy = (np.arange(ho) * sh - ph + dh).reshape(1, -1, 1, 1, 1, 1) + taps * dh - dh
        px, py = cx + off[..., 0], cy + off[..., 1]
    else:
        x, off = inputs[0], inputs[2]
        n, _, ho, wo = off.shape
        h, w = x.shape[2], x.shape[3]
        off = off.reshape(n, -1, 3, 3, 2, ho, wo)  # [N, offset group, i (y), j (x), (dy, dx), Ho, Wo]
        py = (np.arange(ho) * sh - ph).reshape(-1, 1) + (taps * dh).reshape(-1, 1, 1, 1) + off[..., 0, :, :]
        px = np.arange(wo) * sw - pw + (taps * dw).reshape(-1, 1, 1) + off[..., 1, :, :]
    return int((_inside_rows(py, h) * _inside_rows(px, w)).sum())


def corner_vector_channels(label: str, inputs: list[np.ndarray | None], attrs: dict[str, Any]) -> int | None:
    """Channels one corner read brings: a group's ``group_channels`` for DCNv3, ``C / offset_groups`` for
    DCNv1/v2 (read from an NHWC copy); None for ops without sampling."""
    if label == "dcnv3":
        return int(attrs["group_channels"])
    if label in ("dcnv1", "dcnv2"):
        return inputs[0].shape[1] * 18 // inputs[2].shape[1]
    return None


def min_gather_sectors(label: str, inputs: list[np.ndarray | None], attrs: dict[str, Any], fp16: bool) -> int | None:
    """The fewest 32-byte L1 sectors any kernel that gathers bilinear corners from global memory moves: every
    corner inside the image (:func:`inside_corners`) is read, its channel vector takes whole sectors, and
    corners of different pixels never share one (their vectors are a row of C elements apart). None for ops
    without sampling."""
    corners, channels = inside_corners(label, inputs, attrs), corner_vector_channels(label, inputs, attrs)
    if corners is None or channels is None:
        return None
    return corners * -(-channels * (2 if fp16 else 4) // 32)
