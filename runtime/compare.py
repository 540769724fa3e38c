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
from .tensors import TensorSpec, random_inputs, resolve_shapes


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


@dataclass(frozen=True)
class TieAwareMetrics(Metrics):
    """Metrics where a discontinuous choice (DRConv's argmax region) may legitimately differ.

    ``max_abs``/``rel``/``cosine`` cover the values the choice cannot move (``rel`` against the
    whole reference's scale); a value the choice moves may also be off by as much as the choice
    moves it (``flipped_reference`` - ``reference``): such values count as flipped, and
    ``flipped_fraction`` (share of all values) must stay within ``max_flipped_fraction``."""

    unstable_fraction: float = 0.0
    flipped_fraction: float = 0.0
    max_flipped_fraction: float = 0.0
    beyond_allowance: int = 0  # influenced values off by more than tolerance + the flip's own change

    def passes(self, tol: float) -> bool:
        return (super().passes(tol) and self.beyond_allowance == 0
                and self.flipped_fraction <= self.max_flipped_fraction)


def compare_tie_aware(actual: np.ndarray, reference: np.ndarray, flipped_reference: np.ndarray, tol: float,
                      max_flipped_fraction: float) -> TieAwareMetrics:
    """Compare like :func:`compare` on the values that ``flipped_reference`` (the reference with every
    near-tie region switched to its runner-up) leaves unchanged; the values it changes may deviate by
    ``tol * scale`` plus that change, and those needing more than ``tol * scale`` count as flipped."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    f = np.asarray(flipped_reference, dtype=np.float64)
    if a.shape != r.shape or f.shape != r.shape:
        return TieAwareMetrics(float("inf"), float("inf"), float("nan"), shape_ok=False,
                               max_flipped_fraction=max_flipped_fraction)
    if r.size == 0:
        return TieAwareMetrics(0.0, 0.0, 1.0, max_flipped_fraction=max_flipped_fraction)
    scale = float(np.max(np.abs(r)))
    scale = scale if scale > 0 else 1.0
    swing = np.abs(f - r)
    unstable = swing > 1e-6 * scale  # same-shape reference runs differ only where a region changed
    diff = np.abs(a - r)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    stable = compare(a[~unstable], r[~unstable])
    rel = stable.max_abs / scale
    over = diff > tol * scale
    flipped = unstable & over
    beyond = unstable & (diff > tol * scale + swing)
    return TieAwareMetrics(stable.max_abs, rel, stable.cosine,
                           unstable_fraction=float(unstable.mean()),
                           flipped_fraction=float(flipped.mean()),
                           max_flipped_fraction=max_flipped_fraction,
                           beyond_allowance=int(beyond.sum()))


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
    return random_inputs(specs, resolve_shapes(specs, shapes, fallback), seed)
