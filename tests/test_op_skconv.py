"""SKConv: a from-the-paper transcription with F.conv2d, identities, ONNX parity (standard ops only)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dynconv.export import ExportOptions, export_model
from dynconv.plugins.errors import DynconvError
from dynconv.plugins.skconv import SKConv2d
from parity import assert_close_scaled, custom_nodes, run_onnxruntime


def randomize_norms(layer):
    for mod in layer.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    return layer.eval()


def bn(x, mod):
    return F.batch_norm(x, mod.running_mean, mod.running_var, mod.weight, mod.bias, False, 0.0, mod.eps)


def naive_skconv(layer, x, kernels, dilations, stride, groups):
    """Split (conv-BN-ReLU per branch), fuse (GAP, FC-BN-ReLU), select (per-branch FC, softmax over branches)."""
    branches = []
    for i, (k, d) in enumerate(zip(kernels, dilations)):
        conv, norm = layer.branches[i][0], layer.branches[i][1]
        branches.append(F.relu(bn(F.conv2d(x, conv.weight, None, stride, d * (k - 1) // 2, d, groups), norm)))
    s = sum(branches).mean(dim=(2, 3))  # [N, O]
    fc, norm = layer.squeeze[0], layer.squeeze[1]
    z = F.relu(bn((s @ fc.weight.flatten(1).T)[:, :, None, None], norm)).flatten(1)  # [N, d]
    o = branches[0].shape[1]
    w = layer.select.weight.flatten(1)
    b = layer.select.bias if layer.select.bias is not None else w.new_zeros(w.shape[0])
    logits = [z @ w[i * o:(i + 1) * o].T + b[i * o:(i + 1) * o] for i in range(len(branches))]
    expo = [torch.exp(v - torch.stack(logits).max(0).values) for v in logits]
    total = sum(expo)
    return sum((e / total)[:, :, None, None] * u for e, u in zip(expo, branches))


@pytest.mark.parametrize("case", [
    # in, out, branches, stride, groups, reduction, min_dim, dilated, n, h, w
    (8, 8, 2, 1, 1, 16, 32, True, 2, 9, 9),
    (8, 16, 3, 2, 4, 4, 4, True, 1, 11, 8),
    (6, 6, 2, 1, 2, 2, 3, False, 3, 10, 13),
    (4, 8, 1, 2, 1, 2, 2, False, 2, 7, 12),
])
def test_matches_paper_transcription(case):
    cin, cout, m, stride, groups, r, min_dim, dilated, n, h, w = case
    layer = randomize_norms(SKConv2d(cin, cout, m, stride, groups, r, min_dim, dilated))
    kernels = [3] * m if dilated else [3 + 2 * i for i in range(m)]
    dilations = [1 + i for i in range(m)] if dilated else [1] * m
    x = torch.randn(n, cin, h, w)
    with torch.no_grad():
        got = layer(x)
        assert got.shape == (n, cout, (h - 1) // stride + 1, (w - 1) // stride + 1)
        assert_close_scaled(got, naive_skconv(layer, x, kernels, dilations, stride, groups), 1e-5)


def test_select_without_bias():
    """select_bias=False (timm / official Caffe layout): no bias parameter, same transcription with b = 0."""
    layer = randomize_norms(SKConv2d(8, 8, 3, min_dim=4, select_bias=False))
    assert layer.select.bias is None and "select.bias" not in layer.state_dict()
    assert SKConv2d(8, 8, min_dim=4).select.bias is not None  # the default keeps the bias
    x = torch.randn(2, 8, 7, 6)
    with torch.no_grad():
        assert_close_scaled(layer(x), naive_skconv(layer, x, [3, 3, 3], [1, 2, 3], 1, 1), 1e-5)
    layer.train()(x).square().sum().backward()
    assert layer.select.weight.grad is not None


def test_hidden_dim_is_max_of_reduction_and_min_dim():
    assert SKConv2d(64, 64, reduction=16, min_dim=32).squeeze[0].out_channels == 32
    assert SKConv2d(1024, 1024, reduction=16, min_dim=32, groups=32).squeeze[0].out_channels == 64


def test_attention_is_softmax_over_branches():
    layer = randomize_norms(SKConv2d(8, 8, 3, min_dim=4))
    with torch.no_grad():
        a = layer.attention(torch.randn(2, 8, 6, 6))
    assert a.shape == (2, 3, 8, 1, 1)
    assert torch.allclose(a.sum(1), torch.ones(2, 8, 1, 1))


def test_single_branch_is_its_conv_bn_relu():
    layer = randomize_norms(SKConv2d(4, 6, 1, min_dim=2))
    x = torch.randn(2, 4, 7, 5)
    with torch.no_grad():
        assert_close_scaled(layer(x), layer.branches[0](x), 1e-6)


def test_gradients_reach_every_parameter():
    layer = SKConv2d(8, 8, 2, min_dim=4)
    layer(torch.randn(4, 8, 6, 6)).square().sum().backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_channels=6, out_channels=8, groups=4), "divisible by groups"),
    (dict(in_channels=8, num_branches=0), "num_branches"),
    (dict(in_channels=8, reduction=0), "reduction"),
])
def test_bad_construction_raises(kwargs, message):
    with pytest.raises(DynconvError, match=message):
        SKConv2d(**kwargs)


EXPORTERS = ["dynamo", "torchscript"]


def make_net():
    return torch.nn.Sequential(randomize_norms(SKConv2d(8, 16, 2, stride=2, groups=4, min_dim=8)),
                               randomize_norms(SKConv2d(16, 16, 3, groups=2, min_dim=4, dilated=False))).eval()


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_onnx_dynamic_shapes_match_eager(exporter):
    net = make_net()
    model = export_model(net, (torch.randn(2, 8, 12, 10),),
                         ExportOptions(target="onnx", exporter=exporter, dynamic=("batch", "height", "width")))
    assert not custom_nodes(model)
    for shape in [(1, 8, 12, 10), (3, 8, 9, 15)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(model, [x.numpy()])[0], net(x))


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_trt_target_has_no_custom_nodes(exporter):
    model = export_model(make_net(), (torch.randn(2, 8, 12, 10),),
                         ExportOptions(target="trt", exporter=exporter, dynamic=("batch",)))
    assert not custom_nodes(model)
    assert any(n.op_type == "Softmax" for n in model.graph.node)
