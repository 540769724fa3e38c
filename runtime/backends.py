"""One interface over onnxruntime and TensorRT, used by check, bench and serve.

A backend has ``inputs``/``outputs`` (:class:`TensorSpec` lists), ``infer(feeds) -> outputs`` on
numpy arrays by name, ``max_batch`` (largest dim 0 it accepts, None when unbounded) and ``close()``."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import DynconvError

from .tensors import TensorSpec, parse_dtype, validate_feeds

log = logging.getLogger("dynconv.runtime")


class Backend(ABC):
    """Common interface of the inference backends."""

    name: str = "backend"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def batch_dynamic(self) -> bool:
        """True when every input and output has a dynamic dim 0 (requests can be concatenated)."""
        specs = (*self.inputs, *self.outputs)
        return bool(self.inputs) and all(s.batch_dynamic for s in specs)

    @property
    def max_batch(self) -> int | None:
        return None

    def validate(self, feeds: Mapping[str, np.ndarray]) -> None:
        """DynconvError unless ``feeds`` fits the input specs (names, ranks, static dims, dtypes)."""
        validate_feeds(self.inputs, feeds)

    @abstractmethod
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; outputs by name."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def metadata(self) -> dict:
        """I/O description for servers and reports."""
        return {
            "backend": self.name,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "max_batch": self.max_batch,
        }


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(bfloat16)": "bfloat16",
}


def _ort_spec(arg) -> TensorSpec:
    if arg.type not in _ORT_TYPES:
        raise DynconvError(f"tensor {arg.name!r} has unsupported type {arg.type}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, parse_dtype(_ORT_TYPES[arg.type]), shape)


class OrtBackend(Backend):
    """onnxruntime on a reference-flavour ONNX (target='onnx': standard ops only)."""

    def __init__(self, model: str | os.PathLike | bytes, *, providers: list[str] | None = None,
                 threads: int | None = None, cpu_mem_arena: bool = True) -> None:
        """``cpu_mem_arena=False`` frees intermediate buffers after each run instead of keeping them
        in onnxruntime's CPU arena, which only grows (a server's memory then returns near its steady
        state after a large request)."""
        try:
            import onnxruntime as ort  # noqa: PLC0415
        except ImportError as exc:
            raise DynconvError("onnxruntime is not installed: pip install onnxruntime") from exc
        if not isinstance(model, bytes):
            path = Path(model)
            if not path.is_file():
                raise DynconvError(f"ONNX model {str(path)!r} does not exist")
            model = str(path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        opts.enable_cpu_mem_arena = cpu_mem_arena
        available = ort.get_available_providers()
        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in available]
        if missing:
            raise DynconvError(f"onnxruntime provider(s) {missing} not available here (have {available})")
        try:
            self.session = ort.InferenceSession(model, sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            text = str(exc).split("\n")[0]
            hint = ""
            if "dynconv" in text or "custom" in text.lower() or "not a registered" in text:
                hint = " (a TensorRT-flavour ONNX? onnxruntime needs the export with target='onnx')"
            raise DynconvError(f"onnxruntime cannot load the model: {text}{hint}") from exc
        self.providers = providers
        self.name = "ort-cuda" if providers[0] == "CUDAExecutionProvider" else "ort-cpu"
        self.inputs = [_ort_spec(a) for a in self.session.get_inputs()]
        self.outputs = [_ort_spec(a) for a in self.session.get_outputs()]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.validate(feeds)
        try:
            results = self.session.run(self.output_names, dict(feeds))
        except Exception as exc:
            raise DynconvError(f"onnxruntime failed: {str(exc).splitlines()[0]}") from exc
        return dict(zip(self.output_names, results))


class TrtBackend(Backend):
    """TensorRT through :class:`dynconv.runtime.Engine`."""

    name = "tensorrt"

    def __init__(self, plan: str | os.PathLike, **engine_kwargs) -> None:
        from .engine import Engine  # noqa: PLC0415  (TensorRT imported only here)

        self.engine = Engine(plan, **engine_kwargs)
        self.inputs = self.engine.inputs
        self.outputs = self.engine.outputs

    @property
    def max_batch(self) -> int | None:
        return self.engine.metadata.max_batch()

    def validate(self, feeds: Mapping[str, np.ndarray]) -> None:
        super().validate(feeds)
        for spec in self.inputs:
            self.engine.check_shape(spec, tuple(feeds[spec.name].shape))

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.engine.infer(feeds)

    def close(self) -> None:
        self.engine.close()


def open_backend(path: str | os.PathLike, kind: str | None = None, **kwargs) -> Backend:
    """``ort`` for ``.onnx``, ``trt`` for ``.plan``/``.engine`` unless ``kind`` says otherwise."""
    p = Path(path)
    if kind is None:
        kind = "trt" if p.suffix in (".plan", ".engine", ".trt") else "ort"
    if kind == "ort":
        return OrtBackend(p, **kwargs)
    if kind == "ort-cuda":
        return OrtBackend(p, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], **kwargs)
    if kind == "trt":
        return TrtBackend(p, **kwargs)
    raise DynconvError(f"unknown backend {kind!r}; use ort or trt")
