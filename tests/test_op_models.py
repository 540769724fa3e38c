"""The single-op models behind the GPU parity tests and benchmarks export correctly on the CPU."""

from __future__ import annotations

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


def test_benchmark_script_builds_its_models_and_refuses_without_gpu(capsys):
    from dynconv.runtime import bench_plugins

    for case in benchmark_cases():
        proto, inputs = bench_plugins.plugin_onnx(case, (1, 32, 10, 12), fp16=True)
        assert len(custom_nodes(proto)) == 1
        assert proto.graph.input[0].type.tensor_type.elem_type == 10  # FLOAT16
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT present: the no-GPU refusal is not what runs here")
    except ImportError:
        pass
    assert bench_plugins.main(["--runs", "1"]) == 2
    assert "error:" in capsys.readouterr().err
