"""The single-op models behind the GPU parity tests and benchmarks export correctly on the CPU."""

from __future__ import annotations

import onnx
import pytest
import torch

from dynconv.export import ExportOptions, export_model
from dynconv.export.op_models import benchmark_cases, parity_grid
from parity import assert_close_scaled, assert_trt_node, custom_nodes, run_onnxruntime


@pytest.mark.parametrize("case", parity_grid() + benchmark_cases(), ids=lambda c: c.label.replace(" ", "_"))
def test_single_op_model_exports(case):
    model, inputs = case.model(2, 32, 11, 14)
    dynamic = ("batch",) if case.layout == "NHWC" else ("batch", "height", "width")
    trt = export_model(model, inputs, ExportOptions(target="trt", exporter="torchscript", dynamic=dynamic))
    nodes = custom_nodes(trt)
    assert len(nodes) == 1
    present = {t.name: model.present[i] for i, t in enumerate(case.spec.inputs) if t.optional}
    assert_trt_node(nodes[0], case.spec, case.attrs(32), present)
    ref = export_model(model, inputs, ExportOptions(target="onnx", exporter="torchscript", dynamic=dynamic))
    _, other = case.model(3, 32, 11, 14) if case.layout == "NHWC" else case.model(3, 32, 9, 16)
    with torch.no_grad():
        assert_close_scaled(run_onnxruntime(ref, [t.numpy() for t in other])[0], model(*other))


def test_benchmark_script_builds_its_models_and_refuses_without_gpu(tmp_path, capsys):
    from dynconv.export import gpu_cases
    from dynconv.runtime import bench_plugins

    assert bench_plugins.main([str(tmp_path), "--runs", "1"]) == 2  # no stage-1 directory yet
    assert "gpu_cases" in capsys.readouterr().err
    manifest = gpu_cases.write_cases(tmp_path, limit=0, bench=True, bench_shapes=[(1, 32, 10, 12)], runs=5)
    items = manifest["bench"]["items"]
    assert manifest["cases"] == []
    assert manifest["bench"]["eager_timings"] == ("eager_timings.json" if torch.cuda.is_available() else None)
    assert len(items) == 2 * (len(benchmark_cases()) + 2)
    assert bench_plugins.load_manifest(tmp_path)["bench"]["items"] == items
    for item in items:
        proto = onnx.load(tmp_path / item["onnx"])
        assert len(custom_nodes(proto)) == (1 if item["kind"] == "plugin" else 0)
        elem = onnx.TensorProto.FLOAT16 if item["precision"] == "fp16" else onnx.TensorProto.FLOAT
        assert all(v.type.tensor_type.elem_type == elem for v in proto.graph.input)
        assert [v.name for v in proto.graph.input] == [d["name"] for d in item["inputs"]]
        assert all(not d.dim_param for v in proto.graph.input for d in v.type.tensor_type.shape.dim)  # static
        feeds = bench_plugins.make_feeds(item["inputs"])
        assert [(a.shape, a.dtype.name) for a in feeds.values()] == [(tuple(d["shape"]), d["dtype"])
                                                                     for d in item["inputs"]]
    assert {i["id"] for i in items if i["kind"] == "baseline"} == {"conv3x3", "depthwise3x3"}
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT present: the no-GPU refusal is not what runs here")
    except ImportError:
        pass
    assert bench_plugins.main([str(tmp_path), "--runs", "1"]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("case", parity_grid(), ids=lambda c: c.label.replace(" ", "_"))
def test_single_op_model_dynamo_keeps_dynamic_dims(case):
    """forward(*inputs) models: torch.export gets the dynamic dims of every starred input."""
    model, inputs = case.model(2, 32, 11, 14)
    dynamic = ("batch",) if case.layout == "NHWC" else ("batch", "height", "width")
    proto = export_model(model, inputs, ExportOptions(target="trt", exporter="dynamo", dynamic=dynamic))
    assert len(custom_nodes(proto)) == 1
    for value in proto.graph.input:
        assert value.type.tensor_type.shape.dim[0].dim_param.startswith("batch")
