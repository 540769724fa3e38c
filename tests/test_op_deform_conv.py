"""Deformable convolution (DCNv1/v2): naive-loop checks, conv identities, ONNX parity, standard DeformConv."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from dynconv.export import ExportOptions, export_model
from dynconv.plugins.deform_conv import DEFORM_CONV2D, DeformConv2d, ModulatedDeformConv2d, deform_conv2d
from dynconv.plugins.deform_conv.onnx_standard import to_standard_deform_conv
from dynconv.plugins.errors import DynconvError
from parity import assert_close_scaled, assert_trt_node, custom_nodes, run_onnxruntime


# ----- independent implementation: torchvision's im2col rules written as loops ---------------------
def bilinear(img: np.ndarray, y: float, x: float) -> np.ndarray:
    """torchvision's ``bilinear_interpolate`` on ``img [C, H, W]`` at one point (all channels)."""
    h, w = img.shape[-2:]
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return np.zeros(img.shape[0])
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0

    def at(r: int, c: int) -> np.ndarray:
        return img[:, r, c] if 0 <= r < h and 0 <= c < w else np.zeros(img.shape[0])

    return ((1 - ly) * (1 - lx) * at(y0, x0) + (1 - ly) * lx * at(y0, x0 + 1)
            + ly * (1 - lx) * at(y0 + 1, x0) + ly * lx * at(y0 + 1, x0 + 1))


def naive_deform_conv(x, offset, weight, bias, stride, padding, dilation, mask):
    """Columns by explicit loops over (n, offset group, tap, output pixel), then a grouped contraction."""
    x, offset, weight = (t.double().numpy() for t in (x, offset, weight))
    mask = None if mask is None else mask.double().numpy()
    n, cin, _, _ = x.shape
    cout, cpg, kh, kw = weight.shape
    groups = cin // cpg
    og = offset.shape[1] // (2 * kh * kw)
    ho, wo = offset.shape[2:]
    cols = np.zeros((n, cin, kh * kw, ho, wo))
    cg = cin // og
    for b in range(n):
        for g in range(og):
            for u in range(kh):
                for v in range(kw):
                    k = u * kw + v
                    q = g * kh * kw + k
                    for i in range(ho):
                        for j in range(wo):
                            y = i * stride[0] - padding[0] + u * dilation[0] + offset[b, 2 * q, i, j]
                            xx = j * stride[1] - padding[1] + v * dilation[1] + offset[b, 2 * q + 1, i, j]
                            m = 1.0 if mask is None else mask[b, q, i, j]
                            cols[b, g * cg:(g + 1) * cg, k, i, j] = m * bilinear(x[b, g * cg:(g + 1) * cg], y, xx)
    out = np.zeros((n, cout, ho, wo))
    opg = cout // groups
    for gi in range(groups):
        w = weight[gi * opg:(gi + 1) * opg].reshape(opg, cpg * kh * kw)
        c = cols[:, gi * cpg:(gi + 1) * cpg].reshape(n, cpg * kh * kw, ho * wo)
        out[:, gi * opg:(gi + 1) * opg] = np.einsum("ok,nkp->nop", w, c).reshape(n, opg, ho, wo)
    if bias is not None:
        out += bias.double().numpy()[None, :, None, None]
    return out


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def random_case(n, cin, cout, h, w, k, s, p, d, groups, og, with_mask=True, with_bias=True, scale=2.0):
    ho, wo = out_size(h, k[0], s[0], p[0], d[0]), out_size(w, k[1], s[1], p[1], d[1])
    x = torch.randn(n, cin, h, w)
    weight = torch.randn(cout, cin // groups, *k)
    offset = torch.randn(n, 2 * og * k[0] * k[1], ho, wo) * scale
    mask = torch.rand(n, og * k[0] * k[1], ho, wo) if with_mask else None
    bias = torch.randn(cout) if with_bias else None
    return x, weight, offset, mask, bias


GRID = [
    # n, cin, cout, h, w, kernel, stride, padding, dilation, groups, offset_groups
    (1, 4, 6, 7, 7, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1),
    (2, 4, 6, 9, 7, (3, 3), (2, 2), (1, 1), (1, 1), 2, 1),
    (2, 6, 4, 8, 11, (3, 3), (1, 1), (2, 2), (2, 2), 2, 3),
    (1, 4, 4, 10, 7, (3, 2), (2, 1), (1, 0), (1, 2), 1, 2),
    (3, 4, 8, 7, 9, (2, 3), (1, 2), (0, 2), (2, 1), 4, 4),
    (1, 2, 3, 5, 6, (1, 1), (1, 1), (0, 0), (1, 1), 1, 2),
]


@pytest.mark.parametrize("with_mask", [True, False])
@pytest.mark.parametrize("case", GRID)
def test_matches_naive_loops(case, with_mask):
    n, cin, cout, h, w, k, s, p, d, g, og = case
    x, weight, offset, mask, bias = random_case(n, cin, cout, h, w, k, s, p, d, g, og, with_mask)
    got = deform_conv2d(x, offset, weight, bias, s, p, d, mask)
    assert_close_scaled(got, naive_deform_conv(x, offset, weight, bias, s, p, d, mask), 1e-5)


def test_points_on_and_past_the_border_follow_torchvision_rules():
    """Offsets landing exactly on -1, H-1, H, between -1 and 0, and far outside."""
    x = torch.randn(1, 2, 5, 6)
    weight = torch.randn(3, 2, 3, 3)
    values = torch.tensor([-1.0, -0.5, 0.0, 3.999, 4.0, 5.0, -7.0, 2.5, 1.0])
    offset = values[torch.randint(0, len(values), (1, 18, 5, 6))]
    got = deform_conv2d(x, offset, weight, None, 1, 1, 1)
    assert_close_scaled(got, naive_deform_conv(x, offset, weight, None, (1, 1), (1, 1), (1, 1), None), 1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 2), st.sampled_from([(1, 1), (2, 1), (2, 2), (1, 2)]), st.integers(4, 9), st.integers(4, 9),
       st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(1, 2), st.integers(1, 2),
       st.integers(0, 2), st.integers(0, 1), st.booleans(), st.booleans())
def test_property_random_attributes(n, groups_og, h, w, kh, kw, sh, sw, dh, ph, pw, with_mask, with_bias):
    g, og = groups_og
    k, s, d, p = (kh, kw), (sh, sw), (dh, 1), (ph, pw)
    if out_size(h, kh, sh, ph, dh) < 1 or out_size(w, kw, sw, pw, 1) < 1:
        return
    x, weight, offset, mask, bias = random_case(n, 2 * g * og, 2 * g, h, w, k, s, p, d, g, og, with_mask, with_bias)
    got = deform_conv2d(x, offset, weight, bias, s, p, d, mask)
    assert_close_scaled(got, naive_deform_conv(x, offset, weight, bias, s, p, d, mask), 1e-5)


# ----- identities against torch convolutions ---------------------------------------------------
@pytest.mark.parametrize("case", GRID)
def test_zero_offsets_unit_mask_is_conv2d(case):
    n, cin, cout, h, w, k, s, p, d, g, og = case
    x, weight, offset, _, bias = random_case(n, cin, cout, h, w, k, s, p, d, g, og)
    offset = torch.zeros_like(offset)
    expected = F.conv2d(x, weight, bias, s, p, d, g)
    assert_close_scaled(deform_conv2d(x, offset, weight, bias, s, p, d), expected, 1e-5)
    ones = torch.ones(n, og * k[0] * k[1], *offset.shape[2:])
    assert_close_scaled(deform_conv2d(x, offset, weight, bias, s, p, d, ones), expected, 1e-5)


def test_output_is_linear_in_the_mask():
    x, weight, offset, mask, bias = random_case(2, 4, 6, 9, 8, (3, 3), (1, 2), (1, 1), (1, 1), 2, 2)
    other = torch.rand_like(mask)
    base = lambda m: deform_conv2d(x, offset, weight, bias, (1, 2), 1, 1, m) - bias.reshape(-1, 1, 1)  # noqa: E731
    assert_close_scaled(base(2.5 * mask), 2.5 * base(mask), 1e-5)
    assert_close_scaled(base(mask + other), base(mask) + base(other), 1e-5)
    assert_close_scaled(base(torch.zeros_like(mask)), torch.zeros_like(base(mask)), 1e-6)


@pytest.mark.parametrize("dy, dx", [(1, 0), (0, -2), (2, 1), (-1, -3)])
def test_integer_offset_is_a_shifted_conv(dy, dx):
    """Every tap moved by (dy, dx) whole pixels == conv2d of the input shifted by (dy, dx), zero filled."""
    x, weight, offset, _, bias = random_case(2, 4, 6, 10, 9, (3, 2), (2, 1), (1, 1), (1, 2), 2, 1)
    offset = torch.stack([torch.full_like(offset[:, 0::2], float(dy)), torch.full_like(offset[:, 1::2], float(dx))],
                         2).flatten(1, 2)
    big = 5
    padded = F.pad(x, (big, big, big, big))
    # Deform reads x[i*sh - ph + u*dh + dy, ...] = padded[i*sh + (big - ph + dy) + u*dh, ...]: a valid conv.
    shifted = padded[..., big - 1 + dy:, big - 1 + dx:]
    expected = F.conv2d(shifted, weight, bias, (2, 1), 0, (1, 2), 2)[..., :offset.shape[2], :offset.shape[3]]
    assert_close_scaled(deform_conv2d(x, offset, weight, bias, (2, 1), (1, 1), (1, 2)), expected, 1e-5)


def test_offset_groups_move_their_own_channels_only():
    """Offsets of offset group 1 must not change the output of channels in offset group 0."""
    x, weight, offset, _, _ = random_case(1, 4, 4, 8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 4, 2)
    moved = offset.clone()
    moved[:, 18:] += 1.7
    a = deform_conv2d(x, offset, weight, None, 1, 1, 1)
    b = deform_conv2d(x, moved, weight, None, 1, 1, 1)
    assert_close_scaled(a[:, :2], b[:, :2], 1e-6)
    assert (a[:, 2:] - b[:, 2:]).abs().max() > 1e-3


def test_gradcheck():
    x, weight, offset, mask, bias = (t.double().requires_grad_() for t in
                                     random_case(1, 2, 2, 5, 4, (2, 2), (1, 1), (1, 0), (1, 1), 1, 2, scale=0.7))
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d(a[0], a[1], a[2], a[3], 1, (1, 0), 1, a[4]),
                                    (x, offset, weight, bias, mask))


def test_half_input_keeps_dtype():
    x, weight, offset, mask, bias = random_case(1, 4, 4, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1)
    got = deform_conv2d(x.half(), offset.half(), weight.half(), bias.half(), 1, 1, 1, mask.half())
    assert got.dtype == torch.float16
    ref = deform_conv2d(x.half().float(), offset.half().float(), weight.half().float(), bias.half().float(), 1, 1, 1,
                        mask.half().float())
    assert_close_scaled(got.float(), ref, 2e-3)


# ----- modules ----------------------------------------------------------------------------------
def test_modules_start_as_convolutions():
    x = torch.randn(2, 4, 9, 7)
    v1 = DeformConv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, offset_groups=2)
    v2 = ModulatedDeformConv2d(4, 6, 3, stride=2, padding=1, groups=2, offset_groups=4)
    assert v1.conv_offset.out_channels == 2 * 2 * 6 and v2.conv_offset.out_channels == 3 * 4 * 9
    with torch.no_grad():
        assert_close_scaled(v1(x), F.conv2d(x, v1.weight, v1.bias, (2, 1), (1, 0), (1, 2), 2), 1e-5)
        # zero logits -> mask 0.5 everywhere
        half = F.conv2d(x, v2.weight, None, 2, 1, 1, 2) * 0.5 + v2.bias.reshape(-1, 1, 1)
        assert_close_scaled(v2(x), half, 1e-5)


def test_modulated_module_splits_offsets_and_mask_logits():
    m = ModulatedDeformConv2d(4, 4, 3, padding=1, offset_groups=2, bias=False)
    torch.nn.init.normal_(m.conv_offset.weight, std=0.2)
    x = torch.randn(1, 4, 6, 7)
    pred = m.conv_offset(x)
    expected = deform_conv2d(x, pred[:, :36], m.weight, None, 1, 1, 1, torch.sigmoid(pred[:, 36:]))
    with torch.no_grad():
        assert_close_scaled(m(x), expected, 1e-6)


def test_module_gradients_reach_the_offset_predictor():
    m = ModulatedDeformConv2d(4, 4, 3, padding=1)
    torch.nn.init.normal_(m.conv_offset.weight, std=0.1)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    m(x).square().sum().backward()
    assert x.grad.abs().sum() > 0 and m.conv_offset.weight.grad.abs().sum() > 0 and m.weight.grad.abs().sum() > 0


# ----- bad input ----------------------------------------------------------------------------------
def _good():
    return random_case(1, 4, 6, 8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 2, 2)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(offset=a["offset"][:, :30]), "cannot infer offset_groups"),
    (lambda a: a.update(offset=a["offset"][..., :7]), "offset shape"),
    (lambda a: a.update(mask=a["mask"][:, :9]), "mask shape"),
    (lambda a: a.update(bias=torch.randn(5)), "bias shape"),
    (lambda a: a.update(weight=torch.randn(6, 3, 3, 3)), "cannot infer groups"),
    (lambda a: a.update(weight=torch.randn(5, 2, 3, 3)), "not divisible by groups"),
    (lambda a: a.update(stride=0), "below the minimum"),
    (lambda a: a.update(padding=(1, 1, 1)), r"\(top, left, bottom, right\)"),
    (lambda a: a.update(padding=(1, 0, -1, 1)), "non-negative"),
    (lambda a: a.update(groups=4), "groups=4 disagrees"),
    (lambda a: a.update(input=torch.randn(4, 8, 8)), "input must be 4-D"),
])
def test_bad_input_raises(change, message):
    x, weight, offset, mask, bias = _good()
    args = dict(input=x, offset=offset, weight=weight, bias=bias, stride=1, padding=1, dilation=1, mask=mask)
    change(args)
    with pytest.raises(DynconvError, match=message):
        deform_conv2d(**args)


def test_offset_groups_must_divide_channels():
    x, weight, _, _, _ = _good()
    offset = torch.randn(1, 2 * 3 * 9, 8, 8)
    with pytest.raises(DynconvError, match="not divisible by offset_groups=3"):
        deform_conv2d(x, offset, weight, None, 1, 1, 1)


def test_bad_module_arguments_raise():
    with pytest.raises(DynconvError, match="divisible by groups"):
        DeformConv2d(4, 6, 3, groups=4)
    with pytest.raises(DynconvError, match="offset_groups"):
        ModulatedDeformConv2d(4, 6, 3, offset_groups=3)


# ----- asymmetric padding (top, left, bottom, right) -----------------------------------------------------
ASYMMETRIC = [(0, 1, 2, 0), (2, 0, 1, 3), (1, 2, 1, 2)]


@pytest.mark.parametrize("pads", ASYMMETRIC)
def test_asymmetric_padding_matches_naive_loops(pads):
    top, left, bottom, right = pads
    x, weight = torch.randn(2, 4, 7, 6), torch.randn(6, 2, 3, 3)
    ho, wo = (7 + top + bottom - 3) // 2 + 1, (6 + left + right - 3) + 1
    offset, mask = torch.randn(2, 18, ho, wo) * 2, torch.rand(2, 9, ho, wo)
    got = deform_conv2d(x, offset, weight, None, (2, 1), pads, 1, mask)
    assert got.shape == (2, 6, ho, wo)
    assert_close_scaled(got, naive_deform_conv(x, offset, weight, None, (2, 1), (top, left), (1, 1), mask), 1e-5)


def test_asymmetric_padding_module_starts_as_the_padded_convolution():
    layer = ModulatedDeformConv2d(4, 6, 3, padding=(0, 1, 2, 1)).eval()
    x = torch.randn(1, 4, 8, 9)
    with torch.no_grad():
        expected = 0.5 * F.conv2d(F.pad(x, (1, 1, 0, 2)), layer.weight) + layer.bias.reshape(-1, 1, 1)
        assert_close_scaled(layer(x), expected, 1e-5)


@pytest.mark.parametrize("target", ["trt", "onnx"])
def test_asymmetric_padding_exports_a_pad_and_a_symmetric_op(target):
    m = torch.nn.Sequential(ModulatedDeformConv2d(4, 4, 3, padding=(1, 0, 2, 1))).eval()
    torch.nn.init.normal_(m[0].conv_offset.weight, std=0.3)
    x = torch.randn(1, 4, 9, 8)
    model = export_model(m, (x,), ExportOptions(target=target, exporter="torchscript"))
    if target == "trt":
        nodes = custom_nodes(model)
        assert len(nodes) == 1 and any(n.op_type == "Pad" for n in model.graph.node)
        assert_trt_node(nodes[0], DEFORM_CONV2D, dict(stride=[1, 1], padding=[1, 0], dilation=[1, 1], groups=1,
                                                      offset_groups=1), dict(mask=True, bias=True))
    else:
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(model, [x.numpy()])[0], m(x))


# ----- ONNX -------------------------------------------------------------------------------------
EXPORTERS = ["dynamo", "torchscript"]


class OpLayer(torch.nn.Module):
    """The bare op with fixed weights; offset (and mask) are graph inputs."""

    def __init__(self, weight, bias, s, p, d):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)
        self.bias = None if bias is None else torch.nn.Parameter(bias)
        self.s, self.p, self.d = s, p, d

    def forward(self, x, offset, mask=None):
        return deform_conv2d(x, offset, self.weight, self.bias, self.s, self.p, self.d, mask)


def _network():
    m = torch.nn.Sequential(ModulatedDeformConv2d(4, 8, 3, stride=(2, 1), padding=1, offset_groups=2),
                            torch.nn.ReLU(), DeformConv2d(8, 8, (3, 2), padding=(1, 0), dilation=(2, 1), groups=2,
                                                          bias=False)).eval()
    for conv in (m[0].conv_offset, m[2].conv_offset):
        torch.nn.init.normal_(conv.weight, std=0.3)
    return m


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case, with_mask, with_bias", [(GRID[2], True, True), (GRID[3], False, True),
                                                        (GRID[4], True, False)])
def test_onnx_reference_matches_eager(exporter, case, with_mask, with_bias):
    n, cin, cout, h, w, k, s, p, d, g, og = case
    x, weight, offset, mask, bias = random_case(n, cin, cout, h, w, k, s, p, d, g, og, with_mask, with_bias)
    layer = OpLayer(weight, bias, s, p, d).eval()
    inputs = (x, offset) if mask is None else (x, offset, mask)
    model = export_model(layer, inputs, ExportOptions(target="onnx", exporter=exporter))
    assert not custom_nodes(model)
    assert any(node.op_type == "Gather" for node in model.graph.node)
    assert not any(node.op_type == "GridSample" for node in model.graph.node)
    with torch.no_grad():
        expected = layer(*inputs)
    assert_close_scaled(run_onnxruntime(model, [t.numpy() for t in inputs])[0], expected)


@pytest.mark.parametrize("offsets", ["half-integer", "random"])
def test_onnx_reference_keeps_fp32_accuracy_on_a_1344_map(offsets):
    """Sampling coordinates near 1344 px lose no precision (max error <= 1e-5 x scale vs float64)."""
    size, stride = 1344, 32  # a large stride keeps the output (and the test) small, the coordinates large
    ho = out_size(size, 3, stride, 1, 1)
    x, weight = torch.randn(1, 2, size, size), torch.randn(3, 2, 3, 3)
    if offsets == "half-integer":
        offset = torch.randint(-8, 8, (1, 18, ho, ho)) + 0.5
    else:
        offset = torch.randn(1, 18, ho, ho) * 4
    mask = torch.rand(1, 9, ho, ho)
    layer = OpLayer(weight, None, (stride, stride), (1, 1), (1, 1)).eval()
    model = export_model(layer, (x, offset, mask), ExportOptions(target="onnx", exporter="torchscript"))
    got = run_onnxruntime(model, [x.numpy(), offset.numpy(), mask.numpy()])[0]
    expected = deform_conv2d(x.double(), offset.double(), weight.double(), None, stride, 1, 1, mask.double())
    assert_close_scaled(got, expected, 1e-5)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dynamic_shapes_run_at_two_sizes(exporter):
    m = _network()
    model = export_model(m, (torch.randn(2, 4, 12, 10),),
                         ExportOptions(target="onnx", exporter=exporter, dynamic=("batch", "height", "width")))
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    for shape in [(1, 4, 9, 13), (3, 4, 16, 8)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(model, [x.numpy()])[0], m(x))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_trt_target_has_one_node_per_call(exporter):
    m, x = _network(), torch.randn(1, 4, 12, 10)
    model = export_model(m, (x,), ExportOptions(target="trt", exporter=exporter))
    nodes = custom_nodes(model)
    assert len(nodes) == 2
    assert_trt_node(nodes[0], DEFORM_CONV2D, dict(stride=[2, 1], padding=[1, 1], dilation=[1, 1], groups=1,
                                                  offset_groups=2), dict(mask=True, bias=True))
    assert_trt_node(nodes[1], DEFORM_CONV2D, dict(stride=[1, 1], padding=[1, 0], dilation=[2, 1], groups=2,
                                                  offset_groups=1), dict(mask=False, bias=False))
    out = model.graph.output[0].type.tensor_type.shape.dim
    with torch.no_grad():
        assert [d.dim_value for d in out] == list(m(x).shape)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_trt_target_dynamic_output_shape(exporter):
    model = export_model(_network(), (torch.randn(2, 4, 12, 10),),
                         ExportOptions(target="trt", exporter=exporter, dynamic=("batch", "height", "width")))
    assert len(custom_nodes(model)) == 2
    out = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out[0] == "batch" and out[1] == 8 and all(isinstance(v, str) and v for v in out[2:])


# ----- standard ONNX DeformConv (opset 19) ---------------------------------------------------------
def _standard_model(nodes, feeds):
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"{name}_{i}" for i in range(v.dim())])
              for name, v in feeds.items()]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])
    model = helper.make_model(helper.make_graph(nodes, "deform", inputs, [output]),
                              opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("with_mask, with_bias", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("case", [GRID[2], GRID[3], GRID[4]])
@pytest.mark.parametrize("kernel_shape", [False, True])
def test_standard_deform_conv_matches_eager(case, with_mask, with_bias, kernel_shape):
    n, cin, cout, h, w, k, s, p, d, g, og = case
    x, weight, offset, mask, bias = random_case(n, cin, cout, h, w, k, s, p, d, g, og, with_mask, with_bias)
    feeds = {"x": x, "w": weight, "off": offset}
    if with_mask:
        feeds["m"] = mask
    if with_bias:
        feeds["b"] = bias
    node = helper.make_node(DEFORM_CONV2D.name, list(feeds), ["y"], domain="dynconv", plugin_version="1",
                            **DEFORM_CONV2D.node_attributes(
                                dict(stride=s, padding=p, dilation=d, groups=g, offset_groups=og),
                                dict(mask=with_mask, bias=with_bias)))
    nodes = to_standard_deform_conv(node, k if kernel_shape else None)
    assert [n.op_type for n in nodes] == ["DeformConv"] and nodes[0].domain == ""
    if with_mask and not with_bias:
        assert list(nodes[0].input) == ["x", "w", "off", "", "m"]
    got = run_onnxruntime(_standard_model(nodes, feeds), [t.numpy() for t in feeds.values()])[0]
    assert_close_scaled(got, deform_conv2d(x, offset, weight, bias, s, p, d, mask))


def test_standard_conversion_rejects_other_nodes_and_bad_flags():
    with pytest.raises(DynconvError, match="expects a DynconvDeformConv2d"):
        to_standard_deform_conv(helper.make_node("Conv", ["x", "w"], ["y"]))
    node = helper.make_node(DEFORM_CONV2D.name, ["x", "w", "off", "m"], ["y"], domain="dynconv",
                            with_mask=0, with_bias=0)
    with pytest.raises(DynconvError, match="do not match"):
        to_standard_deform_conv(node)


def test_against_torchvision():
    tv = pytest.importorskip("torchvision")
    for case in GRID:
        n, cin, cout, h, w, k, s, p, d, g, og = case
        for with_mask in (True, False):
            x, weight, offset, mask, bias = random_case(n, cin, cout, h, w, k, s, p, d, g, og, with_mask)
            expected = tv.ops.deform_conv2d(x, offset, weight, bias, s, p, d, mask)
            assert_close_scaled(deform_conv2d(x, offset, weight, bias, s, p, d, mask), expected, 1e-5)


def test_gradients_against_torchvision():
    tv = pytest.importorskip("torchvision")
    x, weight, offset, mask, bias = (t.double().requires_grad_() for t in
                                     random_case(2, 4, 6, 7, 8, (3, 2), (2, 1), (1, 0), (1, 2), 2, 2))
    ours = torch.autograd.grad(deform_conv2d(x, offset, weight, bias, (2, 1), (1, 0), (1, 2), mask).square().sum(),
                               (x, offset, weight, bias, mask))
    theirs = torch.autograd.grad(tv.ops.deform_conv2d(x, offset, weight, bias, (2, 1), (1, 0), (1, 2), mask)
                                 .square().sum(), (x, offset, weight, bias, mask))
    for a, b in zip(ours, theirs):
        assert_close_scaled(a, b, 1e-6)
