"""Version-gated access to TensorRT 8.5 .. 11: one place that knows which API exists where.

TensorRT is imported lazily so that ``dynconv.runtime`` imports (and the ORT paths run) without it."""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np

from .errors import DynconvError

log = logging.getLogger("dynconv.runtime")

MIN_VERSION = (8, 5)


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or DynconvError saying how to install it."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError as exc:
        raise DynconvError(
            "TensorRT is not installed (import tensorrt failed); install it with "
            "pip install 'dynconv[tensorrt]' or use the onnxruntime backend"
        ) from exc
    if version_tuple(trt.__version__) < MIN_VERSION:
        raise DynconvError(f"TensorRT {trt.__version__} is too old; dynconv needs TensorRT >= 8.5")
    return trt


def version_tuple(version: str) -> tuple[int, ...]:
    """``"8.6.1.post1"`` -> ``(8, 6, 1)``."""
    out = []
    for part in version.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
        if len(digits) < len(part):  # "1rc2", "1+cuda": the rest is a suffix
            break
    return tuple(out)


def major(trt: ModuleType) -> int:
    return version_tuple(trt.__version__)[0]


class _LogBridge:
    """Factory for a ``trt.ILogger`` that forwards TensorRT messages to Python logging."""

    @staticmethod
    def create(trt: ModuleType, verbose: bool = False):
        class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity, msg):  # noqa: A003 - TensorRT's name
                if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                    log.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.WARNING:
                    log.warning("TensorRT: %s", msg)
                elif severity == trt.ILogger.INFO:
                    log.info("TensorRT: %s", msg)
                elif verbose:
                    log.debug("TensorRT: %s", msg)

        return Logger()


_LOGGER = None


def logger(trt: ModuleType):
    """A process-wide TensorRT logger bridged to the ``dynconv.runtime`` Python logger."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = _LogBridge.create(trt, verbose=log.isEnabledFor(logging.DEBUG))
    return _LOGGER


def np_dtype(trt: ModuleType, dtype) -> np.dtype:
    """numpy dtype for a ``trt.DataType`` (BF16 through ml_dtypes when present)."""
    name = str(dtype).rsplit(".", 1)[-1].upper()
    table = {
        "FLOAT": np.float32,
        "HALF": np.float16,
        "INT32": np.int32,
        "INT64": np.int64,
        "INT8": np.int8,
        "UINT8": np.uint8,
        "BOOL": np.bool_,
    }
    if name in table:
        return np.dtype(table[name])
    if name == "BF16":
        from .tensors import parse_dtype  # noqa: PLC0415

        return parse_dtype("bfloat16")
    raise DynconvError(f"TensorRT tensor type {name} has no numpy equivalent")


def network_flags(trt: ModuleType, strongly_typed: bool) -> int:
    """Creation flags: EXPLICIT_BATCH before TensorRT 10 (implicit there), STRONGLY_TYPED when
    asked for and available (TensorRT >= 9; TensorRT 11 builds strongly typed networks only)."""
    flags = 0
    flag_enum = trt.NetworkDefinitionCreationFlag
    if major(trt) < 10 and hasattr(flag_enum, "EXPLICIT_BATCH"):
        flags |= 1 << int(flag_enum.EXPLICIT_BATCH)
    if (strongly_typed or major(trt) >= 11) and hasattr(flag_enum, "STRONGLY_TYPED"):
        flags |= 1 << int(flag_enum.STRONGLY_TYPED)
    return flags


TACTIC_SOURCE_NAMES = ("CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS")


def default_dropped_tactic_sources(trt: ModuleType) -> list[str]:
    """Before TensorRT 10, drop cuBLAS, cuBLASLt and cuDNN tactics: the libraries need not be
    present beside a slim TensorRT install (e.g. the 8.6 test bundle) and builds then fail."""
    return ["CUBLAS", "CUBLAS_LT", "CUDNN"] if major(trt) < 10 else []


def apply_tactic_sources(trt: ModuleType, config, spec: str | None) -> list[str]:
    """Apply a ``--tactic-sources`` value to ``config`` and return the enabled source names.

    ``spec`` is ``None`` (version default), ``default`` (keep TensorRT's), or a comma list of
    ``+NAME``/``-NAME`` edits (a bare ``NAME`` means ``+NAME``) applied to TensorRT's defaults."""
    if not hasattr(config, "set_tactic_sources") or not hasattr(trt, "TacticSource"):
        if spec not in (None, "default"):
            raise DynconvError("this TensorRT version has no tactic-source control; drop --tactic-sources")
        return []
    available = {n: getattr(trt.TacticSource, n) for n in TACTIC_SOURCE_NAMES if hasattr(trt.TacticSource, n)}
    mask = int(config.get_tactic_sources())
    if spec is None:
        edits = [f"-{n}" for n in default_dropped_tactic_sources(trt)]
    elif spec.strip().lower() == "default":
        edits = []
    else:
        edits = [e.strip() for e in spec.split(",") if e.strip()]
    for edit in edits:
        sign, name = (edit[0], edit[1:]) if edit[0] in "+-" else ("+", edit)
        name = name.upper().replace("-", "_")
        if name not in available:
            if name in TACTIC_SOURCE_NAMES and sign == "-":
                continue  # removed in this TensorRT version: nothing to drop
            raise DynconvError(
                f"unknown tactic source {name!r}; this TensorRT knows {sorted(available)}"
            )
        bit = 1 << int(available[name])
        mask = mask | bit if sign == "+" else mask & ~bit
    config.set_tactic_sources(mask)
    return [n for n, v in available.items() if mask & (1 << int(v))]
