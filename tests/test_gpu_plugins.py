"""TensorRT plugin parity on a GPU: engine (trt flavour) vs onnxruntime (reference flavour) vs PyTorch.

Stage 2 of the GPU checks; imports neither torch nor onnxruntime (stage 1 stored their outputs), so it
runs in the slim TensorRT interpreter of .ci/gpu-bundle. Stage 1 (torch, on any machine) writes the
cases: ``python -m dynconv.export.gpu_cases DIR``; then

    DYNCONV_GPU_CASES=DIR python -m pytest -q -m gpu tests/test_gpu_plugins.py

Every op over the parity grid, the mmdeploy / InternImage compat-form graphs, FP32 (TF32 off) and
FP16, one dynamic profile and two run shapes inside it; plus the mixed example network end to end.
DRConv is judged tie-aware (:mod:`dynconv.runtime.drconv_parity`). The rows are the ones
``python -m dynconv.runtime.gpu_check`` reports (:mod:`dynconv.runtime.gpu_parity`). Skips with a
reason without the cases, TensorRT, a CUDA device or the plugin library.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ENV_VAR = "DYNCONV_GPU_CASES"
PRECISIONS = ("fp32", "fp16")


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
OP_CASES = [c for c in CASES if c["kind"] in ("op", "compat")] or [None]
NETWORK_CASES = [c for c in CASES if c["kind"] == "network"] or [None]
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]


def _id(case: dict | None) -> str:
    return case["id"] if case else "no-cases"


def _check_case(tmp_path: Path, case: dict | None, precision: str) -> None:
    """Build the case's engine at ``precision`` and compare it at both run shapes."""
    from dynconv.runtime.gpu_parity import check_case, trt_engine_factory

    if case is None:
        pytest.skip(f"the {ENV_VAR} manifest has no case of this kind")
    root, _ = _cases_dir()
    rows = check_case(root, case, precision, trt_engine_factory(), tmp_path)
    bad = [r for r in rows if not r.passed]
    assert not bad, "\n".join(f"{r.case} {r.precision} run {r.run} {r.input_shapes}: {r.against}: {r.note}"
                               for r in bad)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", OP_CASES, ids=_id)
def test_plugin_matches_onnxruntime_and_pytorch(tmp_path, case, precision):
    _check_case(tmp_path, case, precision)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", NETWORK_CASES, ids=_id)
def test_mixed_example_end_to_end(tmp_path, case, precision):
    _check_case(tmp_path, case, precision)
