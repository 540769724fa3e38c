"""Which models ``dynconv-serve`` serves: one file, repeated ``NAME=PATH``, or a model directory
(model files directly inside it, named after their stems, and/or Triton's layout
``<name>/<version>/model.onnx|model.plan``, of which the highest version is served)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .backends import Backend, OrtBackend, open_backend
from .errors import DynconvError
from .server import ServedModel

MODEL_SUFFIXES = {".onnx": "ort", ".plan": "trt", ".engine": "trt", ".trt": "trt"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class ModelSource:
    """A model file and the protocol name and version it is served under."""

    name: str
    path: Path
    version: str = "1"


def check_name(name: str) -> str:
    """``name`` unless it is not usable in a URL path segment (letters, digits, ``_ . -``)."""
    if not _NAME.match(name):
        raise DynconvError(f"bad model name {name!r}: use letters, digits, '_', '.' and '-'")
    return name


def _model_file(path: Path) -> Path:
    if not path.is_file():
        raise DynconvError(f"model {str(path)!r} does not exist or is not a file")
    if path.suffix not in MODEL_SUFFIXES:
        raise DynconvError(f"model {str(path)!r}: expected one of {sorted(MODEL_SUFFIXES)}")
    return path


def parse_model_arg(text: str) -> ModelSource:
    """One ``--model NAME=PATH`` value."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise DynconvError(f"bad --model {text!r}: expected NAME=PATH, e.g. --model detector=det.onnx")
    return ModelSource(check_name(name), _model_file(Path(path)))


def _versioned(folder: Path) -> ModelSource | None:
    """Triton's ``<name>/<version>/model.*`` layout: the highest numeric version holding a model."""
    versions = sorted((int(p.name), p) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    for version, vdir in reversed(versions):
        files = [vdir / f"model{suffix}" for suffix in MODEL_SUFFIXES]
        found = [f for f in files if f.is_file()]
        if found:
            return ModelSource(check_name(folder.name), found[0], str(version))
    return None


def scan_directory(folder: Path) -> list[ModelSource]:
    """Every model of a model directory (see the module docstring), sorted by name."""
    if not folder.is_dir():
        raise DynconvError(f"model directory {str(folder)!r} does not exist")
    sources = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.suffix in MODEL_SUFFIXES:
            sources.append(ModelSource(check_name(entry.stem), entry))
        elif entry.is_dir() and not entry.name.startswith("."):
            found = _versioned(entry)
            if found is not None:
                sources.append(found)
    if not sources:
        raise DynconvError(f"no model in {str(folder)!r}: expected *.onnx / *.plan files or "
                           "<name>/<version>/model.onnx|model.plan folders")
    return sources


def model_sources(path: str | None, name: str | None, model_args: Sequence[str]) -> list[ModelSource]:
    """The models a command line names: ``path`` (a file or a model directory) and/or ``--model``s."""
    sources: list[ModelSource] = []
    if path is not None:
        p = Path(path)
        if p.is_dir():
            if name is not None:
                raise DynconvError("--name applies to a single model file, not to a model directory")
            sources += scan_directory(p)
        else:
            sources.append(ModelSource(check_name(name or p.stem), _model_file(p)))
    elif name is not None:
        raise DynconvError("--name needs a model file; with --model give NAME=PATH")
    sources += [parse_model_arg(a) for a in model_args]
    if not sources:
        raise DynconvError("no model given: pass MODEL (a file or a model directory) or --model NAME=PATH")
    return sources


def open_model(source: ModelSource, kind: str | None = None, **trt_options) -> ServedModel:
    """Open one model's backend: onnxruntime (without its grow-only CPU arena) or TensorRT."""
    kind = kind or MODEL_SUFFIXES[source.path.suffix]
    backend: Backend
    if kind in ("ort", "ort-cuda"):
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if kind == "ort-cuda" else None
        backend = OrtBackend(source.path, providers=providers, cpu_mem_arena=False)
    else:
        backend = open_backend(source.path, kind, **trt_options)
    return ServedModel(source.name, backend, source.version)
