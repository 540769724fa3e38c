"""Native libraries: locate the TensorRT plugin library; run ops through the C++ CPU reference.

``find_plugin_library`` resolves ``libdynconv_plugins.so`` (explicit path > $DYNCONV_PLUGIN_LIB >
``build/plugins`` under the repository). ``run_reference`` runs an op through
``libdynconv_cpuref.so`` (the same per-output math the CUDA kernels use), building it on demand.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import DynconvError

ENV_VAR = "DYNCONV_PLUGIN_LIB"
CPUREF_ENV_VAR = "DYNCONV_CPUREF_LIB"
PLUGIN_LIB_NAME = "libdynconv_plugins.so"
CPUREF_LIB_NAME = "libdynconv_cpuref.so"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUILD_DIR = REPO_ROOT / "build" / "plugins"
CPUREF_BUILD_DIR = REPO_ROOT / "build" / "cpuref"

# ValueType of common/fields.h
_INT32, _FLOAT32, _FLOAT64, _CHAR = 0, 1, 2, 3
_lock = threading.Lock()
_cpuref: ctypes.CDLL | None = None


def find_plugin_library(explicit: str | os.PathLike | None = None) -> Path | None:
    """The plugin library: ``explicit`` > $DYNCONV_PLUGIN_LIB > the default build dir; None if not built.

    An explicit path or environment value that does not exist raises DynconvError.
    """
    for value, what in ((explicit, "plugin library"), (os.environ.get(ENV_VAR), ENV_VAR)):
        if value:
            path = Path(value)
            if not path.is_file():
                raise DynconvError(f"{what} {str(path)!r} does not exist; build it with dynconv-build-plugins")
            return path.resolve()
    default = DEFAULT_BUILD_DIR / PLUGIN_LIB_NAME
    return default if default.is_file() else None


class FieldArray:
    """A ctypes array of ``dynconv::FieldValue`` built from an attribute dict (keeps buffers alive)."""

    class FieldValue(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_int), ("data", ctypes.c_void_p),
                    ("length", ctypes.c_int32)]

    def __init__(self, attrs: Mapping[str, Any]):
        self._keep: list[Any] = []
        items = []
        for name, value in attrs.items():
            if isinstance(value, str):
                buf = ctypes.create_string_buffer(value.encode())
                items.append((name, _CHAR, buf, len(value)))
            elif isinstance(value, float):
                buf = (ctypes.c_float * 1)(value)
                items.append((name, _FLOAT32, buf, 1))
            elif isinstance(value, np.ndarray) and value.dtype == np.float64:
                buf = (ctypes.c_double * value.size)(*value.tolist())
                items.append((name, _FLOAT64, buf, value.size))
            else:
                vals = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
                buf = (ctypes.c_int32 * len(vals))(*[int(v) for v in vals])
                items.append((name, _INT32, buf, len(vals)))
        self.array = (self.FieldValue * max(1, len(items)))()
        for k, (name, typ, buf, n) in enumerate(items):
            nb = name.encode()
            self._keep += [nb, buf]
            self.array[k] = self.FieldValue(nb, typ, ctypes.cast(buf, ctypes.c_void_p), n)
        self.count = len(items)


def build_cpuref(build_dir: Path = CPUREF_BUILD_DIR) -> Path:
    """Configure and build ``libdynconv_cpuref.so`` (g++ only); returns its path."""
    from .build import _run, configure_and_build  # noqa: PLC0415

    if (Path(build_dir) / "CMakeCache.txt").is_file():  # incremental: re-runs the codegen, re-globs sources
        _run(["cmake", "--build", str(build_dir), "--target", "dynconv_cpuref", "-j", str(os.cpu_count() or 4)],
             "CMake build")
    else:
        configure_and_build(build_dir, cpu_reference_only=True, targets=["dynconv_cpuref"])
    return build_dir / CPUREF_LIB_NAME


def cpuref_library(build: bool = True) -> ctypes.CDLL:
    """Load (building once if missing) the CPU reference library."""
    global _cpuref
    with _lock:
        if _cpuref is None:
            env = os.environ.get(CPUREF_ENV_VAR)
            path = Path(env) if env else CPUREF_BUILD_DIR / CPUREF_LIB_NAME
            if env and not path.is_file():
                raise DynconvError(f"{CPUREF_ENV_VAR}={env!r} does not exist")
            if not env and build:
                path = build_cpuref()  # incremental, so the tables follow spec edits
            if not path.is_file():
                raise DynconvError(f"CPU reference library {str(path)!r} not found; run dynconv-build-plugins --cpu-reference-only")
            lib = ctypes.CDLL(str(path))
            lib.dynconv_cpuref_tables_json.restype = ctypes.c_char_p
            lib.dynconv_cpuref_run.restype = ctypes.c_int
            lib.dynconv_cpuref_check_fields.restype = ctypes.c_int
            _cpuref = lib
        return _cpuref


def op_tables() -> list[dict]:
    """The generated C++ op tables as seen by the CPU reference library."""
    return json.loads(cpuref_library().dynconv_cpuref_tables_json().decode())


def check_fields(op_name: str, attrs: Mapping[str, Any]) -> bytes:
    """Validate ``attrs`` in C++ exactly as a plugin creator would; return the serialized blob."""
    lib = cpuref_library()
    fields = FieldArray(attrs)
    err = ctypes.create_string_buffer(1024)
    blob = ctypes.create_string_buffer(65536)
    n = lib.dynconv_cpuref_check_fields(op_name.encode(), fields.array, fields.count, blob, len(blob), err, len(err))
    if n < 0:
        raise DynconvError(err.value.decode())
    return blob.raw[:n]


class InputArrays:
    """Inputs as the C API takes them: FP32 contiguous copies (kept alive here), their pointers, ranks
    and dims (8 slots per input); ``None`` marks an absent input."""

    def __init__(self, op_name: str, inputs: Sequence[np.ndarray | None]):
        self.arrays = [None if a is None else np.ascontiguousarray(a, dtype=np.float32) for a in inputs]
        self.count = n = len(self.arrays)
        self.ptrs = (ctypes.c_void_p * max(1, n))(*[None if a is None else a.ctypes.data for a in self.arrays])
        self.ranks = (ctypes.c_int * max(1, n))(*[0 if a is None else a.ndim for a in self.arrays])
        self.dims = (ctypes.c_int64 * (8 * max(1, n)))()
        for k, a in enumerate(self.arrays):
            if a is not None:
                if a.ndim > 8:
                    raise DynconvError(f"{op_name}: input {k} has more than 8 dims")
                for d, size in enumerate(a.shape):
                    self.dims[8 * k + d] = size


def run_reference(op_name: str, inputs: Sequence[np.ndarray | None], attrs: Mapping[str, Any],
                  fp16_io: bool = False) -> np.ndarray:
    """Run ``op_name`` (plugin or torch name) on the CPU through the C++ math (FP32 accumulation).

    ``attrs`` are field values as a plugin creator receives them (``with_<name>`` flags included
    for optional inputs; absent fields take the spec default). ``None`` marks an absent input.
    ``fp16_io`` runs the algorithm the GPU runs for FP16 engines (e.g. DCN's tensor-core path, which
    rounds the bilinear samples to FP16); the inputs should then hold FP16-representable values.
    """
    lib = cpuref_library()
    fields = FieldArray(attrs)
    packed = InputArrays(op_name, inputs)
    n, ptrs, ranks, dims = packed.count, packed.ptrs, packed.ranks, packed.dims
    out_dims = (ctypes.c_int64 * 8)()
    out_rank = ctypes.c_int(0)
    err = ctypes.create_string_buffer(1024)
    args = (op_name.encode(), fields.array, fields.count, n, ptrs, ranks, dims, ctypes.c_int(int(fp16_io)))
    if lib.dynconv_cpuref_run(*args, None, out_dims, ctypes.byref(out_rank), err, len(err)) != 0:
        raise DynconvError(err.value.decode())
    out = np.empty(tuple(out_dims[: out_rank.value]), dtype=np.float32)
    out_ptr = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    if lib.dynconv_cpuref_run(*args, out_ptr, out_dims, ctypes.byref(out_rank), err, len(err)) != 0:
        raise DynconvError(err.value.decode())
    return out


def build_plugin_library(build_dir: str | os.PathLike = DEFAULT_BUILD_DIR, tensorrt_root: str | os.PathLike | None = None,
                         archs: Sequence[str] | None = None) -> Path:
    """Configure + build ``libdynconv_plugins.so`` (incremental when ``build_dir`` exists)."""
    from .build import find_tensorrt, configure_and_build  # noqa: PLC0415

    root = tensorrt_root or find_tensorrt()
    if root is None:
        raise DynconvError("TensorRT not found: set TENSORRT_ROOT or pass tensorrt_root")
    configure_and_build(build_dir, tensorrt_root=root, archs=archs)
    lib = Path(build_dir) / PLUGIN_LIB_NAME
    if not lib.is_file():
        raise DynconvError(f"build finished without {lib}")
    return lib
