"""TensorRT plugin parity on a GPU: engine (trt flavour) vs onnxruntime (reference flavour) vs PyTorch.

Stage 2 of the GPU checks; imports no torch, so it runs in an interpreter that has TensorRT but not
torch. Stage 1 (torch) writes the cases: ``python -m dynconv.export.gpu_cases DIR``; then

    DYNCONV_GPU_CASES=DIR python -m pytest -q -m gpu tests/test_gpu_plugins.py

Every op over the parity grid, FP32 and FP16, one dynamic profile and two run shapes inside it; plus
the mixed example network end to end. Skips with a reason without the cases, TensorRT, a CUDA device
or the plugin library (build it with ``dynconv-build-plugins``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from parity import assert_close_scaled, run_onnxruntime

ENV_VAR = "DYNCONV_GPU_CASES"
PRECISIONS = ("fp32", "fp16")
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}  # max abs error / max |reference|
MIN_COSINE_FP16 = 0.9999


def _cases_dir() -> tuple[Path | None, str | None]:
    value = os.environ.get(ENV_VAR)
    if not value:
        return None, (f"${ENV_VAR} is not set: write the cases with `python -m dynconv.export.gpu_cases DIR` "
                      f"(stage 1, torch) and set {ENV_VAR}=DIR")
    path = Path(value)
    if not (path / "manifest.json").is_file():
        return None, f"{ENV_VAR}={value!r} has no manifest.json: run `python -m dynconv.export.gpu_cases {value}`"
    return path, None


def _skip_reason() -> str | None:
    reasons = []
    _, missing = _cases_dir()
    if missing:
        reasons.append(missing)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        reasons.append("tensorrt is not installed")
    else:
        from dynconv.runtime.device import device_count

        if device_count() == 0:
            reasons.append("no CUDA device (or cuda-python missing)")
    from dynconv.plugins.errors import DynconvError
    from dynconv.plugins.native import find_plugin_library

    try:
        if find_plugin_library() is None:
            reasons.append("plugin library not built (run dynconv-build-plugins)")
    except DynconvError as exc:
        reasons.append(str(exc))
    return "; ".join(reasons) or None


def _manifest_cases() -> list[dict]:
    path, _ = _cases_dir()
    if path is None:
        return []
    return json.loads((path / "manifest.json").read_text())["cases"]


SKIP = _skip_reason()
CASES = _manifest_cases()
OP_CASES = [c for c in CASES if c["kind"] == "op"] or [None]
NETWORK_CASES = [c for c in CASES if c["kind"] == "network"] or [None]
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]


def _id(case: dict | None) -> str:
    return case["id"] if case else "no-cases"


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def _load_npz(path: Path, names: list[str]) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[name] for name in names]


def _check_case(tmp_path: Path, case: dict | None, precision: str) -> None:
    """Build the case's engine at ``precision`` and compare it at both run shapes."""
    import onnx

    from dynconv.runtime import Engine
    from dynconv.runtime.builder import BuildOptions, build

    if case is None:
        pytest.skip(f"the {ENV_VAR} manifest has no case of this kind")
    root, _ = _cases_dir()
    files = case["files"]
    fp16 = precision == "fp16"
    profile = json.loads((root / files["profile"]).read_text())
    shapes = {name: tuple(tuple(p[k]) for k in ("min", "opt", "max")) for name, p in profile.items()}
    plan = tmp_path / f"{case['id']}-{precision}.plan"
    build(BuildOptions(root / files[f"trt_{precision}"], plan, plugins="auto", fp16=fp16, shapes=shapes))
    ref_onnx = onnx.load(root / files["ref"])
    names, outputs = case["input_names"], case["output_names"]
    tol = TOLERANCE[precision]
    with Engine(plan, plugins="auto") as engine:
        for inputs_file, eager_file in zip(files["inputs"], files["eager"]):
            arrays = _load_npz(root / inputs_file, names)
            eager = _load_npz(root / eager_file, outputs)[0]
            feeds = {name: a.astype(np.float16) if fp16 else a for name, a in zip(names, arrays)}
            result = engine.infer(feeds)
            got = (result[outputs[0]] if outputs[0] in result else next(iter(result.values()))).astype(np.float32)
            ref = run_onnxruntime(ref_onnx, arrays)[0]
            where = f"{case['id']} {precision} at input shapes {[a.shape for a in arrays]}"
            _compare(ref, eager, 1e-4, None, f"{where}: onnxruntime reference vs PyTorch eager")
            cosine = MIN_COSINE_FP16 if fp16 else None
            _compare(got, ref, tol, cosine, f"{where}: TensorRT vs onnxruntime")
            _compare(got, eager, tol, cosine, f"{where}: TensorRT vs PyTorch eager")


def _compare(actual: np.ndarray, expected: np.ndarray, tol: float, min_cosine: float | None, what: str) -> None:
    try:
        assert_close_scaled(actual, expected, tol)
        if min_cosine is not None:
            cos = _cosine(actual, expected)
            assert cos >= min_cosine, f"cosine {cos:.6f} < {min_cosine}"
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", OP_CASES, ids=_id)
def test_plugin_matches_onnxruntime_and_pytorch(tmp_path, case, precision):
    _check_case(tmp_path, case, precision)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", NETWORK_CASES, ids=_id)
def test_mixed_example_end_to_end(tmp_path, case, precision):
    _check_case(tmp_path, case, precision)
