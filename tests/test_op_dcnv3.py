"""DCNv3/DCNv4: literal kernel transcription, conv identities, modules, ONNX parity with both exporters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dynconv.export import ExportOptions, export_model
from dynconv.plugins.dcnv3 import DCNV3, DCNv3, DCNv4, dcnv3, dcnv4, split_offset_mask
from dynconv.plugins.errors import DynconvError
from parity import assert_close_scaled, assert_trt_node, custom_nodes, run_onnxruntime


# ----- independent transcription of dcnv3_im2col_gpu_kernel (one output element per loop body) ----------

def _bilinear(img: np.ndarray, h: float, w: float) -> np.ndarray:
    """dcnv3_im2col_bilinear: 4 neighbours, each read only when inside the image."""
    height, width = img.shape[:2]
    h_low, w_low = math.floor(h), math.floor(w)
    h_high, w_high = h_low + 1, w_low + 1
    lh, lw = h - h_low, w - w_low
    hh, hw = 1 - lh, 1 - lw
    zero = np.zeros(img.shape[2])
    v1 = img[h_low, w_low] if h_low >= 0 and w_low >= 0 else zero
    v2 = img[h_low, w_high] if h_low >= 0 and w_high <= width - 1 else zero
    v3 = img[h_high, w_low] if h_high <= height - 1 and w_low >= 0 else zero
    v4 = img[h_high, w_high] if h_high <= height - 1 and w_high <= width - 1 else zero
    return hh * hw * v1 + hh * lw * v2 + lh * hw * v3 + lh * lw * v4


def naive_dcnv3(x, offset, mask, k, s, p, d, group, offset_scale, remove_center):
    x, offset, mask = (t.detach().double().numpy() for t in (x, offset, mask))
    n, height, width, c = x.shape
    cg = c // group
    kh, kw = k
    ho = (height + 2 * p[0] - (d[0] * (kh - 1) + 1)) // s[0] + 1
    wo = (width + 2 * p[1] - (d[1] * (kw - 1) + 1)) // s[1] + 1
    points = kh * kw - remove_center
    half_h, half_w = (d[0] * (kh - 1)) >> 1, (d[1] * (kw - 1)) >> 1
    out = np.zeros((n, ho, wo, c))
    for b in range(n):
        for oh in range(ho):
            for ow in range(wo):
                p0_h = oh * s[0] - p[0] + half_h
                p0_w = ow * s[1] - p[1] + half_w
                for g in range(group):
                    img = x[b, :, :, g * cg:(g + 1) * cg]
                    pt = 0
                    for i in range(kw):
                        for j in range(kh):
                            if remove_center and i == kw // 2 and j == kh // 2:
                                continue
                            q = (g * points + pt) * 2
                            loc_w = p0_w + (i * d[1] - half_w + offset[b, oh, ow, q]) * offset_scale
                            loc_h = p0_h + (j * d[0] - half_h + offset[b, oh, ow, q + 1]) * offset_scale
                            weight = mask[b, oh, ow, g * points + pt]
                            if -1 < loc_h < height and -1 < loc_w < width:
                                out[b, oh, ow, g * cg:(g + 1) * cg] += weight * _bilinear(img, loc_h, loc_w)
                            pt += 1
    return out


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def random_case(n, h, w, g, cg, k, s, p, d, rc, spread=3.0):
    ho, wo = out_size(h, k[0], s[0], p[0], d[0]), out_size(w, k[1], s[1], p[1], d[1])
    pts = k[0] * k[1] - rc
    x = torch.randn(n, h, w, g * cg)
    offset = torch.randn(n, ho, wo, g * pts * 2) * spread  # many samples land outside the image
    mask = torch.randn(n, ho, wo, g * pts)
    return x, offset, mask


GRID = [
    # n, h, w, group, group_channels, kernel (kh, kw), stride, padding, dilation, offset_scale, remove_center
    (1, 7, 9, 1, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1.0, 0),
    (2, 8, 6, 2, 3, (3, 3), (2, 2), (1, 1), (1, 1), 0.5, 0),
    (1, 9, 11, 4, 2, (5, 5), (1, 1), (2, 2), (1, 1), 2.0, 1),
    (2, 10, 7, 2, 4, (3, 5), (1, 2), (1, 2), (2, 1), 1.0, 1),
    (1, 9, 12, 2, 2, (5, 3), (2, 1), (0, 2), (1, 2), 0.5, 0),
    (2, 11, 8, 1, 3, (3, 3), (1, 1), (2, 0), (2, 2), 2.0, 1),
    (1, 6, 10, 4, 1, (3, 5), (2, 2), (2, 1), (1, 2), 1.0, 0),
    (2, 7, 8, 2, 2, (2, 4), (1, 1), (0, 1), (1, 1), 1.0, 0),
]


@pytest.mark.parametrize("case", GRID)
def test_matches_literal_kernel_transcription(case):
    n, h, w, g, cg, k, s, p, d, os_, rc = case
    x, offset, mask = random_case(n, h, w, g, cg, k, s, p, d, rc)
    got = dcnv3(x, offset, mask, k, s, p, d, g, cg, os_, rc)
    assert_close_scaled(got, naive_dcnv3(x, offset, mask, k, s, p, d, g, os_, rc), 1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 2), st.integers(3, 9), st.integers(3, 9), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from([1, 2, 3, 5]), st.sampled_from([1, 3]), st.integers(1, 2), st.integers(1, 2),
       st.integers(1, 2), st.integers(1, 2), st.integers(0, 2), st.integers(0, 2),
       st.sampled_from([0.5, 1.0, 1.5, 2.0]), st.integers(0, 1))
def test_property_random_attributes(n, h, w, g, cg, kh, kw, sh, sw, dh, dw, ph, pw, os_, rc):
    k, s, p, d = (kh, kw), (sh, sw), (ph, pw), (dh, dw)
    rc = rc if kh % 2 and kw % 2 and kh * kw > 1 else 0
    if out_size(h, kh, sh, ph, dh) < 1 or out_size(w, kw, sw, pw, dw) < 1:
        return
    x, offset, mask = random_case(n, h, w, g, cg, k, s, p, d, rc)
    got = dcnv3(x, offset, mask, k, s, p, d, g, cg, os_, rc)
    assert_close_scaled(got, naive_dcnv3(x, offset, mask, k, s, p, d, g, os_, rc), 1e-5)


# ----- identities against plain tensors and torch conv2d ----------------------------------------------

def centre_point(k):
    kh, kw = k
    return (kw // 2) * kh + kh // 2  # kernel_w is the outer loop


@pytest.mark.parametrize("k, d, os_", [((3, 3), (1, 1), 1.0), ((3, 5), (2, 1), 1.7), ((5, 3), (1, 2), 0.5)])
def test_zero_offsets_one_hot_centre_is_identity(k, d, os_):
    n, h, w, g, cg = 2, 7, 9, 2, 3
    pad = (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)
    pts = k[0] * k[1]
    x = torch.randn(n, h, w, g * cg)
    offset = torch.zeros(n, h, w, g * pts * 2)
    mask = torch.zeros(n, h, w, g, pts)
    mask[..., centre_point(k)] = 1
    got = dcnv3(x, offset, mask.flatten(-2), k, 1, pad, d, g, cg, os_, 0)
    assert_close_scaled(got, x, 1e-6)


def test_offset_pairs_are_x_then_y():
    n, h, w, c = 1, 6, 8, 3
    x = torch.randn(n, h, w, c)
    mask = torch.zeros(n, h, w, 9)
    mask[..., centre_point((3, 3))] = 1
    offset = torch.zeros(n, h, w, 9, 2)
    offset[..., 0] = 1.0  # dx = +1: read the right neighbour
    got = dcnv3(x, offset.flatten(-2), mask, 3, 1, 1, 1, 1, c)
    assert_close_scaled(got, F.pad(x[:, :, 1:], (0, 0, 0, 1)), 1e-6)
    offset = torch.zeros(n, h, w, 9, 2)
    offset[..., 1] = -0.25  # dy = -1/4: 3/4 of this row, 1/4 of the row above
    got = dcnv3(x, offset.flatten(-2), mask, 3, 1, 1, 1, 1, c)
    assert_close_scaled(got, 0.75 * x + 0.25 * F.pad(x[:, :-1], (0, 0, 0, 0, 1, 0)), 1e-6)


def depthwise(x_nhwc, weight, s, p, d):
    out = F.conv2d(x_nhwc.permute(0, 3, 1, 2), weight, stride=s, padding=p, dilation=d, groups=x_nhwc.shape[-1])
    return out.permute(0, 2, 3, 1)


@pytest.mark.parametrize("k, s, p, d, rc", [
    ((3, 3), (1, 1), (1, 1), (1, 1), 0),
    ((3, 5), (2, 1), (0, 2), (2, 1), 0),
    ((5, 3), (1, 2), (2, 1), (1, 2), 1),
])
def test_zero_offsets_uniform_mask_is_average_conv(k, s, p, d, rc):
    n, h, w, g, cg = 2, 9, 11, 2, 3
    x, offset, _ = random_case(n, h, w, g, cg, k, s, p, d, rc)
    pts = k[0] * k[1] - rc
    mask = torch.full((*offset.shape[:3], g * pts), 1.0 / pts)
    weight = torch.full((g * cg, 1, *k), 1.0 / pts)
    if rc:
        weight[:, :, k[0] // 2, k[1] // 2] = 0
    got = dcnv3(x, torch.zeros_like(offset), mask, k, s, p, d, g, cg, 1.0, rc)
    assert_close_scaled(got, depthwise(x, weight, s, p, d), 1e-5)


@pytest.mark.parametrize("k, s, p, d, os_", [
    ((3, 5), (1, 2), (1, 0), (2, 1), 1.0),
    ((5, 3), (2, 1), (2, 1), (1, 1), 2.0),  # offset_scale 2 == dilation 2d, padding p + d*(k-1)/2
])
def test_zero_offsets_shared_tap_weights_is_depthwise_conv(k, s, p, d, os_):
    """Per-(group, point) weights shared by all pixels: checks the point order against the tap grid."""
    n, h, w, g, cg = 2, 10, 9, 2, 2
    x, offset, _ = random_case(n, h, w, g, cg, k, s, p, d, 0)
    taps = torch.randn(g, k[1], k[0])  # [group, i (x), j (y)]: point p = i*kh + j
    mask = taps.reshape(1, 1, 1, -1).expand(*offset.shape[:3], -1)
    weight = taps.transpose(1, 2).repeat_interleave(cg, 0).unsqueeze(1)  # [C, 1, kh, kw]
    got = dcnv3(x, torch.zeros_like(offset), mask, k, s, p, d, g, cg, os_, 0)
    conv_d = (int(d[0] * os_), int(d[1] * os_))
    conv_p = (p[0] + (d[0] * (k[0] - 1) // 2) * (int(os_) - 1), p[1] + (d[1] * (k[1] - 1) // 2) * (int(os_) - 1))
    assert_close_scaled(got, depthwise(x, weight, s, conv_p, conv_d), 1e-5)


def test_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    offset = (torch.rand(1, 4, 5, 2 * 8 * 2, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    mask = torch.randn(1, 4, 5, 2 * 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: dcnv3(a, b, c, 3, 1, 1, 1, 2, 2, 1.0, 1), (x, offset, mask))


# ----- DCNv4 mapping and the modules ------------------------------------------------------------------

def pack_offset_mask(offset, mask, group, points, width):
    """DCNv4 layout built by hand: per group [2P offsets | P mask], then filler up to ``width``."""
    lead = offset.shape[:3]
    packed = torch.cat([offset.reshape(*lead, group, 2 * points), mask.reshape(*lead, group, points)], -1)
    filler = torch.randn(*lead, width - group * points * 3)  # must be ignored
    return torch.cat([packed.flatten(-2), filler], -1)


@pytest.mark.parametrize("rc", [0, 1])
def test_dcnv4_functional_is_dcnv3_on_split_tensor(rc):
    n, h, w, g, cg, k = 2, 6, 7, 2, 4, (3, 3)
    x, offset, mask = random_case(n, h, w, g, cg, k, (1, 1), (1, 1), (1, 1), rc, 1.0)
    pts = 9 - rc
    packed = pack_offset_mask(offset, mask, g, pts, math.ceil(g * pts * 3 / 8) * 8 + 8)
    split = split_offset_mask(packed, g, pts)
    assert torch.equal(split[0], offset) and torch.equal(split[1], mask)
    want = dcnv3(x, offset, mask, k, 1, 1, 1, g, cg, 2.0, rc)
    assert_close_scaled(dcnv4(x, packed, k, 1, 1, 1, g, cg, 2.0, rc), want, 1e-6)


class _SoftmaxOffsetMask(torch.nn.Module):
    """DCNv3's offset branch, with the softmaxed mask, packed in DCNv4's offset_mask layout."""

    def __init__(self, v3: DCNv3, width: int) -> None:
        super().__init__()
        self.v3, self.width = v3, width

    def forward(self, x):
        query = self.v3.dw_conv(x.permute(0, 3, 1, 2))
        mask = self.v3.mask(query).unflatten(-1, (self.v3.group, self.v3.points)).softmax(-1).flatten(-2)
        return pack_offset_mask(self.v3.offset(query), mask, self.v3.group, self.v3.points, self.width)


@pytest.mark.parametrize("rc", [False, True])
def test_dcnv4_module_with_softmax_mask_equals_dcnv3(rc):
    torch.manual_seed(1)
    v3 = DCNv3(32, group=2, offset_scale=1.5, remove_center=rc).eval()
    for layer in (v3.offset, v3.mask):
        torch.nn.init.normal_(layer.weight, std=0.5)
    v4 = DCNv4(32, group=2, offset_scale=1.5, remove_center=rc).eval()
    width = math.ceil(2 * v3.points * 3 / 8) * 8
    assert v4.offset_mask.out_features == width
    v4.value_proj.load_state_dict(v3.input_proj.state_dict())
    v4.output_proj.load_state_dict(v3.output_proj.state_dict())
    v4.offset_mask = _SoftmaxOffsetMask(v3, width)
    x = torch.randn(2, 7, 6, 32)
    with torch.no_grad():
        assert_close_scaled(v4(x), v3(x), 1e-5)


@pytest.mark.parametrize("cfs", [False, True])
def test_dcnv3_module_at_init_is_projected_average(cfs):
    m = DCNv3(16, group=4, center_feature_scale=cfs).eval()
    x = torch.randn(2, 5, 7, 16)
    with torch.no_grad():
        v = m.input_proj(x)
        y = depthwise(v, torch.full((16, 1, 3, 3), 1 / 9), 1, 1, 1)
        y = 0.5 * y + 0.5 * v if cfs else y  # zero-initialised gate: sigmoid(0) = 1/2
        assert_close_scaled(m(x), m.output_proj(y), 1e-5)


def test_dcnv4_module_without_pointwise_at_init_is_zero_weight_sum():
    m = DCNv4(32, group=2, without_pointwise=True, dw_kernel_size=3).eval()
    assert not hasattr(m, "value_proj")
    x = torch.randn(1, 5, 6, 32)
    torch.nn.init.normal_(m.offset_mask.bias)  # constant offsets and weights
    with torch.no_grad():
        om = m.offset_mask.bias.expand(1, 5, 6, -1)
        assert_close_scaled(m(x), dcnv4(x, om, 3, 1, 1, 1, 2, 16, 1.0, 0), 1e-6)


def test_dcnv4_token_layout_matches_nhwc():
    torch.manual_seed(4)
    layer = DCNv4(32, group=2, dw_kernel_size=3).eval()
    torch.nn.init.normal_(layer.offset_mask.weight, std=0.3)
    x = torch.randn(2, 5, 7, 32)
    with torch.no_grad():
        tokens = layer(x.reshape(2, 35, 32), shape=(5, 7))
        assert tokens.shape == (2, 35, 32)
        torch.testing.assert_close(tokens, layer(x).reshape(2, 35, 32))
    with pytest.raises(DynconvError, match="35 tokens are not a square map"):
        layer(x.reshape(2, 35, 32))
    square = torch.randn(1, 6, 6, 32)
    with torch.no_grad():
        torch.testing.assert_close(layer(square.reshape(1, 36, 32)), layer(square).reshape(1, 36, 32))


def test_dcnv3_accepts_internimage_layer_names_only_for_its_layers():
    DCNv3(32, group=2, act_layer="GELU", norm_layer="LN")
    with pytest.raises(DynconvError, match="act_layer='ReLU'"):
        DCNv3(32, group=2, act_layer="ReLU")


def test_modules_backpropagate():
    v4 = DCNv4(32, group=2, dw_kernel_size=3)
    torch.nn.init.normal_(v4.offset_mask.bias)  # zero init means zero weights, hence a zero output
    for m in (DCNv3(16, group=2, center_feature_scale=True), v4):
        x = torch.randn(1, 5, 6, m.channels, requires_grad=True)
        out = m(x)
        (out * torch.randn_like(out)).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        head = m.offset if isinstance(m, DCNv3) else m.offset_mask
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


# ----- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (dict(group_channels=3), "group\\*group_channels"),
    (dict(kernel_size=[4, 3], remove_center=1), "odd kernel_size"),
    (dict(kernel_size=1, padding=0, remove_center=1), "larger than 1x1"),
    (dict(remove_center=2), "not supported"),
    (dict(stride=[1, 0]), "below the minimum"),
    (dict(kernel_size=[3, 3, 3]), "needs 2 values"),
])
def test_bad_attributes_raise(bad, message):
    x, offset, mask = random_case(1, 6, 6, 2, 4, (3, 3), (1, 1), (1, 1), (1, 1), 0)
    args = dict(kernel_size=3, stride=1, padding=1, dilation=1, group=2, group_channels=4) | bad
    with pytest.raises(DynconvError, match=message):
        dcnv3(x, offset, mask, **args)


def test_mismatched_shapes_raise():
    x, offset, mask = random_case(1, 6, 7, 2, 4, (3, 3), (1, 1), (1, 1), (1, 1), 0)
    with pytest.raises(DynconvError, match="offset shape .* does not match"):
        dcnv3(x, offset[..., :-2], mask, 3, 1, 1, 1, 2, 4)
    with pytest.raises(DynconvError, match="offset shape .* expected \\[1, 3, 4, 36\\]"):
        dcnv3(x, offset, mask, 3, 2, 1, 1, 2, 4)  # stride 2 expects a 3x4 map
    with pytest.raises(DynconvError, match="mask shape .* does not match"):
        dcnv3(x, offset, mask[..., :-1], 3, 1, 1, 1, 2, 4)
    with pytest.raises(DynconvError, match="offset_mask must be"):
        dcnv4(x, torch.randn(1, 6, 7, 40), 3, 1, 1, 1, 2, 4)
    with pytest.raises(DynconvError, match="4-D NHWC"):
        dcnv3(x[0], offset, mask, 3, 1, 1, 1, 2, 4)


@pytest.mark.parametrize("factory, message", [
    (lambda: DCNv4(48, group=4), "multiple of 16"),
    (lambda: DCNv3(30, group=4), "divisible by group"),
    (lambda: DCNv3(16, stride=2), "stride must be 1"),
    (lambda: DCNv4(32, group=2, kernel_size=3, pad=2), "pad = dilation"),
])
def test_bad_module_arguments_raise(factory, message):
    with pytest.raises(DynconvError, match=message):
        factory()


# ----- ONNX -------------------------------------------------------------------------------------------

EXPORTERS = ["dynamo", "torchscript"]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", [GRID[3], GRID[4]])
def test_onnx_reference_matches_eager(exporter, case):
    n, h, w, g, cg, k, s, p, d, os_, rc = case

    class Wrapper(torch.nn.Module):
        def forward(self, x, offset, mask):
            return dcnv3(x, offset, mask, k, s, p, d, g, cg, os_, rc)

    x, offset, mask = random_case(n, h, w, g, cg, k, s, p, d, rc)
    model = export_model(Wrapper(), (x, offset, mask), ExportOptions(target="onnx", exporter=exporter))
    assert not custom_nodes(model)
    got = run_onnxruntime(model, [x.numpy(), offset.numpy(), mask.numpy()])[0]
    assert_close_scaled(got, dcnv3(x, offset, mask, k, s, p, d, g, cg, os_, rc))


@pytest.mark.parametrize("offsets", ["half-integer", "random"])
def test_onnx_reference_keeps_fp32_accuracy_on_a_1344_map(offsets):
    """Sampling coordinates near 1344 px lose no precision (max error <= 1e-5 x scale vs float64)."""
    size, stride, k = 1344, 32, (3, 3)  # a large stride keeps the output small, the coordinates large
    args = (k, (stride, stride), (1, 1), (1, 1), 2, 1, 1.0, 0)

    class Wrapper(torch.nn.Module):
        def forward(self, x, offset, mask):
            return dcnv3(x, offset, mask, *args)

    ho = out_size(size, 3, stride, 1, 1)
    x = torch.randn(1, size, size, 2)
    if offsets == "half-integer":
        offset = torch.randint(-8, 8, (1, ho, ho, 36)) + 0.5
    else:
        offset = torch.randn(1, ho, ho, 36) * 4
    mask = torch.rand(1, ho, ho, 18)
    model = export_model(Wrapper(), (x, offset, mask), ExportOptions(target="onnx", exporter="torchscript"))
    got = run_onnxruntime(model, [x.numpy(), offset.numpy(), mask.numpy()])[0]
    assert_close_scaled(got, dcnv3(x.double(), offset.double(), mask.double(), *args), 1e-5)


class NCHWBlock(torch.nn.Module):
    """An NCHW model around the channels-last layers (as in InternImage), for the exporters' NCHW axes."""

    def __init__(self) -> None:
        super().__init__()
        self.v3 = DCNv3(32, group=2, offset_scale=2.0, remove_center=True, center_feature_scale=True)
        self.v4 = DCNv4(32, group=2, dw_kernel_size=3)
        for layer in (self.v3.offset, self.v3.mask, self.v4.offset_mask):
            torch.nn.init.normal_(layer.weight, std=0.3)
        torch.nn.init.normal_(self.v3.center_feature_scale_proj_weight, std=0.3)

    def forward(self, x):
        return self.v4(self.v3(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dynamic_shapes_run_at_two_sizes(exporter):
    torch.manual_seed(2)
    m = NCHWBlock().eval()
    model = export_model(m, (torch.randn(2, 32, 9, 7),),
                         ExportOptions(target="onnx", exporter=exporter, dynamic=("batch", "height", "width")))
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    for shape in [(1, 32, 12, 5), (3, 32, 6, 10)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(model, [x.numpy()])[0], m(x))


class NHWCBlock(torch.nn.Module):
    """The channels-last layers as they are, NHWC in and out."""

    def __init__(self) -> None:
        super().__init__()
        self.block = NCHWBlock()

    def forward(self, x):
        return self.block.v4(self.block.v3(x))


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("target", ["onnx", "trt"])
def test_channels_last_model_exports_dynamic_height_width(exporter, target):
    torch.manual_seed(3)
    m = NHWCBlock().eval()
    model = export_model(m, (torch.randn(2, 9, 7, 32),),
                         ExportOptions(target=target, exporter=exporter, layout="nhwc",
                                       dynamic=("batch", "height", "width")))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "height", "width", 32]
    dims = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    # ONNX shape inference cannot carry symbolic sizes through a Conv; torch.export names them
    assert dims[0] == "batch" and dims[3] == 32
    assert all(isinstance(d, str) for d in dims[1:3])
    if exporter == "dynamo":
        assert dims[1:3] == ["height", "width"]
    if target == "onnx":
        for shape in [(1, 12, 5, 32), (3, 6, 10, 32)]:
            x = torch.randn(*shape)
            with torch.no_grad():
                assert_close_scaled(run_onnxruntime(model, [x.numpy()])[0], m(x))


def test_unknown_layout_is_rejected():
    with pytest.raises(DynconvError, match="unknown layout 'chw'"):
        ExportOptions(layout="chw")


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_trt_target_has_one_node_per_call(exporter):
    m = NCHWBlock().eval()
    model = export_model(m, (torch.randn(1, 32, 8, 6),), ExportOptions(target="trt", exporter=exporter))
    nodes = custom_nodes(model)
    assert len(nodes) == 2
    common = dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], group=2, group_channels=16)
    assert_trt_node(nodes[0], DCNV3, common | dict(offset_scale=2.0, remove_center=1))
    assert_trt_node(nodes[1], DCNV3, common | dict(offset_scale=1.0, remove_center=0))
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out] == [1, 32, 8, 6]


@pytest.mark.parametrize("layer", [lambda: DCNv3(32, group=2), lambda: DCNv4(32, group=2)], ids=["dcnv3", "dcnv4"])
def test_layers_export_without_size_arithmetic(layer):
    """The per-group softmax (DCNv3) and the offset/mask split (DCNv4) need no size arithmetic even
    with every map dim dynamic: a Softmax on rows of P points reshaped back like its input (one Shape),
    constant-index Gathers."""
    options = ExportOptions(target="trt", exporter="torchscript", dynamic=("batch", "height", "width"))
    model = export_model(layer().eval(), (torch.randn(2, 9, 7, 32),), options)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Shape") <= 1 and not {"Concat", "Unsqueeze", "Slice"} & set(ops), ops
    assert len(custom_nodes(model)) == 1
