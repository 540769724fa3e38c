"""TensorRT engine tests (GPU): build a tiny Conv+Relu engine, compare with onnxruntime, check
profile errors, CUDA-graph replay, metadata mismatches, and the CLIs on a real plan."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_runtime_models import conv_relu

from dynconv.plugins.errors import DynconvError


def _skip_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt is not installed"
    from dynconv.runtime.device import device_count

    if device_count() == 0:
        return "no CUDA device (or cuda-python missing)"
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from dynconv.runtime.builder import BuildOptions, build

    folder = tmp_path_factory.mktemp("trt")
    onnx_path = conv_relu(folder / "m.onnx")
    plan = folder / "m.plan"
    build(BuildOptions(onnx_path, plan, plugins="none",
                       shapes={"x": ((1, 3, 8, 8), (2, 3, 32, 32), (4, 3, 64, 64))}))
    return onnx_path, plan


def test_engine_matches_onnxruntime(built):
    from dynconv.runtime import Engine, OrtBackend

    onnx_path, plan = built
    ref = OrtBackend(onnx_path)
    with Engine(plan, plugins="none") as eng:
        assert [s.name for s in eng.inputs] == ["x"] and [s.name for s in eng.outputs] == ["y"]
        for shape in [(1, 3, 8, 8), (4, 3, 17, 64), (2, 3, 32, 32)]:
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            y = eng.infer({"x": x})["y"]
            r = ref.infer({"x": x})["y"]
            assert y.shape == r.shape
            assert np.abs(y - r).max() <= 1e-4 * np.abs(r).max()


def test_engine_profile_and_input_errors(built):
    from dynconv.runtime import Engine

    _, plan = built
    with Engine(plan, plugins="none") as eng:
        with pytest.raises(DynconvError, match="profile allows 1..4"):
            eng.infer({"x": np.zeros((5, 3, 8, 8), np.float32)})
        with pytest.raises(DynconvError, match="dim 1 must be 3"):
            eng.infer({"x": np.zeros((1, 2, 8, 8), np.float32)})
        with pytest.raises(DynconvError, match="unknown input"):
            eng.infer({"q": np.zeros((1, 3, 8, 8), np.float32)})


def test_cuda_graph_replay_and_device_inputs(built):
    from dynconv.runtime import Engine, device

    _, plan = built
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with Engine(plan, plugins="none") as plain, Engine(plan, plugins="none", use_cuda_graph=True) as graphed:
        want = plain.infer({"x": x})["y"]
        for _ in range(3):
            np.testing.assert_array_equal(graphed.infer({"x": x})["y"], want)
        buf = device.DeviceBuffer()
        ptr = buf.ensure(x.nbytes)
        device.copy_htod_async(ptr, x, 0)
        device.synchronize(0)
        dev_x = device.DeviceView(ptr, x.shape, x.dtype, True)
        np.testing.assert_array_equal(plain.infer({"x": dev_x})["y"], want)
        np.testing.assert_array_equal(graphed.infer({"x": dev_x})["y"], want)
        buf.free()


def test_metadata_mismatch_is_a_clear_error(built, tmp_path):
    from dynconv.runtime import Engine

    _, plan = built
    copy = tmp_path / "m.plan"
    copy.write_bytes(plan.read_bytes())
    meta = json.loads((plan.parent / "m.plan.json").read_text())
    meta["tensorrt_version"] = "1.0.0"
    (tmp_path / "m.plan.json").write_text(json.dumps(meta))
    with pytest.raises(DynconvError, match="TensorRT 1.0.0"):
        Engine(copy, plugins="none")


def test_check_and_bench_cli_on_engine(built, tmp_path, capsys):
    from dynconv.runtime import bench_cli, check_cli

    onnx_path, plan = built
    assert check_cli.main([str(onnx_path), "--engine", str(plan), "--plugins", "none"]) == 0
    assert "tensorrt" in capsys.readouterr().out
    out = tmp_path / "b.json"
    assert bench_cli.main([str(onnx_path), "--engine", str(plan), "--plugins", "none", "--runs", "20",
                           "--warmup", "5", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    trt_row = next(r for r in rows if r["backend"] == "tensorrt")
    assert trt_row["extra"]["gpu_ms"] > 0 and "overhead_us" in trt_row["extra"]
    print(capsys.readouterr().out)


def test_fp32_plan_is_built_without_tf32(built):
    """TensorRT's default TF32 would put the conv in 10-bit mantissas: FP32 builds clear it (--tf32 sets it)."""
    _, plan = built
    meta = json.loads((plan.parent / "m.plan.json").read_text())
    assert meta["precision"] == "fp32" and meta["builder"]["tf32"] is False
