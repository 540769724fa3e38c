"""DRConv (paper form): naive transcription, identities, straight-through gradient, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dynconv.export import ExportOptions, export_model
from dynconv.plugins.drconv import DRCONV, DRConv2d, drconv, drconv_straight_through
from dynconv.plugins.drconv.pooling import adaptive_avg_pool2d
from dynconv.plugins.errors import DynconvError
from parity import assert_close_scaled, assert_trt_node, custom_nodes, run_onnxruntime


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def random_case(n, c, o, h, w, m, k, s, p, d, dtype=torch.float32):
    ho, wo = out_size(h, k[0], s[0], p[0], d[0]), out_size(w, k[1], s[1], p[1], d[1])
    x = torch.randn(n, c, h, w, dtype=dtype)
    guide = torch.randn(n, m, ho, wo, dtype=dtype)
    filters = torch.randn(n, m, o, c, k[0], k[1], dtype=dtype)
    return x, guide, filters


def naive_drconv(x, guide, filters, s, p, d):
    """Pixel-by-pixel transcription of out[n,:,i,j] = W[n, argmax_t G[n,t,i,j]] ⋆ x (first maximum wins)."""
    n, _, ho, wo = guide.shape
    kh, kw = filters.shape[-2:]
    xp = F.pad(x, (p[1], p[1], p[0], p[0]))
    out = torch.zeros(n, filters.shape[2], ho, wo, dtype=x.dtype)
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                scores = guide[b, :, i, j].tolist()
                t = scores.index(max(scores))
                top, left = i * s[0], j * s[1]
                patch = xp[b, :, top:top + d[0] * (kh - 1) + 1:d[0], left:left + d[1] * (kw - 1) + 1:d[1]]
                out[b, :, i, j] = (filters[b, t] * patch).sum(dim=(1, 2, 3))
    return out


GRID = [
    # n, c, o, h, w, m, kernel, stride, padding, dilation
    (1, 3, 4, 7, 7, 1, (3, 3), (1, 1), (1, 1), (1, 1)),
    (3, 2, 5, 9, 8, 4, (3, 3), (2, 2), (1, 1), (1, 1)),
    (1, 4, 3, 11, 9, 8, (3, 3), (1, 1), (2, 2), (2, 2)),
    (3, 3, 2, 10, 13, 4, (3, 5), (1, 2), (1, 2), (2, 1)),
    (1, 2, 3, 9, 12, 8, (5, 3), (2, 1), (0, 1), (1, 2)),
    (2, 3, 4, 8, 7, 4, (1, 1), (1, 1), (0, 0), (1, 1)),
]


@pytest.mark.parametrize("case", GRID)
def test_matches_naive_loop(case):
    n, c, o, h, w, m, k, s, p, d = case
    x, guide, filters = random_case(n, c, o, h, w, m, k, s, p, d)
    assert_close_scaled(drconv(x, guide, filters, s, p, d), naive_drconv(x, guide, filters, s, p, d), 1e-5)


def test_one_region_is_per_sample_conv():
    x, guide, filters = random_case(3, 4, 5, 10, 9, 1, (3, 3), (2, 1), (1, 1), (1, 2))
    want = torch.cat([F.conv2d(x[b:b + 1], filters[b, 0], stride=(2, 1), padding=1, dilation=(1, 2))
                      for b in range(3)])
    assert_close_scaled(drconv(x, guide, filters, (2, 1), 1, (1, 2)), want, 1e-5)


def test_constant_region_map_is_that_regions_conv():
    x, guide, filters = random_case(2, 3, 4, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1))
    guide = torch.zeros_like(guide)
    guide[:, 2] = 1.0
    want = torch.cat([F.conv2d(x[b:b + 1], filters[b, 2], padding=1) for b in range(2)])
    assert_close_scaled(drconv(x, guide, filters, 1, 1, 1), want, 1e-5)


def test_ties_pick_the_first_region():
    x, _, filters = random_case(2, 3, 4, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1))
    guide = torch.randint(0, 2, (2, 4, 8, 8)).float()  # many ties among regions
    guide[0, :, 0, 0] = 1.0  # a full tie: region 0
    got = drconv(x, guide, filters, 1, 1, 1)
    assert_close_scaled(got, naive_drconv(x, guide, filters, (1, 1), (1, 1), (1, 1)), 1e-5)
    assert_close_scaled(got[0, :, 0, 0], F.conv2d(x[:1], filters[0, 0], padding=1)[0, :, 0, 0], 1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2, 5]), st.integers(4, 10),
       st.integers(4, 10), st.sampled_from([1, 2, 3]), st.sampled_from([1, 3]), st.integers(1, 2), st.integers(1, 2),
       st.integers(1, 2), st.integers(0, 2))
def test_property_random_attributes(n, c, o, m, h, w, kh, kw, sh, sw, dw, ph):
    k, s, p, d = (kh, kw), (sh, sw), (ph, kw // 2), (1, dw)
    if out_size(h, kh, sh, ph, 1) < 1 or out_size(w, kw, sw, p[1], dw) < 1:
        return
    x, guide, filters = random_case(n, c, o, h, w, m, k, s, p, d)
    assert_close_scaled(drconv(x, guide, filters, s, p, d), naive_drconv(x, guide, filters, s, p, d), 1e-5)


def test_gradcheck_input_and_filters():
    x, guide, filters = random_case(1, 2, 2, 5, 6, 3, (3, 3), (1, 1), (1, 1), (1, 1), torch.float64)
    x.requires_grad_(True)
    filters.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, f: drconv(a, guide, f, 1, 1, 1), (x, filters))


def test_straight_through_forward_and_gradients():
    """Same forward as the op; guide gradient S_t (g_t - sum_u S_u g_u) with g_t = <dL/dY, Y^(t)>."""
    n, m = 2, 4
    x, guide, filters = random_case(n, 3, 5, 9, 8, m, (3, 3), (2, 1), (1, 1), (1, 1), torch.float64)
    upstream = torch.randn(n, 5, 5, 8, dtype=torch.float64)
    leaves = [t.clone().requires_grad_(True) for t in (x, guide, filters)]
    y_ste = drconv_straight_through(*leaves, (2, 1), 1, 1)
    (y_ste * upstream).sum().backward()
    op_leaves = [x.clone().requires_grad_(True), guide, filters.clone().requires_grad_(True)]
    y_op = drconv(*op_leaves, (2, 1), 1, 1)
    (y_op * upstream).sum().backward()
    assert torch.equal(y_ste, y_op)
    assert_close_scaled(leaves[0].grad, op_leaves[0].grad, 1e-12)
    assert_close_scaled(leaves[2].grad, op_leaves[2].grad, 1e-12)

    regions = torch.stack([torch.cat([F.conv2d(x[b:b + 1], filters[b, t], stride=(2, 1), padding=1)
                                      for b in range(n)]) for t in range(m)], dim=1)  # [N, m, O, Ho, Wo]
    g = (regions * upstream.unsqueeze(1)).sum(2)
    probs = torch.softmax(guide, 1)
    want = probs * (g - (probs * g).sum(1, keepdim=True))
    assert_close_scaled(leaves[1].grad, want, 1e-10)
    assert leaves[1].grad.abs().max() > 0


def test_module_train_and_eval_forward_identical():
    layer = DRConv2d(4, 6, (3, 5), region_num=4, stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    x = torch.randn(2, 4, 11, 12)
    y_train = layer.train()(x)
    with torch.no_grad():
        y_eval = layer.eval()(x)
    assert y_eval.shape == (2, 6, 6, 8)
    assert torch.equal(y_train.detach(), y_eval)


def test_module_training_gradients_reach_every_part():
    layer = DRConv2d(3, 4, 3, region_num=4, padding=1).train()
    x = torch.randn(2, 3, 8, 7, requires_grad=True)
    layer(x).square().sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_module_filter_generator_matches_paper_layout():
    """filters[n, t, o, c] = (Conv1x1_g(sigmoid(Conv1x1(AdaptiveAvgPool_k(x)))))[n, (t*O + o)*C + c]."""
    layer = DRConv2d(3, 2, (3, 2), region_num=4).requires_grad_(False)
    x = torch.randn(2, 3, 10, 9)
    pooled = F.adaptive_avg_pool2d(x, (3, 2))
    hidden = torch.sigmoid(F.conv2d(pooled, layer.filter_generator[1].weight, layer.filter_generator[1].bias))
    gen = layer.filter_generator[3]
    raw = F.conv2d(hidden, gen.weight, gen.bias, groups=4)
    filters = layer.region_filters(x)
    for t, o, c in [(0, 0, 0), (1, 1, 2), (3, 0, 1), (2, 1, 0)]:
        assert_close_scaled(filters[:, t, o, c], raw[:, (t * 2 + o) * 3 + c], 1e-5)


@pytest.mark.parametrize("out", [(3, 2), (1, 1), (1, 3), (2, 1)])
@pytest.mark.parametrize("size", [(10, 9), (3, 2), (2, 1), (7, 13)])
def test_exportable_adaptive_pool_matches_torch(size, out):
    x = torch.randn(2, 3, *size)
    assert_close_scaled(adaptive_avg_pool2d(x, out), F.adaptive_avg_pool2d(x, out), 1e-6)


@pytest.mark.parametrize("tensors, attrs, message", [
    ("guide", {}, "guide shape"),
    ("filters", {}, "filters shape"),
    ("filters_rank", {}, "must be 6-D"),
    ("none", dict(stride=0), "below the minimum"),
    ("none", dict(padding=[1, 1, 1]), "needs 2 values"),
    ("small", {}, "too small"),
])
def test_bad_inputs_raise(tensors, attrs, message):
    x, guide, filters = random_case(1, 3, 4, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1))
    if tensors == "guide":
        guide = guide[:, :, :-1]
    elif tensors == "filters":
        filters = filters[:, :, :, :2]
    elif tensors == "filters_rank":
        filters = filters.flatten(1, 2)
    elif tensors == "small":
        x = x[:, :, :1, :1]
        attrs = dict(padding=0)
    with pytest.raises(DynconvError, match=message):
        drconv(x, guide, filters, **({"padding": 1} | attrs))


def test_region_num_mismatch_with_guide_raises():
    x, guide, filters = random_case(1, 3, 4, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(DynconvError, match="guide shape"):
        drconv(x, guide[:, :3], filters, 1, 1, 1)


EXPORTERS = ["dynamo", "torchscript"]


class Wrapper(torch.nn.Module):
    def __init__(self, s, p, d):
        super().__init__()
        self.s, self.p, self.d = s, p, d

    def forward(self, x, guide, filters):
        return drconv(x, guide, filters, self.s, self.p, self.d)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("case", [GRID[1], GRID[3]])
def test_onnx_reference_matches_eager(exporter, case):
    n, c, o, h, w, m, k, s, p, d = case
    x, guide, filters = random_case(n, c, o, h, w, m, k, s, p, d)
    guide = torch.randint(0, 3, guide.shape).float()  # ties must resolve like torch.argmax
    model = export_model(Wrapper(s, p, d), (x, guide, filters), ExportOptions(target="onnx", exporter=exporter))
    assert not custom_nodes(model)
    got = run_onnxruntime(model, [x.numpy(), guide.numpy(), filters.numpy()])[0]
    assert_close_scaled(got, drconv(x, guide, filters, s, p, d))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dynamic_shapes_run_at_two_sizes(exporter):
    net = torch.nn.Sequential(DRConv2d(4, 6, 3, region_num=4, stride=2, padding=1), torch.nn.ReLU(),
                              DRConv2d(6, 5, (3, 1), region_num=8, padding=(2, 0), dilation=(2, 1))).eval()
    model = export_model(net, (torch.randn(2, 4, 16, 12),),
                         ExportOptions(target="onnx", exporter=exporter, dynamic=("batch", "height", "width")))
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    for shape in [(1, 4, 20, 10), (3, 4, 13, 18)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(model, [x.numpy()])[0], net(x))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_trt_target_has_one_node_per_call(exporter):
    net = torch.nn.Sequential(DRConv2d(4, 6, 3, region_num=4, stride=2, padding=1),
                              DRConv2d(6, 5, (3, 1), region_num=8, padding=(2, 0), dilation=(2, 1))).eval()
    model = export_model(net, (torch.randn(1, 4, 16, 12),), ExportOptions(target="trt", exporter=exporter))
    nodes = custom_nodes(model)
    assert len(nodes) == 2
    assert_trt_node(nodes[0], DRCONV, dict(kernel_size=[3, 3], stride=[2, 2], padding=[1, 1], dilation=[1, 1],
                                           region_num=4))
    assert_trt_node(nodes[1], DRCONV, dict(kernel_size=[3, 1], stride=[1, 1], padding=[2, 0], dilation=[2, 1],
                                           region_num=8))
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out] == [1, 5, 8, 6]
    assert not np.any([n.op_type in ("ArgMax", "Einsum") for n in model.graph.node])


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_trt_target_keeps_dynamic_dims(exporter):
    net = DRConv2d(4, 6, 3, region_num=4, stride=2, padding=1).eval()
    model = export_model(net, (torch.randn(2, 4, 16, 12),),
                         ExportOptions(target="trt", exporter=exporter, dynamic=("batch", "height", "width")))
    (node,) = custom_nodes(model)
    assert_trt_node(node, DRCONV, dict(kernel_size=[3, 3], stride=[2, 2], padding=[1, 1], dilation=[1, 1],
                                       region_num=4))
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert out[1].dim_value == 6 and not out[0].dim_value and not out[2].dim_value and not out[3].dim_value
