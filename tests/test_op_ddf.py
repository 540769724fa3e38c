"""DDF: independent math checks, attribute grid, FilterNorm, modules, ONNX parity with both exporters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dynconv.export import ExportOptions, export_model
from dynconv.plugins.ddf import DDF, DDFPack, FilterNorm, ddf
from dynconv.plugins.errors import DynconvError
from parity import assert_close_scaled, assert_trt_node, custom_nodes, run_onnxruntime


def ceil_div(a, b):
    return -(-a // b)


def naive_ddf(x, fc, fs, k, d, s, combine):
    """Loop over output pixels and taps, centred at (i*s, j*s), skipping taps outside the image."""
    n, c, h, w = x.shape
    r = (k - 1) // 2
    ho, wo = ceil_div(h, s), ceil_div(w, s)
    out = torch.zeros(n, c, ho, wo, dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            for u in range(k):
                for v in range(k):
                    y, xx = i * s + (u - r) * d, j * s + (v - r) * d
                    if not (0 <= y < h and 0 <= xx < w):
                        continue
                    spatial = fs[:, u * k + v, i, j].reshape(n, 1)
                    filt = fc[:, :, u, v] * spatial if combine == "mul" else fc[:, :, u, v] + spatial
                    out[:, :, i, j] += x[:, :, y, xx] * filt
    return out


def official_kernel_loop(x, fc, fs, k, d, s, combine):
    """Scalar transcription of the official CUDA kernel's indexing: output floor(H/s) x floor(W/s)."""
    x, fc, fs = (t.double().numpy() for t in (x, fc, fs))
    n, c, h, w = x.shape
    r = (k - 1) // 2
    ho, wo = h // s, w // s
    out = np.zeros((n, c, ho, wo))
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0
                    for u in range(k):
                        for v in range(k):
                            y, xx = i * s + (u - r) * d, j * s + (v - r) * d
                            if 0 <= y < h and 0 <= xx < w:
                                f_s, f_c = fs[b, u * k + v, i, j], fc[b, ch, u, v]
                                acc += x[b, ch, y, xx] * (f_s * f_c if combine == "mul" else f_s + f_c)
                    out[b, ch, i, j] = acc
    return torch.from_numpy(out)


def random_case(n, c, h, w, k, s, dtype=torch.float32):
    ho, wo = ceil_div(h, s), ceil_div(w, s)
    return (torch.randn(n, c, h, w, dtype=dtype), torch.randn(n, c, k, k, dtype=dtype),
            torch.randn(n, k * k, ho, wo, dtype=dtype))


GRID = [
    # n, c, h, w, k, dilation, stride, combine
    (1, 3, 9, 9, 3, 1, 1, "mul"),
    (2, 4, 10, 7, 3, 1, 2, "mul"),
    (2, 4, 11, 13, 3, 2, 2, "add"),
    (1, 5, 13, 8, 5, 1, 1, "add"),
    (3, 2, 12, 15, 5, 2, 3, "mul"),
    (2, 3, 7, 12, 7, 1, 2, "add"),
    (1, 2, 6, 9, 1, 1, 2, "mul"),
]


@pytest.mark.parametrize("case", GRID)
def test_matches_naive_loop(case):
    n, c, h, w, k, d, s, combine = case
    x, fc, fs = random_case(n, c, h, w, k, s)
    got = ddf(x, fc, fs, k, d, s, combine)
    assert got.shape == (n, c, ceil_div(h, s), ceil_div(w, s))
    assert_close_scaled(got, naive_ddf(x, fc, fs, k, d, s, combine), 1e-5)


@pytest.mark.parametrize("combine", ["mul", "add"])
@pytest.mark.parametrize("h, w, k, d, s", [(8, 6, 3, 1, 2), (9, 6, 3, 2, 3), (6, 8, 5, 1, 1), (8, 4, 3, 2, 2)])
def test_matches_official_kernel_indexing_when_divisible(combine, h, w, k, d, s):
    assert h % s == 0 and w % s == 0
    x, fc, fs = random_case(2, 3, h, w, k, s, torch.float64)
    got = ddf(x, fc, fs, k, d, s, combine)
    want = official_kernel_loop(x, fc, fs, k, d, s, combine)
    assert got.shape == want.shape == (2, 3, h // s, w // s)
    assert_close_scaled(got, want, 1e-12)


@pytest.mark.parametrize("h, w", [(9, 7), (11, 10), (5, 13)])
def test_odd_sizes_with_stride_two_use_ceil_rule(h, w):
    x, fc, fs = random_case(2, 3, h, w, 3, 2)
    got = ddf(x, fc, fs, 3, 1, 2, "mul")
    assert got.shape == (2, 3, ceil_div(h, 2), ceil_div(w, 2))
    # every output pixel the official kernel would produce (floor rule) has the same value
    want = official_kernel_loop(x, fc, fs[:, :, :h // 2, :w // 2].contiguous(), 3, 1, 2, "mul")
    assert_close_scaled(got[:, :, :h // 2, :w // 2], want, 1e-5)
    # the extra last row/column is centred at ((Ho-1)*2, ...), still inside the image
    assert_close_scaled(got, naive_ddf(x, fc, fs, 3, 1, 2, "mul"), 1e-5)


@pytest.mark.parametrize("s, d", [(1, 1), (2, 1), (2, 2), (3, 1)])
def test_uniform_spatial_filter_is_per_sample_depthwise_conv(s, d):
    n, c, h, w, k = 3, 4, 11, 8, 3
    x, fc, _ = random_case(n, c, h, w, k, s)
    fs = torch.ones(n, k * k, ceil_div(h, s), ceil_div(w, s))
    got = ddf(x, fc, fs, k, d, s, "mul")
    want = torch.cat([F.conv2d(x[b:b + 1], fc[b].unsqueeze(1), stride=s, padding=d * (k - 1) // 2, dilation=d,
                               groups=c) for b in range(n)])
    assert_close_scaled(got, want, 1e-5)


@pytest.mark.parametrize("s, d, k", [(1, 1, 3), (2, 1, 3), (2, 2, 5), (1, 2, 3)])
def test_uniform_channel_filter_is_spatially_varying_aggregation(s, d, k):
    n, c, h, w = 2, 3, 10, 9
    x, _, fs = random_case(n, c, h, w, k, s)
    fc = torch.ones(n, c, k, k)
    got = ddf(x, fc, fs, k, d, s, "mul")
    ho, wo = ceil_div(h, s), ceil_div(w, s)
    cols = F.unfold(x, k, dilation=d, padding=d * (k - 1) // 2, stride=s).view(n, c, k * k, ho * wo)
    want = (cols * fs.view(n, 1, k * k, ho * wo)).sum(2).view(n, c, ho, wo)
    assert_close_scaled(got, want, 1e-5)


def test_add_mode_skips_outside_taps():
    # all-ones input and filters: every valid tap contributes 2, so the output counts valid taps
    x = torch.ones(1, 1, 5, 6)
    got = ddf(x, torch.ones(1, 1, 3, 3), torch.ones(1, 9, 5, 6), 3, 1, 1, "add")
    valid = F.conv2d(x, torch.ones(1, 1, 3, 3), padding=1)
    assert torch.equal(got, 2 * valid)
    assert got[0, 0, 0, 0] == 8 and got[0, 0, 2, 2] == 18


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 2), st.integers(1, 4), st.integers(3, 11), st.integers(3, 11), st.sampled_from([1, 3, 5]),
       st.integers(1, 2), st.integers(1, 3), st.sampled_from(["mul", "add"]))
def test_property_random_attributes(n, c, h, w, k, d, s, combine):
    x, fc, fs = random_case(n, c, h, w, k, s)
    assert_close_scaled(ddf(x, fc, fs, k, d, s, combine), naive_ddf(x, fc, fs, k, d, s, combine), 1e-5)


def test_gradcheck():
    x, fc, fs = random_case(1, 2, 5, 6, 3, 2, torch.float64)
    for t in (x, fc, fs):
        t.requires_grad_(True)
    for combine in ("mul", "add"):
        assert torch.autograd.gradcheck(lambda a, b, e: ddf(a, b, e, 3, 1, 2, combine), (x, fc, fs))


# ----- FilterNorm and DDFPack -------------------------------------------------------------------

def test_filter_norm_spatial_by_hand():
    k, heads = 3, 2
    f = torch.randn(2, heads * k * k, 4, 5)
    got = FilterNorm(heads, k, "spatial", "relu")(f)
    want = torch.empty_like(f)
    for b in range(2):
        for g in range(heads):
            for i in range(4):
                for j in range(5):
                    taps = f[b, g * k * k:(g + 1) * k * k, i, j]
                    want[b, g * k * k:(g + 1) * k * k, i, j] = \
                        (taps - taps.mean()) / (torch.std(taps) + 1e-10) * (math.sqrt(2) / k)
    assert_close_scaled(got, want, 1e-5)


def test_filter_norm_channel_by_hand():
    k, c = 3, 4
    norm = FilterNorm(c, k, "channel", "relu")
    assert norm.gamma.shape == (c * k * k,) and norm.gamma.requires_grad
    f = torch.randn(2, c * k * k, 1, 1)
    got = norm(f)
    want = torch.empty(2, c * k * k)
    for b in range(2):
        for ch in range(c):
            taps = f[b, ch * k * k:(ch + 1) * k * k, 0, 0]
            sl = slice(ch * k * k, (ch + 1) * k * k)
            want[b, sl] = (taps - taps.mean()) / (torch.std(taps, unbiased=True) + 1e-10) * norm.gamma[sl]
    assert_close_scaled(got.detach(), want.detach(), 1e-5)


def test_filter_norm_has_no_running_statistics():
    norm = FilterNorm(4, 3, "channel")
    f = torch.randn(2, 36, 1, 1)
    train = norm.train()(f)
    assert not list(norm.buffers())
    assert torch.equal(train, norm.eval()(f))


def test_ddfpack_matches_manual_composition():
    torch.manual_seed(1)
    m = DDFPack(10, kernel_size=3, stride=2, dilation=1, head=2, kernel_combine="add").eval()
    assert m.channel_branch[1].out_channels == 2  # int(0.2 * C)
    x = torch.randn(2, 10, 9, 8)
    with torch.no_grad():
        got = m(x)
        fs = m.spatial_branch(x)  # [2, head*9, 5, 4]
        fc = m.channel_branch(x).view(2, 10, 3, 3)
    assert got.shape == (2, 10, 5, 4)
    for g in range(2):  # each block of C/head channels uses its own spatial filter
        want = naive_ddf(x[:, 5 * g:5 * (g + 1)], fc[:, 5 * g:5 * (g + 1)], fs[:, 9 * g:9 * (g + 1)], 3, 1, 2, "add")
        assert_close_scaled(got[:, 5 * g:5 * (g + 1)], want, 1e-5)


def test_ddfpack_gradients_flow():
    m = DDFPack(16, stride=2)
    x = torch.randn(2, 16, 8, 7, requires_grad=True)
    m(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    fn = m.channel_branch[-1]
    assert fn.gamma.grad is not None and fn.gamma.grad.abs().sum() > 0
    assert m.spatial_branch[0].weight.grad.abs().sum() > 0


# ----- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (dict(kernel_size=4), "must be odd"),
    (dict(stride=0), "below the minimum"),
    (dict(dilation=1.5), "must be an integer"),
    (dict(combine="sum"), "not supported"),
])
def test_bad_attributes_raise(bad, message):
    x, fc, fs = random_case(1, 2, 8, 8, 3, 1)
    args = dict(kernel_size=3, dilation=1, stride=1, combine="mul") | bad
    with pytest.raises(DynconvError, match=message):
        ddf(x, fc, fs, **args)


def test_wrong_filter_shapes_raise():
    x, fc, fs = random_case(1, 2, 9, 9, 3, 2)
    with pytest.raises(DynconvError, match="spatial_filter shape .* ceil"):
        ddf(x, fc, fs[:, :, :4, :4], 3, 1, 2)  # the official floor(H/s) size is rejected
    with pytest.raises(DynconvError, match="channel_filter shape"):
        ddf(x, fc[:, :1], fs, 3, 1, 2)
    with pytest.raises(DynconvError, match="4-D"):
        ddf(x[0], fc, fs, 3, 1, 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kernel_size=4), "odd"),
    (dict(head=3), "divisible by head"),
    (dict(kernel_combine="max"), "kernel_combine"),
])
def test_bad_module_arguments_raise(kwargs, message):
    with pytest.raises(DynconvError, match=message):
        DDFPack(8, **kwargs)


# ----- ONNX ---------------------------------------------------------------------------------------

EXPORTERS = ["dynamo", "torchscript"]


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", [GRID[2], GRID[4]])
def test_onnx_reference_matches_eager(exporter, case):
    n, c, h, w, k, d, s, combine = case

    class Wrapper(torch.nn.Module):
        def forward(self, x, fc, fs):
            return ddf(x, fc, fs, k, d, s, combine)

    x, fc, fs = random_case(n, c, h, w, k, s)
    model = export_model(Wrapper(), (x, fc, fs), ExportOptions(target="onnx", exporter=exporter))
    assert not custom_nodes(model)
    got = run_onnxruntime(model, [x.numpy(), fc.numpy(), fs.numpy()])[0]
    assert_close_scaled(got, ddf(x, fc, fs, k, d, s, combine))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dynamic_shapes_run_at_two_sizes(exporter):
    m = torch.nn.Sequential(DDFPack(16, stride=2, head=2), torch.nn.ReLU(),
                            DDFPack(16, dilation=2, kernel_combine="add")).eval()
    model = export_model(m, (torch.randn(2, 16, 12, 10),),
                         ExportOptions(target="onnx", exporter=exporter, dynamic=("batch", "height", "width")))
    assert not custom_nodes(model)
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    for shape in [(1, 16, 15, 9), (3, 16, 8, 14)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(model, [x.numpy()])[0], m(x))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_trt_target_has_one_node_per_call(exporter):
    m = torch.nn.Sequential(DDFPack(16, stride=2), DDFPack(16, kernel_size=5, dilation=2, kernel_combine="add")).eval()
    model = export_model(m, (torch.randn(1, 16, 16, 16),), ExportOptions(target="trt", exporter=exporter))
    nodes = custom_nodes(model)
    assert len(nodes) == 2
    assert_trt_node(nodes[0], DDF, dict(kernel_size=3, dilation=1, stride=2, combine="mul"))
    assert_trt_node(nodes[1], DDF, dict(kernel_size=5, dilation=2, stride=1, combine="add"))
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out] == [1, 16, 8, 8]
