"""Tiny ONNX models built with onnx.helper for the runtime tests (no torch, no exporter), plus
checks of the shared helpers they rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def conv_relu(path: Path, *, channels: int = 3, out_channels: int = 4, dynamic: bool = True,
              seed: int = 0, dtype=np.float32, bias_shift: float = 0.0) -> Path:
    """``y = relu(conv3x3(x, W, b))`` with x ``[N, C, H, W]`` (N/H/W dynamic when ``dynamic``)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((out_channels, channels, 3, 3)).astype(dtype)
    b = (rng.standard_normal(out_channels) + bias_shift).astype(dtype)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    in_shape = ["N", channels, "H", "W"] if dynamic else [2, channels, 8, 8]
    out_shape = ["N", out_channels, "H", "W"] if dynamic else [2, out_channels, 8, 8]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])],
        "conv_relu",
        [helper.make_tensor_value_info("x", elem, in_shape)],
        [helper.make_tensor_value_info("y", elem, out_shape)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_relu_numpy(x: np.ndarray, path: Path) -> np.ndarray:
    """Independent numpy evaluation of :func:`conv_relu`'s model (reads its weights)."""
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    w, b = init["w"].astype(np.float64), init["b"].astype(np.float64)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    n, _, h, wd = x.shape
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return np.maximum(out + b[None, :, None, None], 0)


def write_fake_plan(folder: Path, *, batch_max: int = 8, with_plugin: bool = True, dtype: str = "float32",
                    dynamic_batch: bool = True) -> Path:
    """A dummy plan plus the metadata JSON dynconv-build would write beside it."""
    from dynconv.runtime.metadata import EngineMetadata, Profile, metadata_path_for
    from dynconv.runtime.tensors import TensorSpec, parse_dtype

    plan = folder / "model.plan"
    plan.write_bytes(b"not really a plan")
    n = None if dynamic_batch else 1
    dt = parse_dtype(dtype)
    meta = EngineMetadata(
        tensorrt_version="8.6.1",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        precision="fp16" if dtype == "float16" else "fp32",
        inputs=[TensorSpec("x", dt, (n, 3, None, None))],
        outputs=[TensorSpec("y", dt, (n, 4, None, None)), TensorSpec("idx", np.dtype(np.int32), (n, 4))],
        profiles=[Profile({"x": {"min": [1, 3, 16, 16], "opt": [4, 3, 64, 64], "max": [batch_max, 3, 128, 128]}})]
        if dynamic_batch else [Profile({"x": {"min": [1, 3, 16, 16], "opt": [1, 3, 64, 64], "max": [1, 3, 128, 128]}})],
        plugin_library="/opt/dynconv/libdynconv_plugins.so" if with_plugin else None,
        plugin_sha256="ab" * 32 if with_plugin else None,
    )
    meta.save(metadata_path_for(plan))
    return plan


def test_conv_relu_model_matches_numpy(tmp_path):
    import onnxruntime as ort

    path = conv_relu(tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 7)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    np.testing.assert_allclose(y, conv_relu_numpy(x, path), rtol=1e-4, atol=1e-4)
