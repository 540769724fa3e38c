"""The JSON written beside every plan: what it was built with, and the checks run before loading it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DynconvError

from .tensors import TensorSpec

log = logging.getLogger("dynconv.runtime")

FORMAT = "dynconv-engine-metadata"
FORMAT_VERSION = 1


def metadata_path_for(plan: str | os.PathLike) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    p = Path(plan)
    return p.with_name(p.name + ".json")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Profile:
    """One optimization profile: per input name, the min/opt/max shapes."""

    shapes: dict[str, dict[str, list[int]]]  # name -> {"min": [...], "opt": [...], "max": [...]}

    def range_of(self, name: str) -> tuple[list[int], list[int], list[int]] | None:
        entry = self.shapes.get(name)
        if entry is None:
            return None
        return entry["min"], entry["opt"], entry["max"]


@dataclass
class EngineMetadata:
    """Everything needed to refuse a plan cleanly instead of crashing inside TensorRT."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.6"
    precision: str  # "fp32" | "fp16" | "strongly-typed"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    profiles: list[Profile] = field(default_factory=list)
    plugin_library: str | None = None
    plugin_sha256: str | None = None
    onnx_sha256: str | None = None
    builder: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tensorrt_version": self.tensorrt_version,
            "gpu": {"name": self.gpu_name, "compute_capability": self.compute_capability},
            "precision": self.precision,
            "plugin_library": {"path": self.plugin_library, "sha256": self.plugin_sha256}
            if self.plugin_library or self.plugin_sha256
            else None,
            "onnx_sha256": self.onnx_sha256,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "profiles": [p.shapes for p in self.profiles],
            "builder": self.builder,
        }

    @staticmethod
    def from_json(obj: dict) -> "EngineMetadata":
        if obj.get("format") != FORMAT:
            raise DynconvError("not a dynconv engine metadata file (missing \"format\": \"dynconv-engine-metadata\")")
        if int(obj.get("format_version", 0)) > FORMAT_VERSION:
            raise DynconvError(
                f"engine metadata format version {obj.get('format_version')} is newer than this dynconv "
                f"understands ({FORMAT_VERSION}); upgrade dynconv"
            )
        try:
            plugin = obj.get("plugin_library") or {}
            return EngineMetadata(
                tensorrt_version=str(obj["tensorrt_version"]),
                gpu_name=str(obj["gpu"]["name"]),
                compute_capability=str(obj["gpu"]["compute_capability"]),
                precision=str(obj.get("precision", "fp32")),
                inputs=[TensorSpec.from_json(t) for t in obj["inputs"]],
                outputs=[TensorSpec.from_json(t) for t in obj["outputs"]],
                profiles=[Profile(dict(p)) for p in obj.get("profiles", [])],
                plugin_library=plugin.get("path"),
                plugin_sha256=plugin.get("sha256"),
                onnx_sha256=obj.get("onnx_sha256"),
                builder=dict(obj.get("builder", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DynconvError(f"engine metadata is malformed: missing or bad field {exc}") from exc

    def save(self, path: str | os.PathLike) -> None:
        from ._cli import atomic_write_text  # noqa: PLC0415

        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @staticmethod
    def load(path: str | os.PathLike) -> "EngineMetadata":
        p = Path(path)
        if not p.is_file():
            raise DynconvError(
                f"engine metadata {str(p)!r} not found; it is written by dynconv-build beside the plan "
                "(rebuild the engine with dynconv-build)"
            )
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DynconvError(f"engine metadata {str(p)!r} is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise DynconvError(f"engine metadata {str(p)!r} is not a JSON object")
        return EngineMetadata.from_json(obj)

    def input_range(self, name: str, profile: int = 0) -> tuple[list[int], list[int], list[int]] | None:
        """min/opt/max of input ``name`` in ``profile``; None when the input's shape is static."""
        if profile >= len(self.profiles):
            return None
        return self.profiles[profile].range_of(name)

    def max_batch(self, profile: int = 0) -> int | None:
        """The largest dim 0 all inputs accept when every input's batch dim is dynamic, else None."""
        if not self.inputs or not all(s.batch_dynamic for s in self.inputs):
            return None
        highs = []
        for spec in self.inputs:
            rng = self.input_range(spec.name, profile)
            if rng is None:
                return None
            highs.append(rng[2][0])
        return min(highs)


def check_compatible(
    meta: EngineMetadata,
    *,
    tensorrt_version: str,
    compute_capability: str | None,
    gpu_name: str | None,
    plugin_sha256: str | None,
) -> None:
    """Raise DynconvError when the plan was built for another TensorRT, GPU or plugin library."""
    if meta.tensorrt_version != tensorrt_version:
        raise DynconvError(
            f"the plan was built with TensorRT {meta.tensorrt_version} but TensorRT {tensorrt_version} is "
            "installed; plans only load in the TensorRT version that built them: rebuild with dynconv-build"
        )
    if compute_capability is not None and meta.compute_capability != compute_capability:
        raise DynconvError(
            f"the plan was built for a GPU of compute capability {meta.compute_capability} "
            f"({meta.gpu_name}) but this GPU is {compute_capability} ({gpu_name}); rebuild on this GPU"
        )
    if gpu_name is not None and meta.gpu_name != gpu_name:
        log.warning("plan built on %s, running on %s (same compute capability)", meta.gpu_name, gpu_name)
    if meta.plugin_sha256 is not None:
        if plugin_sha256 is None:
            raise DynconvError(
                "the plan uses the dynconv plugin library but none was found: pass its path or set DYNCONV_PLUGIN_LIB"
            )
        if plugin_sha256 != meta.plugin_sha256:
            raise DynconvError(
                "the plugin library differs from the one the plan was built with "
                f"(sha256 {plugin_sha256[:12]}... vs {meta.plugin_sha256[:12]}...); "
                "rebuild the plan with dynconv-build against this library"
            )
    elif plugin_sha256 is not None:
        log.debug("plan was built without a plugin library; loading one anyway")

