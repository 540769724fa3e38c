"""Involution: independent math checks, attribute grid, ONNX parity with both exporters."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dynconv.export import ExportOptions, export_model
from dynconv.plugins.errors import DynconvError
from dynconv.plugins.involution import INVOLUTION, Involution, involution
from parity import assert_close_scaled, assert_trt_node, custom_nodes, run_onnxruntime


def naive_involution(x, w, k, s, p, d, groups):
    """Unfold-based transcription of the paper's formula (independent of the shift-and-slice reference)."""
    n, c, h, wd = x.shape
    cols = F.unfold(x, k, dilation=d, padding=p, stride=s)  # [N, C*kh*kw, L]
    ho = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (wd + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    cols = cols.view(n, groups, c // groups, k[0] * k[1], ho, wo)
    kernels = w.view(n, groups, 1, k[0] * k[1], ho, wo)
    return (cols * kernels).sum(3).view(n, c, ho, wo)


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def random_case(n, c, h, w, k, s, p, d, groups, dtype=torch.float32):
    x = torch.randn(n, c, h, w, dtype=dtype)
    ho, wo = out_size(h, k[0], s[0], p[0], d[0]), out_size(w, k[1], s[1], p[1], d[1])
    weight = torch.randn(n, groups * k[0] * k[1], ho, wo, dtype=dtype)
    return x, weight


GRID = [
    # n, c, h, w, kernel, stride, padding, dilation, groups
    (1, 4, 9, 9, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (2, 8, 10, 7, (3, 3), (2, 2), (1, 1), (1, 1), 2),
    (2, 8, 11, 13, (7, 7), (1, 1), (3, 3), (1, 1), 4),
    (1, 6, 13, 9, (3, 3), (2, 2), (2, 2), (2, 2), 3),
    (3, 4, 12, 15, (3, 5), (1, 2), (1, 2), (2, 1), 2),
    (1, 4, 8, 11, (5, 3), (2, 1), (0, 1), (1, 2), 1),
]


@pytest.mark.parametrize("case", GRID)
def test_matches_naive_unfold(case):
    n, c, h, w, k, s, p, d, g = case
    x, weight = random_case(n, c, h, w, k, s, p, d, g)
    got = involution(x, weight, k, s, p, d, g)
    assert_close_scaled(got, naive_involution(x, weight, k, s, p, d, g), 1e-5)


def test_one_kernel_for_all_pixels_is_depthwise_conv():
    n, c, g, k = 2, 8, 2, 3
    x = torch.randn(n, c, 10, 12)
    kernel = torch.randn(g, k, k)
    weight = kernel.reshape(1, g * k * k, 1, 1).expand(n, -1, 10, 12).contiguous()
    dw = kernel.repeat_interleave(c // g, 0).unsqueeze(1)  # [C, 1, k, k]
    assert_close_scaled(involution(x, weight, k, 1, 1, 1, g), F.conv2d(x, dw, padding=1, groups=c), 1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 2), st.sampled_from([1, 2, 4]), st.integers(5, 12), st.integers(5, 12),
       st.sampled_from([1, 3, 5]), st.sampled_from([1, 3]), st.integers(1, 2), st.integers(1, 2),
       st.integers(1, 2), st.integers(0, 2))
def test_property_random_attributes(n, groups, h, w, kh, kw, sh, sw, dh, ph):
    k, s, d, p = (kh, kw), (sh, sw), (dh, 1), (ph, kw // 2)
    if out_size(h, kh, sh, ph, dh) < 1 or out_size(w, kw, sw, p[1], 1) < 1:
        return
    x, weight = random_case(n, 2 * groups, h, w, k, s, p, d, groups)
    assert_close_scaled(involution(x, weight, k, s, p, d, groups), naive_involution(x, weight, k, s, p, d, groups), 1e-5)


def test_module_odd_size_with_stride_two():
    m = Involution(32, 7, 2).eval()
    x = torch.randn(1, 32, 15, 9)
    assert m(x).shape == (1, 32, 8, 5)


def test_module_gradients_flow():
    m = Involution(16, 3, 1)
    x = torch.randn(2, 16, 6, 7, requires_grad=True)
    m(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert m.span.weight.grad is not None and m.span.weight.grad.abs().sum() > 0


def test_gradcheck_against_reference():
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(1, 2 * 9, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: involution(a, b, 3, 1, 1, 1, 2), (x, w))


@pytest.mark.parametrize("bad, message", [
    (dict(groups=3), "not divisible by groups"),
    (dict(kernel_size=[3, 3, 3]), "needs 2 values"),
    (dict(stride=0), "below the minimum"),
])
def test_bad_attributes_raise(bad, message):
    x, w = random_case(1, 4, 8, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    args = dict(kernel_size=3, stride=1, padding=1, dilation=1, groups=1) | bad
    with pytest.raises(DynconvError, match=message):
        involution(x, w, **args)


def test_wrong_weight_shape_raises():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(DynconvError, match="does not match the expected"):
        involution(x, torch.randn(1, 9, 7, 8), 3, 1, 1, 1, 1)


EXPORTERS = ["dynamo", "torchscript"]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", [GRID[1], GRID[4]])
def test_onnx_reference_matches_eager(exporter, case):
    n, c, h, w, k, s, p, d, g = case

    class Wrapper(torch.nn.Module):
        def forward(self, x, weight):
            return involution(x, weight, k, s, p, d, g)

    x, weight = random_case(n, c, h, w, k, s, p, d, g)
    model = export_model(Wrapper(), (x, weight), ExportOptions(target="onnx", exporter=exporter))
    assert not custom_nodes(model)
    assert_close_scaled(run_onnxruntime(model, [x.numpy(), weight.numpy()])[0], involution(x, weight, k, s, p, d, g))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dynamic_shapes_run_at_two_sizes(exporter):
    m = torch.nn.Sequential(Involution(16, 7, 2), torch.nn.ReLU(), Involution(16, 3, 1)).eval()
    model = export_model(m, (torch.randn(2, 16, 16, 12),),
                         ExportOptions(target="onnx", exporter=exporter, dynamic=("batch", "height", "width")))
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    for shape in [(1, 16, 20, 10), (3, 16, 14, 18)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(model, [x.numpy()])[0], m(x))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_trt_target_has_one_node_per_call(exporter):
    m = torch.nn.Sequential(Involution(16, 7, 2), Involution(16, 3, 1)).eval()
    model = export_model(m, (torch.randn(1, 16, 16, 16),), ExportOptions(target="trt", exporter=exporter))
    nodes = custom_nodes(model)
    assert len(nodes) == 2
    assert_trt_node(nodes[0], INVOLUTION, dict(kernel_size=[7, 7], stride=[2, 2], padding=[3, 3], dilation=[1, 1], groups=1))
    assert_trt_node(nodes[1], INVOLUTION, dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1))
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out] == [1, 16, 8, 8]
