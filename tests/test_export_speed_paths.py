"""The fast export paths: the graph cleanup, compact reference graphs and the dynamo exporter's
reference splicing (with its fallback)."""

from __future__ import annotations

import random

import onnx
import pytest
import torch
from dynconv.export import ExportOptions, api, export_model
from dynconv.export.postprocess import check_loads_in_onnxruntime, cleanup
from dynconv.export.reference_graph import (
    CallOrderMismatch,
    OpCall,
    _export_reference,
)
from dynconv.plugins.ddf import DDF
from dynconv.plugins.errors import DynconvError
from dynconv.plugins.involution import INVOLUTION, Involution
from onnx import TensorProto, helper
from parity import assert_close_scaled, run_onnxruntime


def _chain_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    used = helper.make_tensor("used", TensorProto.FLOAT, [4], [1, 2, 3, 4])
    unused = helper.make_tensor("unused", TensorProto.FLOAT, [4], [0, 0, 0, 0])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="n0"),
             helper.make_node("Add", ["a", "used"], ["b"], name="n1"),
             helper.make_node("Sub", ["a", "unused"], ["dead"], name="dead"),
             helper.make_node("Neg", ["dead"], ["dead2"], name="dead2"),
             helper.make_node("Mul", ["b", "a"], ["y"], name="n2")]
    graph = helper.make_graph(nodes, "g", [x], [y], [used, unused],
                              value_info=[helper.make_tensor_value_info("dead", TensorProto.FLOAT, [1, 4]),
                                          helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cleanup_sorts_and_drops_what_no_output_reads():
    model = _chain_model()
    nodes = list(model.graph.node)
    random.Random(0).shuffle(nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    cleaned = cleanup(model)
    assert [n.name for n in cleaned.graph.node] == ["n0", "n1", "n2"]
    assert [t.name for t in cleaned.graph.initializer] == ["used"]
    assert [v.name for v in cleaned.graph.value_info] == ["b"]
    onnx.checker.check_model(cleaned, full_check=True)


def _involution_call(kernel: int) -> OpCall:
    x, weight = torch.randn(1, 16, 9, 9), torch.randn(1, 2 * kernel * kernel, 9, 9)
    attrs = INVOLUTION.normalize({"kernel_size": kernel, "stride": 1, "padding": kernel // 2, "dilation": 1,
                                  "groups": 2})
    return OpCall(INVOLUTION, [x, weight], attrs)


def _ddf_call(kernel: int) -> OpCall:
    x = torch.randn(1, 8, 9, 9)
    tensors = [x, torch.randn(1, 8, kernel, kernel), torch.randn(1, kernel * kernel, 9, 9)]
    return OpCall(DDF, tensors, DDF.normalize({"kernel_size": kernel, "dilation": 1, "stride": 1,
                                                  "combine": "mul"}))


@pytest.mark.parametrize("make_call", [_involution_call, _ddf_call], ids=["involution", "ddf"])
def test_reference_graph_takes_taps_a_kernel_row_at_a_time(make_call):
    """One unfold per kernel row (a kw-times buffer, not a full unfold's kh*kw-times one): the graph grows
    by the same node count per kernel row."""
    sizes = [len(_export_reference(make_call(k), 17).node) for k in (3, 5, 7)]
    assert sizes[2] - sizes[1] == sizes[1] - sizes[0] > 0


def _tiny_involution_net() -> tuple[torch.nn.Module, torch.Tensor]:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 1), Involution(16, kernel_size=3, group_channels=8)).eval()
    return model, torch.randn(1, 3, 12, 12)


def _assert_reference_matches(proto: onnx.ModelProto, model: torch.nn.Module, x: torch.Tensor) -> None:
    assert not any(n.domain == "dynconv" for n in proto.graph.node)
    with torch.no_grad():
        want = model(x).numpy()
    assert_close_scaled(run_onnxruntime(proto, [x.numpy()])[0], want)


def test_dynamo_reference_flavour_is_spliced_from_the_trt_flavour(monkeypatch):
    model, x = _tiny_involution_net()
    targets = []
    export_dynamo = api.export_dynamo

    def recording(model, args, options, *rest):
        targets.append(options.target)
        return export_dynamo(model, args, options, *rest)

    monkeypatch.setattr(api, "export_dynamo", recording)
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter="dynamo"))
    assert targets == ["trt"]
    _assert_reference_matches(proto, model, x)


def test_dynamo_falls_back_to_decomposing_in_the_exporter(monkeypatch):
    model, x = _tiny_involution_net()

    def mismatch(*_, **__):
        raise CallOrderMismatch("graph and calls differ")

    monkeypatch.setattr(api, "splice_references", mismatch)
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter="dynamo"))
    _assert_reference_matches(proto, model, x)


def _matmul_model(elem: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", elem, [2, 100])
    y = helper.make_tensor_value_info("y", elem, [2, 100])
    weight = helper.make_tensor("w", elem, [100, 100], [1] * 10000)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_onnxruntime_load_check_reads_the_graph_without_the_weights():
    check_loads_in_onnxruntime(_matmul_model(TensorProto.FLOAT))
    with pytest.raises(DynconvError, match="does not load in onnxruntime"):
        check_loads_in_onnxruntime(_matmul_model(TensorProto.BOOL))  # no MatMul kernel for bool
