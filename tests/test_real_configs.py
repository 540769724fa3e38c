"""dynconv's ops against the authors' semantics on real networks' layer configurations.

Configurations come from the published networks and the authors' repositories (mmdet ResNet-50-DCN
and CenterNet/DLA, InternImage T/B/L/XL/H and FlashInternImage T/B/L, RedNet-50, DDF-ResNet-50,
DRConv-ShuffleNetV2, DY-ResNet-50, CondConv-EfficientNet-B0, SKNet-50), at small odd spatial sizes.
The reference is ``real_config_naive`` (float64 loops written from the authors' kernels); dynconv's
eager op (FP32), its ONNX reference flavour in onnxruntime and the C++ CPU reference must agree within
1e-5 x the output scale.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import real_config_naive as naive
from dynconv.export import ExportOptions, export_model
from dynconv.export.official_megvii import RoutedRegionConv
from dynconv.plugins import native
from dynconv.plugins.dcnv3 import DCNv3, DCNv4, dcnv3, dcnv4
from dynconv.plugins.ddf import DDFPack, ddf
from dynconv.plugins.deform_conv import DeformConv2d, ModulatedDeformConv2d, deform_conv2d
from dynconv.plugins.drconv import DRConv2d, drconv
from dynconv.plugins.dynamic_conv import CondConv2d, DynamicConv2d
from dynconv.plugins.involution import Involution, involution
from dynconv.plugins.skconv import SKConv2d
from parity import assert_close_scaled, custom_nodes, run_onnxruntime

REL = 1e-5


def _f64(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().double().numpy()


def _check(actual, expected, rel: float = REL) -> None:
    assert_close_scaled(actual.detach().double().numpy() if isinstance(actual, torch.Tensor) else actual,
                        expected, rel)


def _offsets(shape: tuple[int, ...], gen: torch.Generator, spread: float = 2.5) -> torch.Tensor:
    """Random offsets; a quarter exact integers, a quarter exact half-integers, a few far outside the image."""
    off = torch.randn(shape, generator=gen) * spread
    pick = torch.rand(shape, generator=gen)
    off = torch.where(pick < 0.25, off.round(), off)
    off = torch.where((pick >= 0.25) & (pick < 0.5), off.floor() + 0.5, off)
    return torch.where(pick > 0.97, off.sign() * 40.0, off)


def _cpuref(op: str, arrays: list, attrs: dict) -> np.ndarray:
    return native.run_reference(op, [None if a is None else a.detach().numpy() for a in arrays], attrs)


# ================================================================================================
# DCNv1 / DCNv2 (torchvision / mmcv semantics)
# ================================================================================================
# id: (N, Cin, Cout, H, W, (kh, kw), stride, pad, dilation, groups, offset_groups, mask, bias)
DCN_CASES = {
    # mmdet ResNet-50 dcn=DCNv2 stage_with_dcn=(F,T,T,T): conv2 3x3 pad 1, stride 2 in the first block, no bias
    "r50-dcnv2-c3-first-s2": (1, 128, 128, 13, 17, (3, 3), (2, 2), (1, 1), (1, 1), 1, 1, True, False),
    "r50-dcnv2-c4": (1, 256, 256, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, False),
    # mmdet dconv (DCNv1, no mask) / mdconv_c3-c5_group4 (deform_groups 4); ResNeXt-style groups 32 with dg 4
    "r50-dcnv1-c5-dg4-s2": (2, 256, 256, 9, 11, (3, 3), (2, 2), (1, 1), (1, 1), 1, 4, False, False),
    "x101-dcnv2-c5-g32-dg4": (1, 256, 256, 7, 9, (3, 3), (1, 1), (1, 1), (1, 1), 32, 4, True, False),
    # CenterNet DLA-34 up path: DCN(k3, pad 1, deformable_groups 1) with bias
    "centernet-dla-up": (1, 64, 64, 13, 17, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, True),
    # dilated c5 (DeepLab/DCN with dilation 2, padding 2)
    "dilated-c5-d2": (1, 64, 64, 13, 17, (3, 3), (1, 1), (2, 2), (2, 2), 1, 2, True, False),
    # edge semantics: non-square kernel, per-axis stride/pad/dilation
    "nonsquare-asym": (2, 12, 8, 13, 17, (3, 5), (2, 1), (1, 2), (2, 1), 2, 3, True, True),
}
DCN_CHEAP = ["r50-dcnv2-c3-first-s2", "r50-dcnv1-c5-dg4-s2", "centernet-dla-up", "nonsquare-asym"]


def _dcn_inputs(case: tuple, seed: int = 0):
    n, cin, cout, h, w, (kh, kw), s, p, d, g, og, with_mask, with_bias = case
    gen = torch.Generator().manual_seed(seed)
    ho, wo = naive.conv_out(h, kh, s[0], p[0], p[0], d[0]), naive.conv_out(w, kw, s[1], p[1], p[1], d[1])
    x = torch.randn(n, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin // g, kh, kw, generator=gen) / math.sqrt(cin // g * kh * kw)
    offset = _offsets((n, 2 * og * kh * kw, ho, wo), gen)
    mask = torch.rand(n, og * kh * kw, ho, wo, generator=gen) if with_mask else None
    bias = torch.randn(cout, generator=gen) if with_bias else None
    return x, weight, offset, mask, bias


def _dcn_naive(case, x, weight, offset, mask, bias):
    s, p, d, g, og = case[6:11]
    return naive.deform_conv2d(_f64(x), _f64(weight), _f64(offset), _f64(mask), _f64(bias), s, p, d, g, og)


@pytest.mark.parametrize("name", [pytest.param(k, marks=() if k in DCN_CHEAP else pytest.mark.slow) for k in DCN_CASES])
def test_deform_conv_real_configs_match_naive_and_torchvision(name):
    case = DCN_CASES[name]
    x, weight, offset, mask, bias = _dcn_inputs(case)
    s, p, d, g, og = case[6:11]
    want = _dcn_naive(case, x, weight, offset, mask, bias)
    _check(deform_conv2d(x, offset, weight, bias, s, p, d, mask, groups=g, offset_groups=og), want)
    try:
        import torchvision  # torchvision's own op (optional): the naive loops follow it exactly
    except ImportError:
        return
    tv = torchvision.ops.deform_conv2d(*(t.double() if t is not None else None for t in (x, offset, weight, bias)),
                                       stride=s, padding=p, dilation=d, mask=None if mask is None else mask.double())
    _check(tv, want, 1e-12)


def _border_offsets(n: int, taps: int, ho: int, wo: int, h: int, w: int, s: int, p: int, kw: int) -> torch.Tensor:
    """Offsets that put tap k of pixel (i, j) exactly on chosen border coordinates (both axes):
    outside (-1, -1.25, H, H + 0.5), on the edge band (-0.75, -0.5, H - 0.5, H - 0.25) and on pixels."""
    targets_y = torch.tensor([-1.25, -1.0, -0.75, -0.5, 0.0, h - 1.0, h - 0.5, h - 0.25, float(h), h + 0.5])
    targets_x = torch.tensor([-1.0, -0.5, 0.25, w - 0.5, float(w), -0.75, w - 1.0, w - 0.25, -1.5, 2.5])
    off = torch.zeros(n, taps, 2, ho, wo)
    ii, jj = torch.meshgrid(torch.arange(ho), torch.arange(wo), indexing="ij")
    for k in range(taps):
        u, v = k // kw, k % kw
        ty = targets_y[(ii + jj + k) % len(targets_y)]
        tx = targets_x[(ii * 3 + jj + 2 * k) % len(targets_x)]
        off[:, k, 0] = ty - (ii * s - p + u)
        off[:, k, 1] = tx - (jj * s - p + v)
    return off.reshape(n, taps * 2, ho, wo)


def _dcn_border_case(stride: int) -> tuple[torch.Tensor, ...]:
    """(x, weight, offset, mask) with every tap on a border coordinate (3x3, pad 1)."""
    n, c, h, w, k = 1, 6, 7, 9, 3
    gen = torch.Generator().manual_seed(1)
    ho, wo = naive.conv_out(h, k, stride, 1, 1, 1), naive.conv_out(w, k, stride, 1, 1, 1)
    x = torch.randn(n, c, h, w, generator=gen) + 3.0  # no accidental zeros
    weight = torch.randn(4, c, k, k, generator=gen)
    offset = _border_offsets(n, k * k, ho, wo, h, w, stride, 1, k)
    return x, weight, offset, torch.rand(n, k * k, ho, wo, generator=gen)


def _dcn_border_naive(stride: int, x, weight, offset, mask) -> np.ndarray:
    return naive.deform_conv2d(_f64(x), _f64(weight), _f64(offset), _f64(mask), None, (stride,) * 2, (1, 1),
                               (1, 1), 1, 1)


@pytest.mark.parametrize("stride", [1, 2])
def test_deform_conv_border_band_and_far_outside(stride):
    """Samples at y in {-1, -0.75, -0.5, H-0.5, H, ...}: the band -1 < y < 0 reads the first row weighted,
    y <= -1 and y >= H read 0 (torchvision/mmcv ``-1 < h_im < height``)."""
    x, weight, offset, mask = _dcn_border_case(stride)
    want = _dcn_border_naive(stride, x, weight, offset, mask)
    _check(deform_conv2d(x, offset, weight, None, stride, 1, 1, mask), want)
    gen = torch.Generator().manual_seed(2)
    far = torch.full_like(offset, -50.0)
    bias = torch.randn(4, generator=gen)
    out = deform_conv2d(x, far, weight, bias, stride, 1, 1, mask)
    assert torch.equal(out, bias.reshape(1, -1, 1, 1).expand_as(out))


def test_deform_conv_asymmetric_padding_is_zero_padding_of_the_input():
    """(top, left, bottom, right) padding = the symmetric op on an input zero-padded by the surplus."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 8, 13, 17, generator=gen)
    weight = torch.randn(8, 8, 3, 3, generator=gen)
    top, left, bottom, right = 0, 1, 1, 2  # TF-'same'-like: more at the end
    ho, wo = naive.conv_out(13, 3, 2, top, bottom, 1), naive.conv_out(17, 3, 2, left, right, 1)
    offset = _offsets((1, 18, ho, wo), gen)
    mask = torch.rand(1, 9, ho, wo, generator=gen)
    xp = F.pad(x.double(), (left, right, top, bottom))
    want = naive.deform_conv2d(_f64(xp), _f64(weight), _f64(offset), _f64(mask), None, (2, 2), (0, 0), (1, 1), 1, 1)
    _check(deform_conv2d(x, offset, weight, None, 2, (top, left, bottom, right), 1, mask), want)


def _authors_mmcv_pack_forward(m: DeformConv2d, x: torch.Tensor) -> np.ndarray:
    """mmcv ``(Modulated)DeformConv2dPack.forward``: ``conv_offset`` (the layer's stride/padding/dilation);
    DCNv2: ``o1, o2, mask = chunk(out, 3)``, ``offset = cat(o1, o2)``, ``mask = sigmoid``."""
    sd = {k: v.double() for k, v in m.state_dict().items()}
    x = x.double()
    out = F.conv2d(x, sd["conv_offset.weight"], sd["conv_offset.bias"], m.stride, m.padding, m.dilation)
    mask = None
    if isinstance(m, ModulatedDeformConv2d):
        o1, o2, logits = torch.chunk(out, 3, dim=1)
        out, mask = torch.cat((o1, o2), dim=1), torch.sigmoid(logits)
    return naive.deform_conv2d(x.numpy(), _f64(sd["weight"]), out.numpy(), _f64(mask), _f64(sd.get("bias")),
                               m.stride, m.padding, m.dilation, m.groups, m.offset_groups)


@pytest.mark.parametrize("cls, cin, cout, s, d, og, bias", [
    (ModulatedDeformConv2d, 128, 128, 2, 1, 1, False),  # mmdet r50 DCNv2 c3, first block
    (DeformConv2d, 64, 64, 2, 1, 4, False),  # mmdet dconv, deform_groups 4
    (ModulatedDeformConv2d, 32, 32, 1, 2, 2, True),  # dilated, with bias
])
def test_mmcv_pack_layers_match_the_authors_forward(cls, cin, cout, s, d, og, bias):
    gen = torch.Generator().manual_seed(16)
    m = _randomize(cls(cin, cout, 3, s, d, d, offset_groups=og, bias=bias), gen, offset_gain=1.0)
    with torch.no_grad():  # offsets of a few pixels: conv_offset with fan-in scaled weights on unit inputs
        m.conv_offset.weight.mul_(3.0)
    x = torch.randn(2, cin, 13, 17, generator=gen)
    with torch.no_grad():
        _check(m(x), _authors_mmcv_pack_forward(m, x))


# ================================================================================================
# DCNv3 / DCNv4 core (InternImage / FlashInternImage)
# ================================================================================================
# id: (N, H, W, group, group_channels, k, stride, pad, dilation, offset_scale, remove_center)
DCNV3_CASES = {
    "internimage-t-s1": (1, 13, 17, 4, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1.0, 0),
    "internimage-t-s4": (2, 7, 9, 32, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1.0, 0),
    "internimage-b-s1": (1, 13, 17, 7, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1.0, 0),
    "internimage-l-s1": (1, 9, 11, 10, 16, (3, 3), (1, 1), (1, 1), (1, 1), 2.0, 0),
    "internimage-xl-s1": (1, 9, 11, 12, 16, (3, 3), (1, 1), (1, 1), (1, 1), 2.0, 0),
    "internimage-h-s1": (1, 9, 11, 10, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1.0, 0),
    "flash-b-remove-center": (1, 13, 17, 7, 16, (3, 3), (1, 1), (1, 1), (1, 1), 0.5, 1),
    # the op's general form: stride 2, non-square kernel, pad_h != pad_w (the official PyTorch reference
    # swaps them; the CUDA kernel, followed here, does not), dilation
    "s2-odd": (2, 13, 17, 4, 8, (3, 3), (2, 2), (1, 1), (1, 1), 1.0, 0),
    "nonsquare-asym": (1, 13, 17, 3, 4, (3, 5), (2, 1), (2, 1), (2, 1), 1.5, 0),
}
DCNV3_CHEAP = ["internimage-t-s1", "internimage-l-s1", "flash-b-remove-center", "nonsquare-asym"]


def _dcnv3_inputs(case: tuple, seed: int = 0):
    n, h, w, g, cg, (kh, kw), s, p, d, _, rc = case
    gen = torch.Generator().manual_seed(seed)
    ho, wo = naive.conv_out(h, kh, s[0], p[0], p[0], d[0]), naive.conv_out(w, kw, s[1], p[1], p[1], d[1])
    pts = kh * kw - rc
    x = torch.randn(n, h, w, g * cg, generator=gen)
    offset = _offsets((n, ho, wo, g * pts * 2), gen)
    mask = torch.softmax(torch.randn(n, ho, wo, g, pts, generator=gen), -1).reshape(n, ho, wo, g * pts)
    return x, offset, mask


def _dcnv3_naive(case, x, offset, mask):
    _, _, _, g, _, k, s, p, d, scale, rc = case
    return naive.dcnv3_core(_f64(x), _f64(offset), _f64(mask), k, s, p, d, g, scale, bool(rc))


@pytest.mark.parametrize("name", [pytest.param(k, marks=() if k in DCNV3_CHEAP else pytest.mark.slow)
                                  for k in DCNV3_CASES])
def test_dcnv3_real_configs_match_naive(name):
    case = DCNV3_CASES[name]
    _, _, _, g, cg, k, s, p, d, scale, rc = case
    x, offset, mask = _dcnv3_inputs(case)
    _check(dcnv3(x, offset, mask, k, s, p, d, g, cg, scale, rc), _dcnv3_naive(case, x, offset, mask))


def _dcnv3_border_case() -> tuple[torch.Tensor, ...]:
    """(x, offset, mask), NHWC, 2 groups of 4 channels, every point on a border coordinate (3x3, pad 1)."""
    n, h, w, g, cg = 1, 7, 9, 2, 4
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(n, h, w, g * cg, generator=gen) + 3.0
    # the kernel's location for point (i, j) is ow - 1 + 1 + (i - 1 + dx) (scale 1, k 3, pad 1); choose targets
    off = _border_offsets(n, 9, h, w, h, w, 1, 1, 3).reshape(n, 9, 2, h, w)  # (dy, dx) per tap u*3+v
    # DCNv3 point p = i*kh + j (i column); tap (u=j, v=i); pairs (dx, dy)
    order = [j * 3 + i for i in range(3) for j in range(3)]
    pairs = torch.stack((off[:, order, 1], off[:, order, 0]), 2)  # [n, 9, 2, h, w]
    offset = pairs.permute(0, 3, 4, 1, 2).reshape(n, h, w, 18).repeat(1, 1, 1, g)
    return x, offset, torch.rand(n, h, w, g * 9, generator=gen)


def _dcnv3_border_naive(x, offset, mask) -> np.ndarray:
    return naive.dcnv3_core(_f64(x), _f64(offset), _f64(mask), (3, 3), (1, 1), (1, 1), (1, 1), 2, 1.0, False)


def test_dcnv3_border_band_and_exact_offsets():
    """Points at -1, -0.5, H-0.5, H, ... read by the DCNv3 rule (``-1 < loc < H``, zero corners outside)."""
    x, offset, mask = _dcnv3_border_case()
    g, cg = 2, 4
    _check(dcnv3(x, offset, mask, 3, 1, 1, 1, g, cg, 1.0), _dcnv3_border_naive(x, offset, mask))
    far = torch.full_like(offset, 60.0)
    assert torch.count_nonzero(dcnv3(x, far, mask, 3, 1, 1, 1, g, cg, 1.0)) == 0


def test_dcnv3_and_dcnv2_sample_alike_at_the_border():
    """Same image, same sample points: DCNv2 (NCHW, (dy, dx), row-major taps) and DCNv3 (NHWC, (dx, dy),
    column-major points) with a one-hot weight per tap give identical samples: one border rule."""
    gen = torch.Generator().manual_seed(4)
    h, w, c = 7, 9, 3
    x = torch.randn(1, c, h, w, generator=gen)
    off = _border_offsets(1, 9, h, w, h, w, 1, 1, 3)
    for tap in range(9):
        weight = torch.zeros(c, 1, 3, 3)
        weight[:, 0, tap // 3, tap % 3] = 1.0
        v2 = deform_conv2d(x, off, weight, None, 1, 1, 1, None, groups=c)
        point = (tap % 3) * 3 + tap // 3  # DCNv3 point index of tap (u, v): i = v, j = u
        pairs = off.reshape(1, 9, 2, h, w)[:, [j * 3 + i for i in range(3) for j in range(3)]].flip(2)
        offset = pairs.permute(0, 3, 4, 1, 2).reshape(1, h, w, 18).repeat(1, 1, 1, c)
        mask = torch.zeros(1, h, w, c, 9)
        mask[..., point] = 1.0
        v3 = dcnv3(x.permute(0, 2, 3, 1), offset, mask.reshape(1, h, w, c * 9), 3, 1, 1, 1, c, 1, 1.0)
        torch.testing.assert_close(v3.permute(0, 3, 1, 2), v2, rtol=0, atol=1e-6)


@pytest.mark.parametrize("g, scale, rc", [(7, 0.5, 0), (4, 1.0, 1), (10, 2.0, 1)])
def test_dcnv4_packed_offset_mask_layout(g, scale, rc):
    """DCNv4 ``forward_kernel_dcn``: group g reads ``offset_mask[g*3P : g*3P + 2P]`` as (x, y) pairs and
    ``[g*3P + 2P : g*3P + 3P]`` as weights; the padding channels up to a multiple of 8 are never read."""
    gen = torch.Generator().manual_seed(21)
    pts, cg = 9 - rc, 16
    used = g * pts * 3
    width = math.ceil(used / 8) * 8
    x = torch.randn(1, 13, 17, g * cg, generator=gen)
    packed = torch.cat((_offsets((1, 13, 17, g, 2 * pts), gen), torch.randn(1, 13, 17, g, pts, generator=gen)), -1)
    om = torch.cat((packed.reshape(1, 13, 17, used), torch.full((1, 13, 17, width - used), 1e6)), -1)
    offset, mask = packed[..., :2 * pts].reshape(1, 13, 17, -1), packed[..., 2 * pts:].reshape(1, 13, 17, -1)
    want = naive.dcnv3_core(_f64(x), _f64(offset), _f64(mask), (3, 3), (1, 1), (1, 1), (1, 1), g, scale, bool(rc))
    _check(dcnv4(x, om, 3, 1, 1, 1, g, cg, scale, rc), want)


# ----- modules: InternImage DCNv3 / OpenGVLab DCNv4 forward, written from the authors' module code ------
# id: (channels, group, offset_scale, dw_kernel_size, center_feature_scale, remove_center, output_bias, H, W)
DCN_MODULES = {
    "dcnv3-internimage-t": ("v3", 64, 4, 1.0, None, False, False, True, 13, 17),
    "dcnv3-internimage-b": ("v3", 112, 7, 1.0, None, False, False, True, 9, 11),
    "dcnv3-internimage-l": ("v3", 160, 10, 2.0, None, False, False, True, 9, 11),
    "dcnv3-internimage-h": ("v3", 320, 10, 1.0, 5, True, False, True, 7, 9),
    "dcnv3-h-style-small": ("v3", 64, 2, 1.0, 5, True, False, True, 9, 11),  # H's dw 5, gate, Cg 32 at C=64
    "dcnv3-remove-center": ("v3", 64, 4, 1.0, None, False, True, True, 13, 17),
    "dcnv4-flash-t": ("v4", 64, 4, 1.0, None, False, False, False, 13, 17),
    "dcnv4-flash-b": ("v4", 112, 7, 0.5, 3, False, False, False, 9, 11),
    "dcnv4-flash-l": ("v4", 160, 10, 2.0, 3, False, False, True, 9, 11),
    "dcnv4-remove-center-cfs": ("v4", 64, 4, 1.0, 3, True, True, True, 13, 17),
}
DCN_MODULES_CHEAP = ["dcnv3-h-style-small", "dcnv4-remove-center-cfs"]


def _randomize(module: nn.Module, gen: torch.Generator, offset_gain: float = 3.0) -> nn.Module:
    """Fan-in-scaled random weights everywhere (the released inits zero the offsets), BN stats too."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in) * (0.3 if p.dim() == 1 else 1.0))
            if name.startswith(("offset.", "offset_mask.")):
                p.mul_(offset_gain)
            if "norm" in name and name.endswith("weight") or ".1.1.weight" in name:
                p.add_(1.0)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
    return module.eval()


def _build_dcn_module(spec: tuple, gen: torch.Generator) -> nn.Module:
    kind, c, g, scale, dwk, cfs, rc, obias = spec[:8]
    if kind == "v3":
        m = DCNv3(c, 3, dw_kernel_size=dwk, group=g, offset_scale=scale, center_feature_scale=cfs, remove_center=rc)
    else:
        m = DCNv4(c, 3, group=g, offset_scale=scale, dw_kernel_size=dwk, center_feature_scale=cfs, remove_center=rc,
                  output_bias=obias)
    return _randomize(m, gen)


def _authors_dcnv3_forward(m: DCNv3, x: torch.Tensor, dwk: int, cfs: bool, rc: bool) -> np.ndarray:
    """InternImage ``DCNv3.forward``: input_proj; DWConv -> LN(eps 1e-6) -> GELU; offset, softmax(mask) per group."""
    sd = {k: v.double() for k, v in m.state_dict().items()}
    x = x.double()
    n, h, w, c = x.shape
    g = m.group
    value = F.linear(x, sd["input_proj.weight"], sd["input_proj.bias"])
    q = F.conv2d(x.permute(0, 3, 1, 2), sd["dw_conv.0.weight"], sd["dw_conv.0.bias"], padding=(dwk - 1) // 2,
                 groups=c).permute(0, 2, 3, 1)
    q = F.gelu(F.layer_norm(q, (c,), sd["dw_conv.1.1.weight"], sd["dw_conv.1.1.bias"], eps=1e-6))
    offset = F.linear(q, sd["offset.weight"], sd["offset.bias"])
    mask = F.softmax(F.linear(q, sd["mask.weight"], sd["mask.bias"]).reshape(n, h, w, g, -1), -1).reshape(n, h, w, -1)
    y = torch.from_numpy(naive.dcnv3_core(value.numpy(), offset.numpy(), mask.numpy(), (3, 3), (1, 1), (1, 1),
                                          (1, 1), g, m.offset_scale, rc))
    if cfs:
        lam = torch.sigmoid(F.linear(q, sd["center_feature_scale_proj_weight"], sd["center_feature_scale_proj_bias"]))
        lam = lam.repeat_interleave(c // g, -1)
        y = y * (1 - lam) + value * lam
    return F.linear(y, sd["output_proj.weight"], sd["output_proj.bias"]).numpy()


def _authors_dcnv4_forward(m: DCNv4, x: torch.Tensor, dwk: int | None, cfs: bool, rc: bool) -> np.ndarray:
    """OpenGVLab ``DCNv4.forward``: value_proj; offset_mask Linear (on a plain DWConv of the input when
    dw_kernel_size), per group ``[2P (x, y) | P weights]`` at ``g*3P``, no softmax; gate from the output."""
    sd = {k: v.double() for k, v in m.state_dict().items()}
    x = x.double()
    n, h, w, c = x.shape
    g, pts = m.group, 9 - int(rc)
    value = F.linear(x, sd["value_proj.weight"], sd["value_proj.bias"])
    q = x
    if dwk is not None:
        q = F.conv2d(x.permute(0, 3, 1, 2), sd["offset_mask_dw.weight"], sd["offset_mask_dw.bias"],
                     padding=(dwk - 1) // 2, groups=c).permute(0, 2, 3, 1)
    om = F.linear(q, sd["offset_mask.weight"], sd["offset_mask.bias"])
    assert om.shape[-1] == math.ceil(g * pts * 3 / 8) * 8
    per_group = om[..., :g * pts * 3].reshape(n, h, w, g, 3 * pts)
    offset = per_group[..., :2 * pts].reshape(n, h, w, -1)
    mask = per_group[..., 2 * pts:].reshape(n, h, w, -1)
    y = torch.from_numpy(naive.dcnv3_core(value.numpy(), offset.numpy(), mask.numpy(), (3, 3), (1, 1), (1, 1),
                                          (1, 1), g, m.offset_scale, rc))
    if cfs:
        lam = torch.sigmoid(F.linear(y, sd["center_feature_scale_proj_weight"], sd["center_feature_scale_proj_bias"]))
        y = y * (1 - lam.repeat_interleave(c // g, -1)) + value * lam.repeat_interleave(c // g, -1)
    return F.linear(y, sd["output_proj.weight"], sd.get("output_proj.bias")).numpy()


@pytest.mark.parametrize("name", [pytest.param(k, marks=() if k in DCN_MODULES_CHEAP else pytest.mark.slow)
                                  for k in DCN_MODULES])
def test_dcn_modules_match_the_authors_forward(name):
    spec = DCN_MODULES[name]
    kind, c, _, _, dwk, cfs, rc, _, h, w = spec
    gen = torch.Generator().manual_seed(5)
    m = _build_dcn_module(spec, gen)
    x = torch.randn(2, h, w, c, generator=gen)
    if kind == "v3":
        want = _authors_dcnv3_forward(m, x, dwk or 3, cfs, rc)
    else:
        want = _authors_dcnv4_forward(m, x, dwk, cfs, rc)
        tokens = m(x.reshape(2, h * w, c), shape=(h, w))  # the original's [N, H*W, C] call
        _check(tokens.reshape(2, h, w, c), want)
    with torch.no_grad():
        _check(m(x), want)


# ================================================================================================
# DDF (ddfnet)
# ================================================================================================
# id: (N, C, H, W, k, dilation, stride, combine)
DDF_CASES = {
    "ddf-r50-s1-c64-mul": (1, 64, 13, 17, 3, 1, 1, "mul"),
    "ddf-r50-s2-c128-first-mul": (1, 128, 14, 10, 3, 1, 2, "mul"),  # official sizes: H, W divisible by s
    "ddf-r50-s2-c256-add": (2, 256, 14, 10, 3, 1, 2, "add"),
    "ddf-s2-odd-add": (1, 32, 13, 17, 3, 1, 2, "add"),  # dynconv's ceil(H/s) rule
    "ddf-d2-k5-mul": (1, 16, 13, 17, 5, 2, 1, "mul"),
}
DDF_CHEAP = ["ddf-r50-s2-c128-first-mul", "ddf-s2-odd-add", "ddf-d2-k5-mul"]


def _ddf_inputs(case: tuple, seed: int = 0):
    n, c, h, w, k, _, s, _ = case
    gen = torch.Generator().manual_seed(seed)
    ho, wo = -(-h // s), -(-w // s)
    return (torch.randn(n, c, h, w, generator=gen), torch.randn(n, c, k, k, generator=gen),
            torch.randn(n, k * k, ho, wo, generator=gen))


@pytest.mark.parametrize("name", [pytest.param(k, marks=() if k in DDF_CHEAP else pytest.mark.slow) for k in DDF_CASES])
def test_ddf_real_configs_match_naive(name):
    case = DDF_CASES[name]
    _, _, h, w, k, d, s, combine = case
    x, fc, fs = _ddf_inputs(case)
    if h % s == 0 and w % s == 0:  # the official kernel's floor(H/s) output
        assert fs.shape[2:] == (h // s, w // s)
    _check(ddf(x, fc, fs, k, d, s, combine), naive.ddf(_f64(x), _f64(fc), _f64(fs), k, d, s, combine))


def _authors_ddfpack_forward(m: DDFPack, x: torch.Tensor) -> np.ndarray:
    """ddfnet ``DDFPack.forward``: FilterNorm with ``torch.std`` (unbiased) + 1e-10; spatial gain
    ``calculate_gain('relu')/k`` per head; channel gain the learnt ``std`` vector (dynconv's ``gamma``);
    heads: x, Fc, Fs reshaped to ``N*head`` samples of ``C/head`` channels."""
    sd = {k: v.double() for k, v in m.state_dict().items()}
    x = x.double()
    n, c, h, w = x.shape
    k, s, g = m.kernel_size, m.stride, m.head
    fs = F.conv2d(x, sd["spatial_branch.0.weight"], sd["spatial_branch.0.bias"], stride=s)
    ho, wo = fs.shape[2:]
    fs = fs.reshape(n, g, k * k, ho, wo)
    fs = (fs - fs.mean(2, keepdim=True)) / (fs.std(2, keepdim=True) + 1e-10) * (math.sqrt(2.0) / k)
    pooled = x.mean((2, 3), keepdim=True)
    fc = F.conv2d(F.relu(F.conv2d(pooled, sd["channel_branch.1.weight"], sd["channel_branch.1.bias"])),
                  sd["channel_branch.3.weight"], sd["channel_branch.3.bias"]).reshape(n, c, k * k)
    fc = (fc - fc.mean(2, keepdim=True)) / (fc.std(2, keepdim=True) + 1e-10)
    fc = fc.reshape(n, c * k * k) * sd["channel_branch.4.gamma"]
    out = naive.ddf(x.reshape(n * g, c // g, h, w).numpy(), fc.reshape(n * g, c // g, k, k).numpy(),
                    fs.reshape(n * g, k * k, ho, wo).numpy(), k, m.dilation, s, m.kernel_combine)
    return out.reshape(n, c, ho, wo)


@pytest.mark.parametrize("c, s, combine, h, w, head", [(64, 1, "mul", 13, 17, 1), (128, 2, "mul", 14, 10, 1),
                                                       pytest.param(256, 2, "add", 14, 10, 1, marks=pytest.mark.slow),
                                                       (32, 2, "add", 13, 17, 1), (32, 2, "mul", 14, 10, 2)])
def test_ddfpack_matches_the_authors_forward(c, s, combine, h, w, head):
    gen = torch.Generator().manual_seed(6)
    m = _randomize(DDFPack(c, 3, s, head=head, se_ratio=0.2, kernel_combine=combine), gen)
    x = torch.randn(2, c, h, w, generator=gen)
    with torch.no_grad():
        _check(m(x), _authors_ddfpack_forward(m, x))


# ================================================================================================
# Involution (RedNet)
# ================================================================================================
# id: (N, C, H, W, K, stride, groups = C/16)
INV_CASES = {
    "rednet-stem-c32-k3": (1, 32, 13, 17, 3, 1),
    "rednet-s1-c64-k7": (1, 64, 13, 17, 7, 1),
    "rednet-s2-c128-k7-first": (1, 128, 14, 10, 7, 2),
    "rednet-s2-c512-k7": (1, 512, 8, 6, 7, 2),
    "rednet-s2-odd": (2, 32, 13, 17, 7, 2),
}
INV_CHEAP = ["rednet-stem-c32-k3", "rednet-s2-c128-k7-first", "rednet-s2-odd"]


@pytest.mark.parametrize("name", [pytest.param(k, marks=() if k in INV_CHEAP else pytest.mark.slow) for k in INV_CASES])
def test_involution_real_configs_match_naive(name):
    n, c, h, w, k, s = INV_CASES[name]
    g, p = c // 16, (k - 1) // 2
    gen = torch.Generator().manual_seed(7)
    ho, wo = naive.conv_out(h, k, s, p, p, 1), naive.conv_out(w, k, s, p, p, 1)
    x = torch.randn(n, c, h, w, generator=gen)
    weight = torch.randn(n, g * k * k, ho, wo, generator=gen)
    want = naive.involution(_f64(x), _f64(weight), (k, k), (s, s), (p, p), (1, 1), g)
    _check(involution(x, weight, k, s, None, 1, g), want)


def _authors_involution_forward(m: Involution, x: torch.Tensor, ceil_mode: bool) -> np.ndarray:
    """d-li14 ``involution.forward``: AvgPool2d(s, s) -> conv1 (no bias) -> BN -> ReLU -> conv2 -> unfold-sum.
    ``ceil_mode`` only for sizes the official code cannot run (dynconv's documented extension)."""
    sd = {k: v.double() for k, v in m.state_dict().items()}
    x = x.double()
    s, k = m.stride, m.kernel_size
    pooled = F.avg_pool2d(x, s, s, ceil_mode=ceil_mode) if s > 1 else x
    hidden = F.conv2d(pooled, sd["reduce.weight"])
    hidden = F.batch_norm(hidden, sd["norm.running_mean"], sd["norm.running_var"], sd["norm.weight"],
                          sd["norm.bias"], eps=m.norm.eps)
    weight = F.conv2d(F.relu(hidden), sd["span.weight"], sd["span.bias"])
    p = (k - 1) // 2
    return naive.involution(x.numpy(), weight.numpy(), (k, k), (s, s), (p, p), (1, 1), m.groups)


@pytest.mark.parametrize("c, k, s, h, w", [(32, 3, 1, 13, 17), (128, 7, 2, 14, 10), (64, 7, 2, 13, 17),
                                           pytest.param(256, 7, 2, 8, 6, marks=pytest.mark.slow)])
def test_involution_module_matches_the_authors_forward(c, k, s, h, w):
    gen = torch.Generator().manual_seed(8)
    m = _randomize(Involution(c, k, s), gen)
    x = torch.randn(2, c, h, w, generator=gen)
    with torch.no_grad():
        _check(m(x), _authors_involution_forward(m, x, ceil_mode=h % s != 0 or w % s != 0))


# ================================================================================================
# DRConv (paper form / shallowtoil DRConv-PyTorch)
# ================================================================================================
# id: (N, C, O, H, W, k, stride, pad, dilation, regions)
DRCONV_CASES = {
    "shufflenet-1x1-c24": (2, 24, 24, 13, 17, 1, 1, 0, 1, 8),
    "shufflenet-1x1-c48-to-96": (1, 48, 96, 7, 9, 1, 1, 0, 1, 8),
    "paper-3x3-pad1": (1, 16, 32, 13, 17, 3, 1, 1, 1, 8),
    "3x3-s2-d2": (2, 8, 12, 13, 17, 3, 2, 2, 2, 4),
}
DRCONV_CHEAP = ["shufflenet-1x1-c24", "paper-3x3-pad1", "3x3-s2-d2"]


@pytest.mark.parametrize("name", [pytest.param(k, marks=() if k in DRCONV_CHEAP else pytest.mark.slow)
                                  for k in DRCONV_CASES])
def test_drconv_real_configs_match_naive(name):
    n, c, o, h, w, k, s, p, d, m = DRCONV_CASES[name]
    gen = torch.Generator().manual_seed(9)
    ho, wo = naive.conv_out(h, k, s, p, p, d), naive.conv_out(w, k, s, p, p, d)
    x = torch.randn(n, c, h, w, generator=gen)
    guide = torch.randn(n, m, ho, wo, generator=gen)
    filters = torch.randn(n, m, o, c, k, k, generator=gen) / math.sqrt(c * k * k)
    want = naive.drconv(_f64(x), _f64(guide), _f64(filters), (s, s), (p, p), (d, d))
    _check(drconv(x, guide, filters, s, p, d), want)


def _authors_drconv_forward(m: DRConv2d, x: torch.Tensor) -> np.ndarray:
    """DRConv-PyTorch ``DRConv2d.forward``: kernel = conv(sigmoid(conv(AdaptiveAvgPool(k)(x)))) grouped by m,
    read [N, m, O, C, k, k]; guide = conv(x) with the layer's kwargs; one-hot argmax selection."""
    sd = {k: v.double() for k, v in m.state_dict().items()}
    x = x.double()
    n, c = x.shape[:2]
    r, o = m.region_num, m.out_channels
    kernel = F.adaptive_avg_pool2d(x, m.kernel_size)
    kernel = torch.sigmoid(F.conv2d(kernel, sd["filter_generator.1.weight"], sd["filter_generator.1.bias"]))
    kernel = F.conv2d(kernel, sd["filter_generator.3.weight"], sd["filter_generator.3.bias"], groups=r)
    filters = kernel.reshape(n, r, o, c, *m.kernel_size)
    guide = F.conv2d(x, sd["guide.weight"], sd["guide.bias"], m.stride, m.padding, m.dilation)
    return naive.drconv(x.numpy(), guide.numpy(), filters.numpy(), m.stride, m.padding, m.dilation)


@pytest.mark.parametrize("c, o, k, s, p, h, w", [(24, 24, 1, 1, 0, 13, 17), (16, 32, 3, 1, 1, 13, 17),
                                                 (8, 12, 3, 2, 1, 13, 17)])
def test_drconv_module_matches_the_authors_forward(c, o, k, s, p, h, w):
    gen = torch.Generator().manual_seed(10)
    m = _randomize(DRConv2d(c, o, k, 8, s, p), gen)
    x = torch.randn(2, c, h, w, generator=gen)
    with torch.no_grad():
        _check(m(x), _authors_drconv_forward(m, x))


def _authors_megvii_forward(m: RoutedRegionConv, x: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """megvii-research ``DRConv.forward``: ``coef = 2*sigmoid(routing_fc(GAP(x)))/num_W``, filters
    ``(coef @ weight^T)`` as ``[N, m, O, C*k*k]`` -> ``[N, O, C*k*k, m]``; ``F.unfold`` columns; the region index
    map (nearest-resized to the output size) picks the filter per pixel; ``+ bias``."""
    sd = {k: v.double() for k, v in m.state_dict().items()}
    x = x.double()
    n, c = x.shape[:2]
    (kh, kw), regions, experts, o = m.kernel_size, m.groups_num, m.num_W, m.out_channels
    ho = naive.conv_out(x.shape[2], kh, m.stride[0], m.padding[0], m.padding[0], m.dilation[0])
    wo = naive.conv_out(x.shape[3], kw, m.stride[1], m.padding[1], m.padding[1], m.dilation[1])
    coef = 2.0 * torch.sigmoid(F.linear(x.mean((2, 3)), sd["routing_fc.weight"], sd["routing_fc.bias"])) / experts
    weight = F.linear(coef.reshape(-1, experts), sd["weight"]).reshape(n, regions, o, c * kh * kw).permute(0, 2, 3, 1)
    cols = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride).reshape(n, -1, ho, wo)
    if mask.shape[-2:] != (ho, wo):
        mask = F.interpolate(mask.double().unsqueeze(1), (ho, wo)).squeeze(1)
    index = mask.long().numpy()  # [n, ho, wo]
    w_sel = np.take_along_axis(weight.numpy()[:, :, :, None, None, :],
                               index[:, None, None, :, :, None], axis=-1)[..., 0]  # [n, O, Ckk, ho, wo]
    out = np.einsum("noqij,nqij->noij", w_sel, cols.numpy())
    return out + sd["bias"].numpy().reshape(1, -1, 1, 1) if "bias" in sd else out


@pytest.mark.parametrize("k, s, p, mask_size", [(1, 1, 0, (13, 17)), (3, 2, 1, (13, 17)), (3, 1, 1, (7, 9))])
def test_megvii_drconv_matches_the_authors_forward(k, s, p, mask_size):
    """The official megvii layer (routed filter bank, region map from outside, nearest-resized)."""
    gen = torch.Generator().manual_seed(20)
    m = _randomize(RoutedRegionConv(12, 16, (k, k), (s, s), (p, p), (1, 1), 8, 8, True), gen)
    x = torch.randn(2, 12, 13, 17, generator=gen)
    mask = torch.randint(0, 8, (2, *mask_size), generator=gen)
    with torch.no_grad():
        _check(m(x, mask), _authors_megvii_forward(m, x, mask))


# ================================================================================================
# DynamicConv (DY-ResNet-50), CondConv (EfficientNet-B0), SKConv (SKNet-50)
# ================================================================================================
# id: (cls, C, O, k, stride, groups, experts, H, W, bias)
MIXTURE_CASES = {
    "dy-r50-3x3-s2-first": ("dy", 64, 64, 3, 2, 1, 4, 13, 17, False),
    "dy-r50-1x1": ("dy", 128, 32, 1, 1, 1, 4, 9, 11, False),
    "dy-kaijieshi7-default-bias": ("dy", 16, 32, 3, 1, 1, 4, 13, 17, True),  # Dynamic_conv2d(bias=True) default
    "cc-b0-dw3-s2-8e": ("cc", 96, 96, 3, 2, 96, 8, 13, 17, False),
    "cc-b0-dw5-s2-8e": ("cc", 144, 144, 5, 2, 144, 8, 13, 17, False),
    "cc-b0-expand-1x1-4e": ("cc", 16, 96, 1, 1, 1, 4, 13, 17, False),
    "cc-grouped-bias": ("cc", 16, 24, 3, 2, 4, 4, 13, 17, True),
}
MIXTURE_CHEAP = ["dy-r50-3x3-s2-first", "dy-kaijieshi7-default-bias", "cc-b0-dw5-s2-8e", "cc-grouped-bias"]


def _build_mixture(spec: tuple, gen: torch.Generator) -> nn.Module:
    kind, c, o, k, s, g, e, _, _, bias = spec
    if kind == "dy":
        return _randomize(DynamicConv2d(c, o, k, s, k // 2, groups=g, bias=bias, num_experts=e, temperature=3.0), gen)
    return _randomize(CondConv2d(c, o, k, s, k // 2, groups=g, bias=bias, num_experts=e), gen)


def _authors_mixture_forward(m: nn.Module, x: torch.Tensor) -> np.ndarray:
    """kaijieshi7 ``Dynamic_conv2d`` (softmax(fc2(relu(fc1(GAP)))/T)) / timm CondConv (sigmoid routing),
    then the per-sample aggregated kernel ``sum_e r_e W_e`` in an ordinary conv."""
    sd = {k: v.double() for k, v in m.state_dict().items()}
    x = x.double()
    pooled = x.mean((2, 3))
    if isinstance(m, DynamicConv2d):
        logits = F.linear(F.relu(F.linear(pooled, sd["fc1.weight"], sd["fc1.bias"])), sd["fc2.weight"], sd["fc2.bias"])
        routing = torch.softmax(logits / m.temperature, 1)
    else:
        routing = torch.sigmoid(F.linear(pooled, sd["routing.weight"], sd["routing.bias"]))
    return naive.mixture_conv2d(x.numpy(), sd["weight"].numpy(), _f64(sd.get("bias")), routing.numpy(), m.stride,
                                m.padding, m.dilation, m.groups)


@pytest.mark.parametrize("name", [pytest.param(k, marks=() if k in MIXTURE_CHEAP else pytest.mark.slow)
                                  for k in MIXTURE_CASES])
def test_mixture_modules_match_the_authors_forward(name):
    spec = MIXTURE_CASES[name]
    gen = torch.Generator().manual_seed(11)
    m = _build_mixture(spec, gen)
    x = torch.randn(3, spec[1], spec[7], spec[8], generator=gen)
    with torch.no_grad():
        _check(m(x), _authors_mixture_forward(m, x))


def _authors_sk_forward(m: SKConv2d, x: torch.Tensor) -> np.ndarray:
    """SKNet/timm ``SelectiveKernel`` (split_input=False): branch i = ReLU(BN(conv 3x3, dilation 1+i, groups G)),
    U = sum, z = ReLU(BN(fc_reduce(GAP(U)))), softmax over branches of fc_select(z), V = sum a_i U_i."""
    sd = {k: v.double() for k, v in m.state_dict().items()}
    xn = x.double().numpy()

    def bn(t: np.ndarray, prefix: str, eps: float) -> np.ndarray:
        shape = (1, -1, 1, 1)
        return ((t - sd[prefix + "running_mean"].numpy().reshape(shape))
                / np.sqrt(sd[prefix + "running_var"].numpy().reshape(shape) + eps)
                * sd[prefix + "weight"].numpy().reshape(shape) + sd[prefix + "bias"].numpy().reshape(shape))

    feats = []
    for i, branch in enumerate(m.branches):
        conv = branch[0]
        y = naive.conv2d(xn, sd[f"branches.{i}.0.weight"].numpy(), conv.stride, conv.padding, conv.dilation,
                         conv.groups)
        feats.append(np.maximum(bn(y, f"branches.{i}.1.", branch[1].eps), 0))
    u = sum(feats)
    z = np.einsum("hc,nc->nh", sd["squeeze.0.weight"].numpy()[:, :, 0, 0], u.mean((2, 3)))[:, :, None, None]
    z = np.maximum(bn(z, "squeeze.1.", m.squeeze[1].eps), 0)[:, :, 0, 0]
    logits = np.einsum("mh,nh->nm", sd["select.weight"].numpy()[:, :, 0, 0], z)
    if "select.bias" in sd:
        logits = logits + sd["select.bias"].numpy()
    logits = logits.reshape(x.shape[0], m.num_branches, -1)
    a = np.exp(logits - logits.max(1, keepdims=True))
    a = a / a.sum(1, keepdims=True)
    return sum(a[:, i, :, None, None] * feats[i] for i in range(m.num_branches))


@pytest.mark.parametrize("c, s, h, w", [(128, 1, 13, 17), pytest.param(256, 2, 13, 17, marks=pytest.mark.slow),
                                        (64, 2, 13, 17)])
def test_skconv_matches_the_authors_forward(c, s, h, w):
    gen = torch.Generator().manual_seed(12)
    m = _randomize(SKConv2d(c, c, 2, s, groups=32, reduction=16, min_dim=32, select_bias=False), gen)
    x = torch.randn(2, c, h, w, generator=gen)
    with torch.no_grad():
        _check(m(x), _authors_sk_forward(m, x))


# ================================================================================================
# Every distinct dynamic layer of the published networks (export/networks, one block per stage)
# ================================================================================================
DYNAMIC_LAYERS = (DCNv3, DCNv4, DDFPack, DeformConv2d, Involution, DRConv2d, DynamicConv2d, CondConv2d, SKConv2d)


def _layer_key(m: nn.Module) -> tuple:
    plain = (int, float, bool, str, tuple, type(None))
    return (type(m).__name__,) + tuple(sorted((k, v) for k, v in vars(m).items()
                                              if not k.startswith("_") and k != "training" and isinstance(v, plain)))


def _network_layers(name: str) -> list[nn.Module]:
    """The distinct dynamic layers (by class and configuration) of the reduced network ``name``."""
    from dynconv.export.networks import NETWORKS

    torch.manual_seed(0)
    layers: dict[tuple, nn.Module] = {}
    for module in NETWORKS[name].reduced().modules():
        if isinstance(module, DYNAMIC_LAYERS):
            layers.setdefault(_layer_key(module) + (sum(p.numel() for p in module.parameters()),), module)
    return list(layers.values())


def _layer_input(m: nn.Module, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A small odd-sized input for layer ``m`` (NHWC for DCNv3/v4); CondConv with external routing gets one."""
    if isinstance(m, (DCNv3, DCNv4)):
        return (torch.randn(1, 9, 11, m.channels, generator=gen),)
    channels = next(p for p in m.parameters() if p.dim() >= 4)
    cin = {DDFPack: lambda: m.spatial_branch[0].in_channels, Involution: lambda: m.reduce.in_channels,
           SKConv2d: lambda: m.branches[0][0].in_channels}.get(type(m), lambda: getattr(m, "in_channels", None))()
    x = torch.randn(2, cin or channels.shape[1], 9, 11, generator=gen)
    if isinstance(m, CondConv2d) and m.routing is None:
        return x, torch.sigmoid(torch.randn(2, m.num_experts, generator=gen))
    return (x,)


def _authors_layer_forward(m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    x = inputs[0]
    if isinstance(m, DCNv3):
        return _authors_dcnv3_forward(m, x, m.dw_conv[0].kernel_size[0], m.center_feature_scale, bool(m.remove_center))
    if isinstance(m, DCNv4):
        return _authors_dcnv4_forward(m, x, m.dw_kernel_size, m.center_feature_scale, bool(m.remove_center))
    if isinstance(m, DDFPack):
        return _authors_ddfpack_forward(m, x)
    if isinstance(m, Involution):
        return _authors_involution_forward(m, x, ceil_mode=x.shape[2] % m.stride != 0 or x.shape[3] % m.stride != 0)
    if isinstance(m, DRConv2d):
        return _authors_drconv_forward(m, x)
    if isinstance(m, SKConv2d):
        return _authors_sk_forward(m, x)
    if isinstance(m, DeformConv2d):
        return _authors_mmcv_pack_forward(m, x)
    if isinstance(m, CondConv2d) and len(inputs) == 2:
        sd = {k: v.double() for k, v in m.state_dict().items()}
        return naive.mixture_conv2d(_f64(x), sd["weight"].numpy(), _f64(sd.get("bias")), _f64(inputs[1]), m.stride,
                                    m.padding, m.dilation, m.groups)
    return _authors_mixture_forward(m, x)


NETWORK_NAMES = ["internimage_t", "flash_internimage_t", "rednet50", "ddfnet50", "resnet50_dcn",
                 "drconv_shufflenetv2", "dy_resnet50", "condconv_efficientnet_b0", "sknet50"]
NETWORKS_CHEAP = ["rednet50", "resnet50_dcn"]


@pytest.mark.parametrize("network", [pytest.param(n, marks=() if n in NETWORKS_CHEAP else pytest.mark.slow)
                                     for n in NETWORK_NAMES])
def test_network_layers_match_the_authors_forward(network):
    layers = _network_layers(network)
    assert layers, f"{network} has no dynamic layer"
    gen = torch.Generator().manual_seed(17)
    for m in layers:
        _randomize(m, gen, offset_gain=3.0)
        if isinstance(m, DeformConv2d):
            with torch.no_grad():
                m.conv_offset.weight.mul_(3.0)
        inputs = _layer_input(m, gen)
        with torch.no_grad():
            got = m(*inputs)
        assert_close_scaled(got.double().numpy(), _authors_layer_forward(m, inputs), REL)


# ================================================================================================
# ONNX reference flavour in onnxruntime, on the same configurations
# ================================================================================================
class _Functional(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


@functools.lru_cache(maxsize=1)
def _onnx_cases() -> dict:
    """name -> (model, inputs, naive reference, export layout); built once, on first use."""
    cases = {}
    dcn = DCN_CASES["r50-dcnv2-c3-first-s2"]
    x, weight, offset, mask, _ = _dcn_inputs(dcn)
    s, p, d, g, og = dcn[6:11]
    cases["dcnv2-r50-c3-s2"] = (
        _Functional(lambda a, b, c_: deform_conv2d(a, b, weight, None, s, p, d, c_, groups=g, offset_groups=og)),
        (x, offset, mask), lambda: _dcn_naive(dcn, x, weight, offset, mask, None), "nchw")
    asym = DCN_CASES["nonsquare-asym"]
    ax, aw, aoff, amask, abias = _dcn_inputs(asym, 1)
    cases["dcnv2-nonsquare-asym"] = (
        _Functional(lambda a, b, c_: deform_conv2d(a, b, aw, abias, asym[6], asym[7], asym[8], c_, groups=asym[9],
                                                   offset_groups=asym[10])),
        (ax, aoff, amask), lambda: _dcn_naive(asym, ax, aw, aoff, amask, abias), "nchw")
    v3 = DCNV3_CASES["nonsquare-asym"]
    vx, voff, vmask = _dcnv3_inputs(v3)
    cases["dcnv3-op-nonsquare-asym"] = (
        _Functional(lambda a, b, c_: dcnv3(a, b, c_, *v3[5:9], v3[3], v3[4], v3[9], v3[10])),
        (vx, voff, vmask), lambda: _dcnv3_naive(v3, vx, voff, vmask), "nhwc")
    gen = torch.Generator().manual_seed(13)
    for name in ("dcnv3-h-style-small", "dcnv4-remove-center-cfs"):
        spec = DCN_MODULES[name]
        m = _build_dcn_module(spec, gen)
        mx = torch.randn(1, spec[8], spec[9], spec[1], generator=gen)
        ref = (lambda m=m, mx=mx, spec=spec: _authors_dcnv3_forward(m, mx, spec[4] or 3, spec[5], spec[6])
               if spec[0] == "v3" else _authors_dcnv4_forward(m, mx, spec[4], spec[5], spec[6]))
        cases[name] = (m, (mx,), ref, "nhwc")
    ddfm = _randomize(DDFPack(32, 3, 2, kernel_combine="add"), gen)
    dx = torch.randn(1, 32, 13, 17, generator=gen)
    cases["ddfpack-s2-add-odd"] = (ddfm, (dx,), lambda: _authors_ddfpack_forward(ddfm, dx), "nchw")
    invm = _randomize(Involution(64, 7, 2), gen)
    ix = torch.randn(1, 64, 14, 10, generator=gen)
    cases["involution-k7-s2"] = (invm, (ix,), lambda: _authors_involution_forward(invm, ix, False), "nchw")
    drm = _randomize(DRConv2d(8, 12, 3, 8, 2, 1), gen)
    rx = torch.randn(1, 8, 13, 17, generator=gen)
    cases["drconv-3x3-s2"] = (drm, (rx,), lambda: _authors_drconv_forward(drm, rx), "nchw")
    mix = _build_mixture(MIXTURE_CASES["cc-b0-dw5-s2-8e"], gen)
    cx = torch.randn(2, 144, 13, 17, generator=gen)
    cases["condconv-dw5-s2"] = (mix, (cx,), lambda: _authors_mixture_forward(mix, cx), "nchw")
    sk = _randomize(SKConv2d(64, 64, 2, 2, groups=32, select_bias=False), gen)
    sx = torch.randn(1, 64, 13, 17, generator=gen)
    cases["skconv-g32-s2"] = (sk, (sx,), lambda: _authors_sk_forward(sk, sx), "nchw")
    return cases


ONNX_CASES = ["dcnv2-r50-c3-s2", "dcnv2-nonsquare-asym", "dcnv3-op-nonsquare-asym", "dcnv3-h-style-small",
              "dcnv4-remove-center-cfs", "ddfpack-s2-add-odd", "involution-k7-s2", "drconv-3x3-s2",
              "condconv-dw5-s2", "skconv-g32-s2"]


@pytest.mark.parametrize("exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", ONNX_CASES)
def test_onnx_reference_flavour_matches_naive_in_onnxruntime(name, exporter):
    assert sorted(_onnx_cases()) == sorted(ONNX_CASES)
    model, inputs, reference, layout = _onnx_cases()[name]
    proto = export_model(model, inputs, ExportOptions(target="onnx", exporter=exporter, layout=layout))
    assert not custom_nodes(proto)
    got = run_onnxruntime(proto, [t.numpy() for t in inputs])[0]
    assert_close_scaled(got, reference(), REL)


@pytest.mark.parametrize("name", DCN_CHEAP)
def test_standard_deform_conv_flavour_matches_naive_in_onnxruntime(name):
    """``--target onnx --opset 19``: the standard ONNX ``DeformConv`` run by onnxruntime."""
    case = DCN_CASES[name]
    x, weight, offset, mask, bias = _dcn_inputs(case)
    s, p, d, g, og = case[6:11]
    inputs = (x, offset) if mask is None else (x, offset, mask)
    model = _Functional(lambda a, b, *c_: deform_conv2d(a, b, weight, bias, s, p, d, c_[0] if c_ else None,
                                                        groups=g, offset_groups=og))
    proto = export_model(model, inputs, ExportOptions(target="onnx", exporter="torchscript", opset=19))
    assert "DeformConv" in {n.op_type for n in proto.graph.node}
    got = run_onnxruntime(proto, [t.numpy() for t in inputs])[0]
    assert_close_scaled(got, _dcn_naive(case, x, weight, offset, mask, bias), REL)


def _pack(cls: type, *args, **kwargs) -> nn.Module:
    m = _randomize(cls(*args, **kwargs), torch.Generator().manual_seed(18))
    with torch.no_grad():
        m.conv_offset.weight.mul_(3.0)
    return m


# single-input layers exported once with dynamic batch/height/width, run at another (odd) size
DYNAMIC_SIZE_LAYERS = {
    "dcnv3-internimage-t": lambda gen: _build_dcn_module(DCN_MODULES["dcnv3-internimage-t"], gen),
    "dcnv3-internimage-h": lambda gen: _build_dcn_module(DCN_MODULES["dcnv3-internimage-h"], gen),
    "dcnv4-flash-b": lambda gen: _build_dcn_module(DCN_MODULES["dcnv4-flash-b"], gen),
    "mmcv-dcnv2-pack-s2": lambda gen: _pack(ModulatedDeformConv2d, 16, 16, 3, 2, 1),
    "ddfpack-s2-add": lambda gen: _randomize(DDFPack(32, 3, 2, kernel_combine="add"), gen),
    "involution-k7-s2": lambda gen: _randomize(Involution(32, 7, 2), gen),
    "drconv-3x3-s2": lambda gen: _randomize(DRConv2d(8, 12, 3, 8, 2, 1), gen),
    "dynamicconv-s2-bias": lambda gen: _build_mixture(MIXTURE_CASES["dy-kaijieshi7-default-bias"], gen),
    "skconv-g32-s2": lambda gen: _randomize(SKConv2d(64, 64, 2, 2, groups=32, select_bias=False), gen),
}
DYNAMIC_CHEAP = ["dcnv3-internimage-t", "mmcv-dcnv2-pack-s2", "involution-k7-s2"]


@pytest.mark.parametrize("exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", [pytest.param(k, marks=() if k in DYNAMIC_CHEAP else pytest.mark.slow)
                                  for k in DYNAMIC_SIZE_LAYERS])
def test_dynamic_size_export_matches_naive_at_another_size(name, exporter):
    gen = torch.Generator().manual_seed(19)
    m = DYNAMIC_SIZE_LAYERS[name](gen)
    nhwc = isinstance(m, (DCNv3, DCNv4))
    c = m.channels if nhwc else _layer_input(m, gen)[0].shape[1]
    example = torch.randn((2, 12, 16, c) if nhwc else (2, c, 12, 16), generator=gen)
    run = torch.randn((1, 13, 17, c) if nhwc else (1, c, 13, 17), generator=gen)
    options = ExportOptions(target="onnx", exporter=exporter, layout="nhwc" if nhwc else "nchw",
                            dynamic=("batch", "height", "width"))
    proto = export_model(m, (example,), options)
    got = run_onnxruntime(proto, [run.numpy()])[0]
    assert_close_scaled(got, _authors_layer_forward(m, (run,)), REL)


# ================================================================================================
# C++ CPU reference (libdynconv_cpuref.so) on the same configurations
# ================================================================================================
def _cpp_cases() -> list:
    cases = []
    for name in DCN_CHEAP:
        case = DCN_CASES[name]
        x, weight, offset, mask, bias = _dcn_inputs(case)
        s, p, d, g, og = case[6:11]
        attrs = dict(stride=list(s), padding=list(p), dilation=list(d), groups=g, offset_groups=og,
                     with_mask=int(mask is not None), with_bias=int(bias is not None))
        cases.append(pytest.param("deform_conv2d", [x, weight, offset, mask, bias], attrs,
                                  lambda c=case, a=(x, weight, offset, mask, bias): _dcn_naive(c, *a),
                                  id=f"dcn-{name}"))
    for name in DCNV3_CHEAP:
        case = DCNV3_CASES[name]
        x, offset, mask = _dcnv3_inputs(case)
        _, _, _, g, cg, k, s, p, d, scale, rc = case
        attrs = dict(kernel_size=list(k), stride=list(s), padding=list(p), dilation=list(d), group=g,
                     group_channels=cg, offset_scale=scale, remove_center=rc)
        cases.append(pytest.param("dcnv3", [x, offset, mask], attrs,
                                  lambda c=case, a=(x, offset, mask): _dcnv3_naive(c, *a), id=f"dcnv3-{name}"))
    for stride in (1, 2):
        x, weight, offset, mask = _dcn_border_case(stride)
        attrs = dict(stride=[stride] * 2, padding=[1, 1], dilation=[1, 1], groups=1, offset_groups=1, with_mask=1,
                     with_bias=0)
        cases.append(pytest.param("deform_conv2d", [x, weight, offset, mask, None], attrs,
                                  lambda s=stride, a=(x, weight, offset, mask): _dcn_border_naive(s, *a),
                                  id=f"dcn-border-s{stride}"))
    x, offset, mask = _dcnv3_border_case()
    attrs = dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], group=2, group_channels=4,
                 offset_scale=1.0, remove_center=0)
    cases.append(pytest.param("dcnv3", [x, offset, mask], attrs, lambda a=(x, offset, mask): _dcnv3_border_naive(*a),
                              id="dcnv3-border"))
    for name in DDF_CHEAP:
        case = DDF_CASES[name]
        x, fc, fs = _ddf_inputs(case)
        _, _, _, _, k, d, s, combine = case
        cases.append(pytest.param("ddf", [x, fc, fs], dict(kernel_size=k, dilation=d, stride=s, combine=combine),
                                  lambda a=(x, fc, fs), k=k, d=d, s=s, cb=combine:
                                  naive.ddf(*map(_f64, a), k, d, s, cb), id=f"ddf-{name}"))
    for name in INV_CHEAP:
        n, c, h, w, k, s = INV_CASES[name]
        g, p = c // 16, (k - 1) // 2
        gen = torch.Generator().manual_seed(14)
        x = torch.randn(n, c, h, w, generator=gen)
        ho, wo = naive.conv_out(h, k, s, p, p, 1), naive.conv_out(w, k, s, p, p, 1)
        wk = torch.randn(n, g * k * k, ho, wo, generator=gen)
        attrs = dict(kernel_size=[k, k], stride=[s, s], padding=[p, p], dilation=[1, 1], groups=g)
        cases.append(pytest.param("involution", [x, wk], attrs,
                                  lambda a=(x, wk), k=k, s=s, p=p, g=g:
                                  naive.involution(*map(_f64, a), (k, k), (s, s), (p, p), (1, 1), g), id=f"inv-{name}"))
    for name in DRCONV_CHEAP:
        n, c, o, h, w, k, s, p, d, m = DRCONV_CASES[name]
        gen = torch.Generator().manual_seed(15)
        x = torch.randn(n, c, h, w, generator=gen)
        guide = torch.randn(n, m, naive.conv_out(h, k, s, p, p, d), naive.conv_out(w, k, s, p, p, d), generator=gen)
        filters = torch.randn(n, m, o, c, k, k, generator=gen)
        attrs = dict(kernel_size=[k, k], stride=[s, s], padding=[p, p], dilation=[d, d], region_num=m)
        cases.append(pytest.param("drconv", [x, guide, filters], attrs,
                                  lambda a=(x, guide, filters), s=s, p=p, d=d:
                                  naive.drconv(*map(_f64, a), (s, s), (p, p), (d, d)), id=f"drconv-{name}"))
    return cases


@pytest.mark.parametrize("op, arrays, attrs, reference", _cpp_cases())
def test_cpu_reference_matches_naive(op, arrays, attrs, reference):
    assert_close_scaled(_cpuref(op, arrays, attrs), reference(), REL)
