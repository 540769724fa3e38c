"""OrtBackend, tensor specs, feed validation, shape parsing, metrics, metadata, import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_runtime_models import conv_relu, conv_relu_numpy, write_fake_plan

from dynconv.plugins.errors import DynconvError
from dynconv.runtime import OrtBackend, open_backend
from dynconv.runtime.compare import compare, decode_npz, encode_npz, make_inputs
from dynconv.runtime.metadata import EngineMetadata, check_compatible, metadata_path_for
from dynconv.runtime.tensors import TensorSpec, parse_shape_arg, parse_shape_args


def test_ort_backend_specs_and_infer(tmp_path):
    path = conv_relu(tmp_path / "m.onnx")
    b = OrtBackend(path)
    assert b.name == "ort-cpu"
    assert b.inputs == [TensorSpec("x", np.dtype(np.float32), (None, 3, None, None))]
    assert b.output_names == ["y"] and b.batch_dynamic
    for shape in [(1, 3, 8, 8), (3, 3, 5, 11)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        y = b.infer({"x": x})["y"]
        assert y.shape == (shape[0], 4, shape[2], shape[3])
        np.testing.assert_allclose(y, conv_relu_numpy(x, path), rtol=1e-4, atol=1e-4)
    assert open_backend(path).name == "ort-cpu"


@pytest.mark.parametrize(
    "feeds, message",
    [
        ({"z": np.zeros((1, 3, 4, 4), np.float32)}, "unknown input"),
        ({}, "missing input"),
        ({"x": np.zeros((3, 4, 4), np.float32)}, "rank"),
        ({"x": np.zeros((1, 2, 4, 4), np.float32)}, "dim 1 must be 3"),
        ({"x": np.zeros((1, 3, 4, 4), np.float64)}, "dtype float64"),
    ],
)
def test_ort_backend_rejects_bad_feeds(tmp_path, feeds, message):
    b = OrtBackend(conv_relu(tmp_path / "m.onnx"))
    with pytest.raises(DynconvError, match=message):
        b.infer(feeds)


def test_ort_backend_errors(tmp_path):
    with pytest.raises(DynconvError, match="does not exist"):
        OrtBackend(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(DynconvError, match="onnxruntime cannot load"):
        OrtBackend(bad)
    with pytest.raises(DynconvError, match="not available"):
        OrtBackend(conv_relu(tmp_path / "m.onnx"), providers=["NoSuchExecutionProvider"])


def test_shape_parsing():
    assert parse_shape_arg("x:1x3x32x32") == ("x", [(1, 3, 32, 32)])
    assert parse_shape_arg("in:0:1x3x8x8,2x3x16x16,4x3x32x32")[0] == "in:0"
    assert parse_shape_args(["a:1x2", "b:1x2,2x2,3x2"]) == {"a": [(1, 2)], "b": [(1, 2), (2, 2), (3, 2)]}
    for bad in ["x", "x:", ":1x2", "x:1xax3", "x:1x2,2x2", "x:4x3,2x3,8x3", "x:1x2,1x2x3,1x2"]:
        with pytest.raises(DynconvError):
            parse_shape_arg(bad)
    with pytest.raises(DynconvError, match="twice"):
        parse_shape_args(["x:1x2", "x:1x3"])


def test_make_inputs_seeded_and_shape_rules(tmp_path):
    specs = [TensorSpec("x", np.dtype(np.float32), (None, 3, None, None)), TensorSpec("k", np.dtype(np.int64), (2,))]
    a = make_inputs(specs, {"x": [(2, 3, 4, 5)]}, seed=3)
    b = make_inputs(specs, {"x": [(2, 3, 4, 5)]}, seed=3)
    c = make_inputs(specs, {"x": [(2, 3, 4, 5)]}, seed=4)
    assert a["x"].shape == (2, 3, 4, 5) and a["x"].dtype == np.float32 and a["k"].dtype == np.int64
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])
    assert make_inputs(specs, {"x": [(1, 3, 2, 2), (2, 3, 4, 4), (4, 3, 8, 8)]})["x"].shape == (2, 3, 4, 4)
    assert make_inputs(specs, {}, fallback={"x": (1, 3, 6, 6)})["x"].shape == (1, 3, 6, 6)
    with pytest.raises(DynconvError, match="--shapes x:"):
        make_inputs(specs, {})
    with pytest.raises(DynconvError, match="does not fit"):
        make_inputs(specs, {"x": [(2, 4, 4, 5)]})
    with pytest.raises(DynconvError, match="unknown"):
        make_inputs(specs, {"q": [(1,)]})


def test_compare_metrics():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 5))
    m = compare(ref, ref)
    assert m.max_abs == 0 and m.rel == 0 and m.cosine == pytest.approx(1.0) and m.passes(1e-6)
    noisy = ref + 1e-3
    m = compare(noisy, ref)
    assert m.max_abs == pytest.approx(1e-3) and m.rel == pytest.approx(1e-3 / np.abs(ref).max())
    assert m.passes(1e-2) and not m.passes(1e-5)
    assert compare(-ref, ref).cosine == pytest.approx(-1.0)
    assert not compare(ref[:2], ref).passes(1.0)
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert not compare(bad, ref).passes(1.0)


def test_npz_codec_roundtrip_and_errors():
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.array([1, 2], np.int64)}
    back = decode_npz(encode_npz(arrays))
    assert set(back) == {"x", "i"} and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    with pytest.raises(DynconvError, match="not a valid .npz"):
        decode_npz(b"PK\x03\x04 broken zip")
    with pytest.raises(DynconvError):
        decode_npz(b"hello")


def test_metadata_roundtrip_and_compatibility(tmp_path):
    plan = write_fake_plan(tmp_path)
    path = metadata_path_for(plan)
    assert path.name == "model.plan.json"
    meta = EngineMetadata.load(path)
    assert meta.inputs[0].shape == (None, 3, None, None) and meta.max_batch() == 8
    assert meta.input_range("x")[2] == [8, 3, 128, 128]
    again = EngineMetadata.from_json(json.loads(json.dumps(meta.to_json())))
    assert again == meta
    ok = dict(tensorrt_version="8.6.1", compute_capability="9.0", gpu_name="NVIDIA H100 80GB HBM3",
              plugin_sha256="ab" * 32)
    check_compatible(meta, **ok)
    for change, msg in [({"tensorrt_version": "10.3.0"}, "TensorRT 8.6.1"),
                        ({"compute_capability": "8.6"}, "compute capability 9.0"),
                        ({"plugin_sha256": "cd" * 32}, "plugin library differs"),
                        ({"plugin_sha256": None}, "none was found")]:
        with pytest.raises(DynconvError, match=msg):
            check_compatible(meta, **{**ok, **change})
    path.write_text("{not json")
    with pytest.raises(DynconvError, match="not valid JSON"):
        EngineMetadata.load(path)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(DynconvError, match="not a dynconv"):
        EngineMetadata.load(path)
    with pytest.raises(DynconvError, match="dynconv-build"):
        EngineMetadata.load(tmp_path / "none.plan.json")


def test_dlpack_view_of_host_array():
    from dynconv.runtime.device import from_dlpack, view_of

    a = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    v = from_dlpack(a)
    assert v.ptr == a.ctypes.data and v.shape == (2, 3, 4) and v.dtype == np.float16 and not v.on_device
    with pytest.raises(DynconvError, match="contiguous"):
        from_dlpack(np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2])
    assert view_of(a) is a


def test_runtime_imports_without_torch_or_tensorrt():
    code = (
        "import sys\n"
        "import dynconv.runtime as r\n"
        "from dynconv.runtime import backends, engine, builder, build_cli, check_cli, bench_cli, serve_cli, "
        "triton_cli, server, batching, triton, device\n"
        "r.Engine, r.OrtBackend\n"
        "bad = [m for m in ('torch', 'tensorrt') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "from dynconv.runtime.errors import DynconvError as A\n"
        "from dynconv.plugins.errors import DynconvError as B\n"
        "assert A is B\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
