"""The onnxruntime load check's probe: one node per distinct kernel request stands in for the graph."""

from __future__ import annotations

import collections

import onnx
import pytest
from dynconv.export import ExportOptions, export_model
from dynconv.export.kernel_probe import kernel_probe
from dynconv.export.postprocess import _onnxruntime_load_error, check_loads_in_onnxruntime
from dynconv.export.shapes import without_weights
from dynconv.plugins.errors import DynconvError
from onnx import TensorProto, helper


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           initializers: tuple[onnx.TensorProto, ...] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _relu_chain(length: int, last_op: str = "Relu", last_attrs: dict | None = None,
                elem: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """``length`` Relus on a float [2, 8], a Cast to ``elem``, then ``last_op``."""
    nodes = [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"], name=f"relu{i}") for i in range(length)]
    nodes.append(helper.make_node("Cast", [f"v{length}"], ["c"], to=elem))
    nodes.append(helper.make_node(last_op, ["c"], ["y"], **(last_attrs or {})))
    return _model(nodes, [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [2, 8])],
                  [helper.make_tensor_value_info("y", elem, None)])


def test_probe_keeps_one_node_per_distinct_kernel_request():
    model = _relu_chain(40, "Softmax", {"axis": 1})
    probe = kernel_probe(model)
    assert [n.op_type for n in probe.graph.node] == ["Relu", "Cast", "Softmax"]
    assert _onnxruntime_load_error(probe) is None
    # the same op with another attribute, or other element types, is another kernel request
    nodes = [helper.make_node("Softmax", ["x"], ["a"], axis=1), helper.make_node("Softmax", ["a"], ["b"], axis=0),
             helper.make_node("Softmax", ["b"], ["c"], axis=1), helper.make_node("Cast", ["c"], ["d"], to=10),
             helper.make_node("Softmax", ["d"], ["y"], axis=1)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 8])])
    probe = kernel_probe(model)
    kinds = [(n.op_type, helper.get_attribute_value(n.attribute[0])) for n in probe.graph.node]
    assert kinds == [("Softmax", 1), ("Softmax", 0), ("Cast", 10), ("Softmax", 1)]
    assert probe.graph.input[-1].type.tensor_type.elem_type == TensorProto.FLOAT16


def test_constants_collapse_by_type_and_dims_not_value():
    nodes = [helper.make_node("Constant", [], [f"k{i}"], value=helper.make_tensor(f"t{i}", TensorProto.FLOAT, [8], [i] * 8))
             for i in range(5)]
    nodes += [helper.make_node("Add", ["x" if i == 0 else f"s{i - 1}", f"k{i}"], [f"s{i}"]) for i in range(5)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                   [helper.make_tensor_value_info("s4", TensorProto.FLOAT, [2, 8])])
    assert collections.Counter(n.op_type for n in kernel_probe(model).graph.node) == {"Constant": 1, "Add": 1}


@pytest.mark.parametrize("last_op, attrs, elem, reason", [
    ("Relu", {}, TensorProto.INT16, "no kernel for the type"),
    ("LpNormalization", {"p": 3, "axis": 1}, TensorProto.FLOAT, "the kernel refuses the attribute"),
])
def test_one_node_onnxruntime_rejects_among_many_fails_the_check(last_op, attrs, elem, reason):
    model = _relu_chain(40, last_op, attrs, elem)
    onnx.checker.check_model(model, full_check=True)  # valid ONNX: only onnxruntime objects
    assert _onnxruntime_load_error(kernel_probe(model)) is not None, reason
    with pytest.raises(DynconvError, match="does not load in onnxruntime"):
        check_loads_in_onnxruntime(model)
    accepted = _relu_chain(40, last_op, {**attrs, "p": 2} if "p" in attrs else attrs, TensorProto.FLOAT)
    check_loads_in_onnxruntime(accepted)


def test_probe_steps_aside_for_subgraphs_and_untyped_values():
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "b", [],
                               [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 8])])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    model = _model([helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], (cond,))
    assert kernel_probe(model) is None
    check_loads_in_onnxruntime(model)  # the whole graph is loaded instead
    untyped = _relu_chain(3)
    del untyped.graph.value_info[:]
    assert kernel_probe(untyped) is None


def test_probe_of_an_exported_network_loads_and_is_small():
    from dynconv.export.examples import build_example

    model, x = build_example("mixed")
    proto = export_model(model, (x,), ExportOptions(target="onnx", dynamic=("batch", "height", "width")))
    light = without_weights(proto)
    probe = kernel_probe(light)
    assert probe is not None and len(probe.graph.node) < len(light.graph.node) // 2
    assert _onnxruntime_load_error(probe) is None
    requests = {(n.op_type, tuple(n.attribute[i].name for i in range(len(n.attribute)))) for n in light.graph.node}
    assert {(n.op_type, tuple(a.name for a in n.attribute)) for n in probe.graph.node} == requests


def test_a_probe_that_fails_defers_to_the_whole_graph(monkeypatch):
    from dynconv.export import postprocess

    rejected = _relu_chain(2, "Relu", {}, TensorProto.INT16)
    monkeypatch.setattr(postprocess, "kernel_probe", lambda light: rejected)
    check_loads_in_onnxruntime(_relu_chain(5))  # the whole graph loads: its answer stands


def _resize_after_relus(scales: list[float]) -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"]) for i in range(20)]
    nodes.append(helper.make_node("Resize", ["v20", "", "scales"], ["y"], mode="linear"))
    out = [int(d * f) for d, f in zip((1, 2, 4, 4), scales)]
    return _model(nodes, [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [1, 2, 4, 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
                  (helper.make_tensor("scales", TensorProto.FLOAT, [4], scales),))


def test_constant_inputs_reach_the_probe_with_their_values():
    """onnxruntime's Resize checks constant scales when the session opens (linear mode scales no batch
    dim): the probe carries the initializer, values and all, so the check sees what the graph has."""
    check_loads_in_onnxruntime(_resize_after_relus([1.0, 1.0, 2.0, 2.0]))
    rejected = _resize_after_relus([2.0, 1.0, 2.0, 2.0])
    onnx.checker.check_model(rejected, full_check=True)
    probe = kernel_probe(rejected)
    assert [t.name for t in probe.graph.initializer] == ["p2_in2"]
    assert _onnxruntime_load_error(probe) is not None
    with pytest.raises(DynconvError, match="does not load in onnxruntime"):
        check_loads_in_onnxruntime(rejected)

