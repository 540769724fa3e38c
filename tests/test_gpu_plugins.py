"""TensorRT plugin parity on a GPU: engine (trt flavour) vs onnxruntime (reference flavour) vs PyTorch.

Every op over the parity grid, FP32 and FP16, two runtime shapes inside one dynamic profile; plus the
mixed example network end to end. Skips with a reason without TensorRT, a CUDA device or the
plugin library (build it with ``dynconv-build-plugins``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynconv.export import ExportOptions, export_model
from dynconv.export.examples import build_example
from dynconv.export.op_models import OpCase, parity_grid
from parity import assert_close_scaled, run_onnxruntime

CHANNELS = 32
PROFILE = {"min": (1, 7, 9), "opt": (2, 13, 17), "max": (3, 24, 24)}  # (N, H, W)
RUN_SIZES = [(2, 13, 17), (3, 21, 19)]


def _skip_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt is not installed"
    from dynconv.runtime.device import device_count

    if device_count() == 0:
        return "no CUDA device (or cuda-python missing)"
    from dynconv.plugins.native import find_plugin_library

    if find_plugin_library() is None:
        return "plugin library not built (run dynconv-build-plugins)"
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def _graph_inputs(case: OpCase, n: int, h: int, w: int) -> list[np.ndarray]:
    _, inputs = case.model(n, CHANNELS, h, w, seed=n * 1000 + h * 10 + w)
    return [t.numpy() for t in inputs]


def _build(tmp_path, proto, shapes: dict) -> "object":
    import onnx

    from dynconv.runtime.builder import BuildOptions, build

    onnx_path, plan = tmp_path / "m.onnx", tmp_path / "m.plan"
    onnx.save(proto, onnx_path)
    build(BuildOptions(onnx_path, plan, plugins="auto", shapes=shapes))
    return plan


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", parity_grid(), ids=lambda c: c.label.replace(" ", "_"))
def test_plugin_matches_onnxruntime_and_pytorch(tmp_path, case, precision):
    from dynconv.runtime import Engine

    fp16 = precision == "fp16"
    dynamic = ("batch",) if case.layout == "NHWC" else ("batch", "height", "width")
    sizes = PROFILE if case.layout == "NCHW" else {k: (v[0],) + PROFILE["opt"][1:] for k, v in PROFILE.items()}
    runs = RUN_SIZES if case.layout == "NCHW" else [(n,) + PROFILE["opt"][1:] for n, _, _ in RUN_SIZES]
    model, example = case.model(*(sizes["opt"][:1] + (CHANNELS,) + sizes["opt"][1:]))
    trt_onnx = export_model(model, example, ExportOptions(target="trt", dynamic=dynamic, fp16=fp16))
    ref_onnx = export_model(model, example, ExportOptions(target="onnx", dynamic=dynamic))
    names = [i.name for i in trt_onnx.graph.input]
    profile = {name: tuple(tuple(a.shape) for a in arrays) for name, arrays in zip(
        names, zip(*[_graph_inputs(case, *sizes[k]) for k in ("min", "opt", "max")]))}
    plan = _build(tmp_path, trt_onnx, profile)
    with Engine(plan, plugins="auto") as engine:
        for n, h, w in runs:
            arrays = _graph_inputs(case, n, h, w)
            feeds = {name: a.astype(np.float16) if fp16 else a for name, a in zip(names, arrays)}
            got = next(iter(engine.infer(feeds).values())).astype(np.float32)
            ref = run_onnxruntime(ref_onnx, arrays)[0]
            with torch.no_grad():
                eager = model(*[torch.from_numpy(a) for a in arrays]).numpy()
            assert_close_scaled(ref, eager, 1e-4)
            if fp16:
                assert_close_scaled(got, ref, 1e-2)
                assert _cosine(got, ref) >= 0.9999
            else:
                assert_close_scaled(got, ref, 1e-4)


def test_mixed_example_end_to_end(tmp_path):
    from dynconv.runtime import Engine

    model, x = build_example("mixed")
    trt_onnx = export_model(model, (x,), ExportOptions(target="trt", dynamic=("batch",)))
    ref_onnx = export_model(model, (x,), ExportOptions(target="onnx", dynamic=("batch",)))
    shape = tuple(x.shape[1:])
    plan = _build(tmp_path, trt_onnx, {"input": ((1, *shape), (2, *shape), (4, *shape))})
    with Engine(plan, plugins="auto") as engine:
        for n in (1, 3):
            inp = torch.randn(n, *shape).numpy()
            got = engine.infer({"input": inp})["output"]
            assert_close_scaled(got, run_onnxruntime(ref_onnx, [inp])[0], 1e-4)
