"""--fp16 exports are valid ONNX (full checker, onnxruntime loads the onnx target) for every op, both
targets and both exporters; index arithmetic stays float32 (issue 14 item 1)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dynconv.export import ExportOptions, export_model
from dynconv.export.fp16 import convert_to_fp16
from dynconv.export.op_models import dcnv3_case, ddf_case, deform_conv_case, drconv_case, involution_case
from parity import custom_nodes

# The cheapest configuration of every core op (small channel count and image).
CASES = [deform_conv_case(), dcnv3_case(), ddf_case(), involution_case(kernel=3), drconv_case()]


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.op)
def test_fp16_export_is_valid_for_every_op(case, exporter):
    model, inputs = case.model(2, 16, 5, 6)
    dynamic = ("batch",) if case.layout == "NHWC" else ("batch", "height", "width")
    with torch.no_grad():
        expected = model(*inputs).numpy()
    for target in ("onnx", "trt"):
        proto = export_model(model, inputs, ExportOptions(target=target, exporter=exporter, dynamic=dynamic,
                                                          fp16=True))
        onnx.checker.check_model(proto, full_check=True)
        assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT16 for v in [*proto.graph.input,
                                                                                   *proto.graph.output])
        if target == "trt":
            assert [n.op_type for n in custom_nodes(proto)] == [case.op]
            continue
        session = _session(proto)
        got = session.run(None, {i.name: t.numpy().astype(np.float16) for i, t in zip(session.get_inputs(), inputs)})
        err = np.abs(got[0].astype(np.float32) - expected).max() / np.abs(expected).max()
        assert err < 1e-2, err


def _graph_with_index_arithmetic() -> onnx.ModelProto:
    """x + Range(0, W) (a float Range, as the DCN decompositions build their grids), Resize with float
    scales, and a constant used by both the index and the data path."""
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    start = numpy_helper.from_array(np.array(0.0, np.float32), "start")
    delta = numpy_helper.from_array(np.array(1.0, np.float32), "delta")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "three"], ["w_int"], axis=0),
        helper.make_node("Cast", ["w_int"], ["w"], to=TensorProto.FLOAT),
        helper.make_node("Range", ["start", "w", "delta"], ["grid"]),
        helper.make_node("Add", ["grid", "half"], ["grid_centre"]),
        helper.make_node("Mul", ["x", "half"], ["x_half"]),
        helper.make_node("Add", ["x_half", "grid_centre"], ["moved"]),
        helper.make_node("Resize", ["moved", "", "scales"], ["y"], mode="nearest"),
    ]
    three = numpy_helper.from_array(np.array(3, np.int64), "three")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[half, start, delta, scales, three])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return onnx.shape_inference.infer_shapes(model)


def test_fp16_keeps_index_arithmetic_in_float32():
    model = _graph_with_index_arithmetic()
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 5)).astype(np.float32)
    expected = _session(model).run(None, {"x": x})[0]
    converted = convert_to_fp16(model)
    onnx.checker.check_model(converted, full_check=True)
    types = {v.name: v.type.tensor_type.elem_type for v in converted.graph.value_info}
    assert types["grid"] == types["grid_centre"] == TensorProto.FLOAT  # Range and what follows it
    assert types["x_half"] == types["moved"] == TensorProto.FLOAT16
    inits = {t.name: t.data_type for t in converted.graph.initializer}
    assert inits["scales"] == inits["half"] == TensorProto.FLOAT and inits["half__fp16"] == TensorProto.FLOAT16
    got = _session(converted).run(None, {"x": x.astype(np.float16)})[0]
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), expected, atol=2e-2)
