"""Symbolic sizes read off an exported graph (:mod:`dynconv.export.graph_dims`) agree with the symbolic
run of the model (torch's own shape engine) and with concrete sizes; unknown ops fall back."""

from __future__ import annotations

import pytest
import sympy
import torch
from dynconv.export import ExportOptions, export_model
from dynconv.export import torch_export
from dynconv.export.examples import build_example
from dynconv.export.graph_dims import Unsupported, _ceil_window, graph_symbolic_dims
from dynconv.export.networks import NETWORKS
from dynconv.export.reference_graph import recording_calls
from dynconv.plugins.dcnv3 import DCNv3
from dynconv.plugins.deform_conv import ModulatedDeformConv2d
from dynconv.plugins.involution import Involution
from dynconv.plugins.registration import shapes_only
from onnx import TensorProto, helper

AXES = ("batch", "height", "width")


class _Backbone(torch.nn.Module):
    """Strided convs, ceil-mode and plain pools, a DCN, an involution, a DCNv3 block in NHWC, a
    flattening head: the size arithmetic real backbones make the exporter write."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, 2, 1)
        self.pool = torch.nn.AvgPool2d(3, 2, 1, ceil_mode=True)
        self.dcn = ModulatedDeformConv2d(16, 16, 3, stride=2, padding=1)
        self.inv = Involution(16, 3, stride=2)
        self.dcnv3 = DCNv3(16, group=2)
        self.max = torch.nn.MaxPool2d(2, 2, ceil_mode=True)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, x):
        y = self.inv(self.dcn(self.pool(self.stem(x))))
        y = self.dcnv3(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        y = self.max(y)
        side = y.reshape(y.shape[0], y.shape[1], -1)
        return self.head(side.mean(-1)), y


def _trt_graph_and_axes(monkeypatch, model, x):
    """The TorchScript trt-flavour graph before its dims are named, and the naming run's arguments."""
    captured = {}
    monkeypatch.setattr(torch_export, "graph_symbolic_dims", lambda *a: None)
    monkeypatch.setattr(torch_export, "symbolic_output_dims", lambda *a: captured.update(args=a))
    with recording_calls(), shapes_only():
        proto = torch_export.export_torchscript(model, (x,), ExportOptions(target="trt", exporter="torchscript",
                                                                           dynamic=AXES), ["input"], None)
    monkeypatch.undo()
    return proto, captured["args"]


@pytest.mark.parametrize("shape", [(2, 3, 33, 40), (1, 3, 64, 64)])
def test_graph_walk_names_sizes_as_the_symbolic_run_does(monkeypatch, shape):
    model, x = _Backbone().eval(), torch.randn(*shape)
    proto, args = _trt_graph_and_axes(monkeypatch, model, x)
    walked = graph_symbolic_dims(proto, args[2])
    with shapes_only():
        ran = torch_export.symbolic_output_dims(*args)
    assert walked is not None and ran is not None
    assert walked.outputs == ran.outputs
    assert walked.core_ops == ran.core_ops
    assert walked.outputs[1][:2] == ["batch", 16] and "height" in walked.outputs[1][2]


def test_graph_walk_sizes_evaluate_to_the_concrete_sizes(monkeypatch):
    model, x = _Backbone().eval(), torch.randn(2, 3, 47, 29)
    proto, args = _trt_graph_and_axes(monkeypatch, model, x)
    walked = graph_symbolic_dims(proto, args[2])
    with torch.no_grad():
        outputs = model(x)
    values = {"batch": 2, "height": 47, "width": 29}
    symbols = {k: sympy.Symbol(k, integer=True, positive=True) for k in values}
    for sizes, out in zip(walked.outputs, outputs):
        got = [d if isinstance(d, int) else int(sympy.sympify(d, locals=symbols).subs({symbols[k]: v for k, v in values.items()})) for d in sizes]
        assert got == list(out.shape)


def test_torchscript_dynamic_export_does_not_run_the_model_symbolically(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the symbolic run is the fallback only")

    monkeypatch.setattr(torch_export, "symbolic_output_dims", forbidden)
    proto = export_model(_Backbone().eval(), (torch.randn(1, 3, 32, 32),),
                         ExportOptions(target="onnx", exporter="torchscript", dynamic=AXES))
    dims = [d.dim_param or d.dim_value for d in proto.graph.output[1].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and "height" in dims[2] and "width" in dims[3], dims
    head = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert head == ["batch", 5]


def test_the_trt_export_names_every_output_dim_so_the_onnx_flavour_needs_no_extra_inference():
    """The exporter writes a placeholder (``Gemm_dim_1``) even for the Linear head's static width: the
    walk's sizes replace it, so the onnx flavour does not re-infer shapes to type its outputs."""
    from dynconv.export.shapes import outputs_fully_named

    from dynconv.plugins.ddf import DDFPack

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), DDFPack(8, 3, 1), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(1), torch.nn.Linear(8, 5)).eval()
    options = ExportOptions(target="trt", exporter="torchscript", dynamic=AXES)
    with recording_calls(), shapes_only():
        proto = torch_export.export_torchscript(model, (torch.randn(1, 3, 16, 16),), options, ["input"], None)
    assert [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == ["batch", 5]
    assert outputs_fully_named(proto)


def test_an_op_without_a_rule_falls_back_to_the_symbolic_run(monkeypatch):
    monkeypatch.setattr("dynconv.export.graph_dims.RULES", {})
    ran = []
    original = torch_export.symbolic_output_dims
    monkeypatch.setattr(torch_export, "symbolic_output_dims", lambda *a: ran.append(1) or original(*a))
    proto = export_model(_Backbone().eval(), (torch.randn(1, 3, 32, 32),),
                         ExportOptions(target="trt", exporter="torchscript", dynamic=AXES))
    assert ran == [1]
    dims = [d.dim_param or d.dim_value for d in proto.graph.output[1].type.tensor_type.shape.dim]
    assert "height" in dims[2], dims


def _graph(nodes, inputs, outputs, initializers=()):
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(initializers)),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_unknown_ops_and_inexpressible_sizes_give_none():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    axes = {"x": {2: "height"}}
    assert graph_symbolic_dims(_graph([helper.make_node("TopK", ["x", "k"], ["y", "i"])], [x], [y]), axes) is None
    odd_slice = helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])  # x[:, :, 1:5]: min(5, height) unknown
    consts = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 1), ("e", 5), ("a", 2))]
    assert graph_symbolic_dims(_graph([odd_slice], [x], [y], consts), axes) is None
    static = graph_symbolic_dims(_graph([odd_slice], [x], [y], consts), {})
    assert static is not None and static.outputs == [[1, 3, 4, 8]]


@pytest.mark.parametrize("kernel,stride,pad", [(3, 2, 1), (2, 2, 0), (3, 2, 0), (3, 1, 1), (5, 3, 2)])
def test_ceil_mode_pooling_sizes_match_torch(kernel, stride, pad):
    for size in range(max(kernel - 2 * pad, 1), 40):
        want = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, size), kernel, stride, pad,
                                              ceil_mode=True).shape[-1]
        assert int(_ceil_window(sympy.Integer(size), kernel, stride, pad, pad, 1)) == want, size
        symbol = sympy.Symbol("h", integer=True, positive=True)
        try:
            expression = _ceil_window(symbol, kernel, stride, pad, pad, 1)
        except Unsupported:
            assert pad + stride > kernel  # the end-padding correction may apply: no single expression
            continue
        assert int(expression.subs(symbol, size)) == want, (size, expression)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETWORKS) + ["mixed"])
def test_graph_walk_matches_the_symbolic_run_on_every_network(monkeypatch, name):
    model, x = build_example(name)
    proto, args = _trt_graph_and_axes(monkeypatch, model, x)
    walked = graph_symbolic_dims(proto, args[2])
    with shapes_only():
        ran = torch_export.symbolic_output_dims(*args)
    assert walked is not None and (walked.outputs, walked.core_ops) == (ran.outputs, ran.core_ops)
