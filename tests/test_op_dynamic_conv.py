"""DynamicConv / CondConv: linear expansion vs batch-folded grouped conv and per-sample convs; ONNX parity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dynconv.export import ExportOptions, export_model
from dynconv.plugins.dynamic_conv import CondConv2d, DynamicConv2d, aggregate_experts, mixture_conv2d
from dynconv.plugins.errors import DynconvError
from parity import assert_close_scaled, custom_nodes, run_onnxruntime


def batch_folded(x, weight, bias, routing, s, p, d, g):
    """The PyTorch-port formulation: x -> [1, N*C, H, W], aggregated weights -> [N*O, C/g, kh, kw], groups=g*N."""
    n, c, h, w = x.shape
    agg = torch.einsum("nk,kocuv->nocuv", routing, weight)
    b = None if bias is None else (routing @ bias).reshape(-1)
    y = F.conv2d(x.reshape(1, n * c, h, w), agg.reshape(-1, *agg.shape[2:]), b, s, p, d, g * n)
    return y.reshape(n, -1, y.shape[-2], y.shape[-1])


def per_sample(x, weight, bias, routing, s, p, d, g):
    """One F.conv2d per sample with the explicitly summed kernel."""
    outs = []
    for b in range(x.shape[0]):
        kernel = sum(routing[b, e] * weight[e] for e in range(weight.shape[0]))
        bb = None if bias is None else sum(routing[b, e] * bias[e] for e in range(weight.shape[0]))
        outs.append(F.conv2d(x[b:b + 1], kernel, bb, s, p, d, g))
    return torch.cat(outs)


GRID = [
    # n, c, o, h, w, k, kernel, stride, padding, dilation, groups, bias
    (1, 4, 6, 9, 9, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    (3, 4, 6, 10, 7, 2, (3, 3), (2, 2), (1, 1), (1, 1), 2, True),
    (2, 6, 6, 11, 13, 3, (3, 5), (1, 2), (1, 2), (2, 1), 3, False),
    (2, 8, 8, 9, 12, 4, (3, 3), (2, 1), (2, 0), (2, 1), 8, True),
    (3, 3, 5, 8, 7, 1, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),
]


def random_case(n, c, o, h, w, k, kernel, g, bias):
    x = torch.randn(n, c, h, w)
    weight = torch.randn(k, o, c // g, *kernel)
    b = torch.randn(k, o) if bias else None
    routing = torch.rand(n, k)
    return x, weight, b, routing


@pytest.mark.parametrize("case", GRID)
def test_linear_expansion_matches_folded_and_per_sample(case):
    n, c, o, h, w, k, kernel, s, p, d, g, bias = case
    x, weight, b, routing = random_case(n, c, o, h, w, k, kernel, g, bias)
    got = mixture_conv2d(x, weight, b, routing, s, p, d, g)
    assert_close_scaled(got, batch_folded(x, weight, b, routing, s, p, d, g), 1e-5)
    assert_close_scaled(got, per_sample(x, weight, b, routing, s, p, d, g), 1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.sampled_from([1, 2]), st.integers(1, 3), st.integers(1, 4), st.integers(4, 9),
       st.integers(4, 9), st.sampled_from([1, 3]), st.sampled_from([1, 3]), st.integers(1, 2), st.integers(1, 2),
       st.integers(0, 1), st.booleans())
def test_property_random_attributes(n, g, per_group, k, h, w, kh, kw, sh, dw, ph, bias):
    c, o = 2 * g, per_group * g
    s, p, d = (sh, 1), (ph, kw // 2), (1, dw)
    if (h + 2 * ph - kh) // sh + 1 < 1 or (w + 2 * p[1] - dw * (kw - 1) - 1) + 1 < 1:
        return
    x, weight, b, routing = random_case(n, c, o, h, w, k, (kh, kw), g, bias)
    assert_close_scaled(mixture_conv2d(x, weight, b, routing, s, p, d, g),
                        per_sample(x, weight, b, routing, s, p, d, g), 1e-5)


def test_one_hot_routing_selects_one_expert():
    x, weight, b, _ = random_case(2, 4, 6, 8, 8, 3, (3, 3), 2, True)
    routing = F.one_hot(torch.tensor([2, 0]), 3).float()
    got = mixture_conv2d(x, weight, b, routing, 1, 1, 1, 2)
    for i, e in enumerate([2, 0]):
        assert_close_scaled(got[i:i + 1], F.conv2d(x[i:i + 1], weight[e], b[e], 1, 1, 1, 2), 1e-5)


def test_dynamic_conv_attention_and_aggregated_weight():
    layer = DynamicConv2d(8, 6, 3, stride=2, padding=1, groups=2, num_experts=4, temperature=30.0).eval()
    x = torch.randn(3, 8, 11, 10)
    with torch.no_grad():
        pi = torch.softmax(layer.fc2(torch.relu(layer.fc1(x.mean((2, 3))))) / 30.0, 1)
        assert_close_scaled(layer.attention(x), pi, 1e-6)
        assert torch.allclose(layer.attention(x).sum(1), torch.ones(3))
        w, b = layer.aggregated_weight(x)
        assert w.shape == (3, 6, 4, 3, 3) and b.shape == (3, 6)
        want = torch.cat([F.conv2d(x[i:i + 1], w[i], b[i], 2, 1, 1, 2) for i in range(3)])
        assert_close_scaled(layer(x), want, 1e-5)


def test_condconv_internal_and_external_routing():
    layer = CondConv2d(4, 6, (3, 1), padding=(1, 0), num_experts=3).eval()
    x = torch.randn(2, 4, 7, 9)
    with torch.no_grad():
        r = torch.sigmoid(layer.routing(x.mean((2, 3))))
        assert_close_scaled(layer(x), per_sample(x, layer.weight, layer.bias, r, 1, (1, 0), 1, 1), 1e-5)
        ext = torch.rand(2, 3)
        assert_close_scaled(layer(x, ext), per_sample(x, layer.weight, layer.bias, ext, 1, (1, 0), 1, 1), 1e-5)
        w, b = layer.aggregated_weight(x, ext)
        assert_close_scaled(w, torch.einsum("nk,k...->n...", ext, layer.weight), 1e-6)


def test_aggregate_experts_shapes():
    w, b = aggregate_experts(torch.randn(4, 6, 2, 3, 3), torch.randn(4, 6), torch.rand(5, 4))
    assert w.shape == (5, 6, 2, 3, 3) and b.shape == (5, 6)


def test_gradients_reach_experts_and_routing():
    layer = DynamicConv2d(8, 4, 3, padding=1, reduction=1.0)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    layer(x).square().sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("build, message", [
    (lambda: DynamicConv2d(4, 6, 3, groups=4), "divisible by groups"),
    (lambda: CondConv2d(4, 6, 3, num_experts=0), "num_experts"),
    (lambda: DynamicConv2d(4, 6, 3, temperature=0.0), "temperature"),
])
def test_bad_construction_raises(build, message):
    with pytest.raises(DynconvError, match=message):
        build()


def test_bad_tensors_raise():
    x, weight, b, routing = random_case(2, 4, 6, 8, 8, 3, (3, 3), 1, True)
    with pytest.raises(DynconvError, match="routing must be"):
        mixture_conv2d(x, weight, b, routing[:, :2])
    with pytest.raises(DynconvError, match="bias must be"):
        mixture_conv2d(x, weight, b[:, :5], routing)
    with pytest.raises(DynconvError, match="do not fit"):
        mixture_conv2d(x[:, :3], weight, b, routing)
    with pytest.raises(DynconvError, match="external_routing"):
        CondConv2d(4, 6, 3, external_routing=True)(x)


EXPORTERS = ["dynamo", "torchscript"]


def make_net(kind):
    if kind == "dynamic":
        return torch.nn.Sequential(DynamicConv2d(4, 8, 3, stride=2, padding=1, groups=2), torch.nn.ReLU(),
                                   DynamicConv2d(8, 6, (1, 3), padding=(0, 2), dilation=(1, 2))).eval()
    return torch.nn.Sequential(CondConv2d(4, 8, 3, stride=(1, 2), padding=1, num_experts=3), torch.nn.ReLU(),
                               CondConv2d(8, 8, 3, padding=1, groups=8, bias=False)).eval()


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("kind", ["dynamic", "cond"])
def test_onnx_dynamic_batch_matches_eager(exporter, kind):
    net = make_net(kind)
    model = export_model(net, (torch.randn(2, 4, 12, 10),),
                         ExportOptions(target="onnx", exporter=exporter, dynamic=("batch", "height", "width")))
    assert not custom_nodes(model)
    for shape in [(1, 4, 12, 10), (3, 4, 9, 14)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(model, [x.numpy()])[0], net(x))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_condconv_external_routing_exports(exporter):
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = CondConv2d(4, 6, 3, padding=1, num_experts=3, external_routing=True)

        def forward(self, x, routing):
            return self.conv(x, routing)

    net = Block().eval()
    model = export_model(net, (torch.randn(2, 4, 8, 8), torch.rand(2, 3)),
                         ExportOptions(target="onnx", exporter=exporter, dynamic=("batch",)))
    for n in (1, 3):
        x, r = torch.randn(n, 4, 8, 8), torch.rand(n, 3)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(model, [x.numpy(), r.numpy()])[0], net(x, r))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_trt_target_has_no_custom_nodes(exporter):
    model = export_model(make_net("dynamic"), (torch.randn(2, 4, 12, 10),),
                         ExportOptions(target="trt", exporter=exporter, dynamic=("batch",)))
    assert not custom_nodes(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2
