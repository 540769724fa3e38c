"""Deploy side of dynconv: TensorRT engines, an onnxruntime reference backend and the tools on top
(build, check, bench, serve, Triton repositories). Needs no torch; TensorRT is imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backends import Backend, OrtBackend, TrtBackend, open_backend
    from .engine import Engine
    from .metadata import EngineMetadata
    from .tensors import TensorSpec

__all__ = ["Backend", "Engine", "EngineMetadata", "OrtBackend", "TensorSpec", "TrtBackend", "open_backend"]

_LAZY = {
    "Backend": "backends",
    "OrtBackend": "backends",
    "TrtBackend": "backends",
    "open_backend": "backends",
    "Engine": "engine",
    "EngineMetadata": "metadata",
    "TensorSpec": "tensors",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
