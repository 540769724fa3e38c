"""Error metrics between a candidate and a reference output, and the inputs the checks feed."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DynconvError
from .tensors import TensorSpec, concrete_shape, random_inputs


@dataclass(frozen=True)
class Metrics:
    """``max_abs``: max |a - r|; ``rel``: max_abs / max |r|; ``cosine``: cosine similarity."""

    max_abs: float
    rel: float
    cosine: float
    shape_ok: bool = True

    def passes(self, tol: float) -> bool:
        return self.shape_ok and np.isfinite(self.max_abs) and self.rel <= tol


def compare(actual: np.ndarray, reference: np.ndarray) -> Metrics:
    """Metrics of ``actual`` against ``reference`` (computed in float64; NaN/inf fail)."""
    a = np.asarray(actual)
    r = np.asarray(reference)
    if a.shape != r.shape:
        return Metrics(float("inf"), float("inf"), float("nan"), shape_ok=False)
    a64 = a.astype(np.float64).ravel()
    r64 = r.astype(np.float64).ravel()
    if a64.size == 0:
        return Metrics(0.0, 0.0, 1.0)
    diff = np.abs(a64 - r64)
    max_abs = float(np.max(diff)) if np.all(np.isfinite(diff)) else float("inf")
    scale = float(np.max(np.abs(r64)))
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    na, nr = float(np.linalg.norm(a64)), float(np.linalg.norm(r64))
    if na == 0 and nr == 0:
        cosine = 1.0
    elif na == 0 or nr == 0 or not np.isfinite(na * nr):
        cosine = 0.0
    else:
        cosine = float(np.dot(a64, r64) / (na * nr))
    return Metrics(max_abs, rel, cosine)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file by name; DynconvError for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise DynconvError(f"input file {str(p)!r} does not exist")
    return decode_npz(p.read_bytes(), what=repr(str(p)))


def decode_npz(data: bytes, what: str = "body") -> dict[str, np.ndarray]:
    """Arrays of npz bytes (no pickles); DynconvError when they are not a valid npz."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise DynconvError(f"{what} is a single .npy array, not an .npz archive of named arrays")
            return {name: npz[name] for name in npz.files}
    except DynconvError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DynconvError(f"{what} is not a valid .npz archive: {exc}") from exc


def encode_npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def make_inputs(
    specs: Sequence[TensorSpec],
    shapes: Mapping[str, Sequence[tuple[int, ...]]],
    *,
    seed: int = 0,
    fallback: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """Seeded random inputs: a ``--shapes`` value (its opt entry when three are given), else
    ``fallback`` (e.g. the engine profile's opt shape), else the static shape."""
    unknown = sorted(set(shapes) - {s.name for s in specs})
    if unknown:
        raise DynconvError(f"--shapes names unknown input(s) {unknown}; inputs are {[s.name for s in specs]}")
    concrete = {}
    for spec in specs:
        given = shapes.get(spec.name)
        chosen = given[len(given) // 2] if given else (fallback or {}).get(spec.name)
        concrete[spec.name] = concrete_shape(spec, tuple(chosen) if chosen is not None else None)
    return random_inputs(specs, concrete, seed)
