"""Polygraphy ``RunResults`` JSON files: written by ``dynconv-check --save-outputs`` and read by
``--load-outputs``, the same format as ``polygraphy run --save-outputs/--load-outputs``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from . import _polygraphy
from ._cli import atomic_write_text, require_file
from .errors import DynconvError


def load_run_results(path: str | os.PathLike):
    """The ``RunResults`` in ``path``; DynconvError when it is missing or not a RunResults JSON."""
    from polygraphy.comparator import RunResults  # noqa: PLC0415

    p = require_file(path, "outputs file")
    try:
        with _polygraphy.session():
            results = RunResults.from_json(p.read_text(encoding="utf-8"))
    except DynconvError as exc:
        raise DynconvError(f"{str(p)!r} is not a polygraphy RunResults JSON ({exc})") from exc
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise DynconvError(f"{str(p)!r} is not a polygraphy RunResults JSON: "
                           f"{_polygraphy.first_line(str(exc)) or type(exc).__name__}") from exc
    if not isinstance(results, RunResults) or not len(results):
        raise DynconvError(f"{str(p)!r} holds no runs (expected a polygraphy RunResults JSON)")
    return results


def save_run_results(results, path: str | os.PathLike) -> None:
    """Write ``results`` (a ``RunResults``) atomically as polygraphy JSON."""
    with _polygraphy.session():
        text = results.to_json()
    atomic_write_text(path, text)


def merge_run_results(runs: Sequence[tuple[str, object]]) -> object:
    """One ``RunResults`` holding every runner of ``runs`` (``(label, RunResults)`` pairs, e.g. the
    file each came from); a runner whose name is taken is renamed ``name[label]``."""
    from polygraphy.comparator import RunResults  # noqa: PLC0415

    merged = RunResults()
    for label, run in runs:
        for name, iterations in run.items():
            unique = name if name not in merged else f"{name}[{label}]"
            if unique in merged:
                raise DynconvError(f"runner {name!r} of {label} appears twice among the runs to compare")
            merged.append((unique, iterations))
    return merged


def check_run_matches(name: str, iterations: Sequence, output_names: Sequence[str], count: int) -> None:
    """DynconvError unless run ``name`` has ``count`` iterations, each with exactly ``output_names``."""
    if len(iterations) != count:
        raise DynconvError(f"run {name!r} has {len(iterations)} iteration(s) but {count} input feed(s) were "
                           "compared; load the inputs it was made with (--load-inputs)")
    for i, it in enumerate(iterations):
        got = sorted(it.keys())
        if got != sorted(output_names):
            raise DynconvError(f"run {name!r} iteration {i} has outputs {got}; "
                               f"the reference has {sorted(output_names)}")
        for out in output_names:
            arr = it[out]
            if not isinstance(arr, np.ndarray):
                raise DynconvError(f"run {name!r} output {out!r} is a {type(arr).__name__}, not a numpy array")
