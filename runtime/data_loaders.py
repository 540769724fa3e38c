"""Input feeds for ``dynconv-check`` from polygraphy data loaders, materialized as a list of feed
dicts (itself a polygraphy data loader) so every runner sees the same arrays and they can be saved.

Sources: polygraphy's synthetic ``DataLoader`` (the same arrays ``polygraphy run`` feeds for the same
seed and shapes), a polygraphy inputs JSON (``polygraphy run --save-inputs``), a polygraphy data
loader script (``file.py[:function]``), or an ``.npz`` of named arrays (one iteration)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from . import _polygraphy
from ._cli import atomic_write_text, require_file
from .compare import load_npz
from .errors import DynconvError
from .tensors import TensorSpec, validate_feeds

Feed = dict[str, np.ndarray]
DEFAULT_SCRIPT_FUNCTION = "load_data"  # polygraphy's default for --data-loader-script


def synthetic_feeds(specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[int, ...]], *, seed: int,
                    iterations: int, val_range: tuple[float, float] | None = None) -> list[Feed]:
    """``iterations`` feeds from polygraphy's ``DataLoader`` (uniform in ``val_range``, polygraphy's
    default (0, 1) when None) at the given concrete shapes, in the specs' input order."""
    from polygraphy.comparator import DataLoader  # noqa: PLC0415
    from polygraphy.common import TensorMetadata  # noqa: PLC0415

    if iterations < 1:
        raise DynconvError("--iterations must be >= 1")
    meta = TensorMetadata()
    for spec in specs:
        meta.add(spec.name, dtype=spec.dtype, shape=list(shapes[spec.name]))
    with _polygraphy.session():
        loader = DataLoader(seed=seed, iterations=iterations, input_metadata=meta, val_range=val_range)
        loader.input_metadata = meta  # what Comparator.run would set from the first runner
        return [_as_feed(feed, f"synthetic feed {i}") for i, feed in enumerate(loader)]


def load_feeds(path: str | os.PathLike) -> list[Feed]:
    """Feeds from a polygraphy inputs JSON (a list of ``{name: array}``), or one feed from an .npz."""
    p = require_file(path, "inputs file")
    if p.suffix == ".npz":
        return [load_npz(p)]
    from polygraphy.json import load_json  # noqa: PLC0415

    try:
        with _polygraphy.session():
            data = load_json(str(p))
    except (ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise DynconvError(f"{str(p)!r} is not a polygraphy inputs JSON: {_polygraphy.first_line(str(exc))}") from exc
    if not isinstance(data, list) or not data:
        raise DynconvError(f"{str(p)!r} is not a polygraphy inputs JSON (a non-empty list of feed dicts)")
    return [_as_feed(feed, f"{str(p)!r} iteration {i}") for i, feed in enumerate(data)]


def script_feeds(spec: str) -> list[Feed]:
    """Feeds from a polygraphy data loader script: ``file.py[:function]`` (default ``load_data``),
    a function returning an iterable of feed dicts (or the iterable itself)."""
    from polygraphy import mod  # noqa: PLC0415

    path, _, name = spec.partition(":")
    require_file(path, "data loader script")
    name = name or DEFAULT_SCRIPT_FUNCTION
    try:
        with _polygraphy.session():
            loader = mod.import_from_script(str(Path(path).resolve()), name)
            data = loader() if callable(loader) else loader
            feeds = [_as_feed(feed, f"{spec} item {i}") for i, feed in enumerate(_iterate(data, spec))]
    except DynconvError:
        raise
    except Exception as exc:  # user code: any failure becomes one line
        raise DynconvError(f"data loader script {spec!r} failed: {type(exc).__name__}: "
                           f"{_polygraphy.first_line(str(exc))}") from exc
    if not feeds:
        raise DynconvError(f"data loader script {spec!r} yielded no feeds")
    return feeds


def save_feeds(feeds: Sequence[Mapping[str, np.ndarray]], path: str | os.PathLike) -> None:
    """Write ``feeds`` as a polygraphy inputs JSON (``polygraphy run --load-inputs`` reads it)."""
    from polygraphy.json.serde import to_json, try_register_common_json  # noqa: PLC0415

    with _polygraphy.session():  # to_json needs polygraphy's numpy encoder registered first
        text = try_register_common_json(to_json)([OrderedDict(feed) for feed in feeds])
    atomic_write_text(path, text)


def validate_all(specs: Sequence[TensorSpec], feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
    """DynconvError naming the iteration when a feed does not fit the inputs."""
    for i, feed in enumerate(feeds):
        try:
            validate_feeds(specs, feed)
        except DynconvError as exc:
            raise DynconvError(f"iteration {i}: {exc}" if len(feeds) > 1 else str(exc)) from exc


def _iterate(data, spec: str) -> Iterable:
    if isinstance(data, Mapping) or not isinstance(data, Iterable):
        raise DynconvError(f"data loader script {spec!r} must give an iterable of feed dicts, "
                           f"got {type(data).__name__}")
    return data


def _as_feed(feed, what: str) -> Feed:
    if not isinstance(feed, Mapping) or not all(isinstance(k, str) for k in feed):
        raise DynconvError(f"{what} is not a dict of input name -> array")
    out = {}
    for name, arr in feed.items():
        if not isinstance(arr, np.ndarray):
            raise DynconvError(f"{what}: input {name!r} is a {type(arr).__name__}, not a numpy array")
        out[name] = arr
    return out
