"""Export passes on their own: opset down-conversion, FP16, dynamic-dim checks, node validation."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from dynconv.export import ExportOptions, export_model
from dynconv.export.fp16 import convert_to_fp16
from dynconv.export.opset import default_opset, downconvert
from dynconv.export.postprocess import validate_custom_node
from dynconv.export.shapes import SymDim
from dynconv.plugins.errors import DynconvError
from dynconv.plugins.involution import INVOLUTION
from parity import assert_close_scaled, run_onnxruntime


def _model_18():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 5])
    pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"]),
             helper.make_node("ReduceMean", ["p", "axes"], ["m"], keepdims=1),
             helper.make_node("Sub", ["p", "m"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y], [pads, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def test_downconvert_pad_and_reduce_mean_to_17():
    model = _model_18()
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3)).astype(np.float32)
    want = run_onnxruntime(model, [x])[0]
    converted = downconvert(model, 17)
    onnx.checker.check_model(converted)
    assert default_opset(converted) == 17
    reduce = next(n for n in converted.graph.node if n.op_type == "ReduceMean")
    assert {a.name for a in reduce.attribute} == {"axes", "keepdims"}
    assert_close_scaled(run_onnxruntime(converted, [x])[0], want, 1e-6)


def test_downconvert_keeps_weights_out_of_the_converter_and_restores_them():
    rng = np.random.default_rng(2)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    weight = onnx.numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "weight")
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("MatMul", ["x", "weight"], ["h"]),
             helper.make_node("ReduceMax", ["h", "axes"], ["y"], keepdims=1)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [weight, axes]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    data = rng.standard_normal((3, 16)).astype(np.float32)
    want = run_onnxruntime(model, [data])[0]
    converted = downconvert(model, 17)
    onnx.checker.check_model(converted, full_check=True)
    assert [v.name for v in converted.graph.input] == ["x"]
    restored = {t.name: t for t in converted.graph.initializer}
    assert restored["weight"].SerializeToString() == weight.SerializeToString()
    np.testing.assert_array_equal(run_onnxruntime(converted, [data])[0], want)


def test_fp16_conversion_runs_and_stays_close():
    model = _model_18()
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 3)).astype(np.float32)
    want = run_onnxruntime(model, [x])[0]
    half = convert_to_fp16(model)
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert_close_scaled(run_onnxruntime(half, [x.astype(np.float16)])[0], want, 1e-2)


def test_symbolic_dims_simplify():
    h = SymDim("height")
    assert ((h + 2 - 3) // 1 + 1).expr == "height"
    assert ((h + 1) // 2).expr == "((height + 1)//2)"
    assert (2 * h // 2).expr == "height"


def test_dynamic_axis_that_gets_specialised_is_reported():
    class Specialising(torch.nn.Module):
        def forward(self, x):
            return x.reshape(int(x.shape[0]) * 0 + 2, -1)

    with pytest.raises(DynconvError, match="dynamo exporter failed.*specialized"):
        export_model(Specialising(), (torch.randn(2, 3, 4, 4),),
                     ExportOptions(target="onnx", exporter="dynamo", dynamic=("batch",)))


def test_validate_custom_node_rejects_spec_drift():
    attrs = INVOLUTION.node_attributes({}, {})
    good = helper.make_node("DynconvInvolution", ["x", "w"], ["y"], domain="dynconv", plugin_version="1", **attrs)
    validate_custom_node(good)
    extra = helper.make_node("DynconvInvolution", ["x", "w"], ["y"], domain="dynconv", plugin_version="1",
                             bogus=1, **attrs)
    with pytest.raises(DynconvError, match="differ from the spec"):
        validate_custom_node(extra)
    old = helper.make_node("DynconvInvolution", ["x", "w"], ["y"], domain="dynconv", plugin_version="2", **attrs)
    with pytest.raises(DynconvError, match="plugin_version"):
        validate_custom_node(old)


def test_options_reject_unknown_values():
    with pytest.raises(DynconvError, match="unknown target"):
        ExportOptions(target="tensorrt")
    with pytest.raises(DynconvError, match="unknown exporter"):
        ExportOptions(exporter="jit")


def test_dynamo_split_chunk_and_full_mean_reach_opset_17():
    from dynconv.plugins.involution import involution

    class Heads(torch.nn.Module):
        def forward(self, x):
            a, b = torch.split(x, [4, 9], dim=1)
            c, d = torch.chunk(x, 2, dim=2)
            return involution(a, b, 3, 1, 1, 1, 1) + c.mean() - d.sum()

    x = torch.randn(1, 13, 8, 8)
    for target in ("trt", "onnx"):
        proto = export_model(Heads(), (x,), ExportOptions(target=target, exporter="dynamo"))
        assert default_opset(proto) == 17
        assert [n.op_type for n in proto.graph.node].count("Split") == 2
    with torch.no_grad():
        assert_close_scaled(run_onnxruntime(proto, [x.numpy()])[0], Heads()(x))


# ----- output dim names, progress lines, the conv-only yardstick -----------------------------------------------
class _StridedDCN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from dynconv.plugins.deform_conv import ModulatedDeformConv2d

        self.stem = torch.nn.Conv2d(3, 4, 3, 2, 1)
        self.dcn = ModulatedDeformConv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        return self.dcn(self.stem(x))


def _output_dims(model: onnx.ModelProto) -> list:
    return [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]


@pytest.mark.parametrize("target", ["trt", "onnx"])
def test_torchscript_output_dims_are_named_like_dynamo(target):
    m, x = _StridedDCN().eval(), torch.randn(2, 3, 33, 40)
    options = ExportOptions(target=target, exporter="torchscript", dynamic=("batch", "height", "width"))
    dims = _output_dims(export_model(m, (x,), options))
    assert dims[:2] == ["batch", 4]
    assert not any(isinstance(d, str) and d.startswith("unk__") for d in dims), dims
    assert "height" in dims[2] and "width" in dims[3], dims


def test_progress_lines_name_each_stage():
    import io
    import logging

    from dynconv.export.progress import PROGRESS_LOGGER, enable_progress

    stream = io.StringIO()
    enable_progress(stream)
    try:
        export_model(_StridedDCN().eval(), (torch.randn(1, 3, 16, 16),), ExportOptions(exporter="torchscript"))
    finally:
        logger = logging.getLogger(PROGRESS_LOGGER)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate, logger.level = True, logging.NOTSET
    lines = stream.getvalue().splitlines()
    assert "dynconv-export: TorchScript export ..." in lines
    assert any(line.startswith("dynconv-export: TorchScript export: done in ") for line in lines)


def test_standard_conv_twin_keeps_shapes_and_drops_dynamic_ops():
    from dynconv.export.bench_export import standard_conv_twin
    from dynconv.export.examples import build_example
    from dynconv.export.reference_graph import record_calls

    model, x = build_example("mixed")
    with torch.no_grad():
        expected = model(x).shape
        with standard_conv_twin():
            assert model(x).shape == expected
            assert record_calls(model, (x,)) == []
    assert record_calls(model, (x,))  # restored afterwards


def test_torchscript_imports_the_custom_domain_only_where_a_node_uses_it(capfd):
    from dynconv.plugins.dynamic_conv import DynamicConv2d
    from dynconv.plugins.spec import DOMAIN

    options = ExportOptions(exporter="torchscript")
    with_nodes = export_model(_StridedDCN().eval(), (torch.randn(1, 3, 16, 16),), options)
    assert {o.domain: o.version for o in with_nodes.opset_import}[DOMAIN] == 1
    capfd.readouterr()
    custom_free = export_model(DynamicConv2d(3, 4, 3).eval(), (torch.randn(1, 3, 16, 16),), options)
    assert DOMAIN not in {o.domain for o in custom_free.opset_import}
    assert "opset domain" not in capfd.readouterr().err  # the exporter's C++ warning for an unused domain


def test_bench_rows_keep_the_fastest_times_and_the_median_of_the_rounds_ratios(monkeypatch, capsys):
    from dynconv.export import bench_export

    yard = iter([1.0, 2.0, 2.0, 0.5])  # warm-up, then three rounds: a lucky fast third yardstick
    ours = iter([2.4, 2.2, 0.9])
    monkeypatch.setattr(bench_export, "time_yardstick", lambda *a: next(yard))
    monkeypatch.setattr(bench_export, "time_dynconv", lambda *a: next(ours))
    monkeypatch.setattr("dynconv.export.examples.build_example", lambda name: (None, None))
    (row,) = bench_export.run(["mixed"], ["torchscript"], ["trt"], (), repeat=3)
    assert (row["dynconv"], row["yardstick"]) == (0.9, 0.5)
    assert row["ratio"] == pytest.approx(1.8)
    assert row["paired"] == pytest.approx(1.2)  # round ratios 1.2, 1.1, 1.8
    assert capsys.readouterr().out.split()[-2:] == ["1.80", "1.20"]
