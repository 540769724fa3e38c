"""Accuracy checks through polygraphy's ``Comparator``: every candidate run against the reference run,
with polygraphy's per-output error statistics on stdout.

dynconv's criterion, kept on top of polygraphy: ``max|candidate - reference| <= tol * max|reference|``
per output and iteration (:class:`ScaledMaxErrorCompareFunc`, a scale-relative ``SimpleCompareFunc``
with the ``max`` statistic), plus polygraphy's cosine similarity, with a floor for FP16
(:data:`FP16_MIN_COSINE`) and reported only for FP32. Models with DRConv use
:class:`TieAwareCompareFunc` instead, which separates near-tie region flips from kernel error."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from polygraphy.comparator import Comparator
from polygraphy.comparator.compare import BaseCompareFunc, CosineSimilarityCompareFunc, SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from . import _polygraphy
from .errors import DynconvError

FP32_TOL = 1e-4
FP16_TOL = 1e-2
FP16_MIN_COSINE = 0.9999
NO_COSINE_FLOOR = -1.0  # cosine is reported but never fails


class _ScaledSimpleCompareFunc(SimpleCompareFunc):
    _SUMMARY_LABEL = "max error vs tol x max|ref|"


class ScaledMaxErrorCompareFunc(BaseCompareFunc):
    """Passes an output when ``max|out0 - out1| <= tol * max|out1|`` (``out1``: the reference, the
    second runner of each pair). Each result carries ``reference_scale`` (``max|out1|``)."""

    def __init__(self, tol: float) -> None:
        self.tol = tol

    def __call__(self, iter_result0, iter_result1):
        scales = {name: _max_abs(arr) for name, arr in iter_result1.items()}
        simple = _ScaledSimpleCompareFunc(atol={name: self.tol * s for name, s in scales.items()}, rtol=0.0,
                                          check_error_stat="max")
        results = simple(iter_result0, iter_result1)
        for result in results.values():
            if not isinstance(result, bool):  # a bare False means the shapes differ
                result.reference_scale = scales[result.output1_name]
        return results


class TieAwareResult:
    """One output of :class:`TieAwareCompareFunc`: the tie-aware metrics and their verdict."""

    def __init__(self, metrics, tol: float, min_cosine: float | None) -> None:
        self.metrics = metrics  # dynconv.runtime.compare.TieAwareMetrics
        self.tol = tol
        self.min_cosine = min_cosine
        self.output0_name: str | None = None
        self.output1_name: str | None = None

    @property
    def max_abs(self) -> float:
        return _nan_to_inf(self.metrics.max_abs)

    @property
    def rel(self) -> float:
        return _nan_to_inf(self.metrics.rel)

    def cosine_ok(self) -> bool:
        return self.min_cosine is None or self.metrics.cosine >= self.min_cosine

    def __bool__(self) -> bool:
        return bool(self.metrics.passes(self.tol)) and self.cosine_ok()

    def failure(self) -> str:
        m = self.metrics
        if not m.shape_ok:
            return "SHAPE MISMATCH"
        if not (np.isfinite(m.max_abs) and m.rel <= self.tol):
            return "OVER TOLERANCE"
        if m.beyond_allowance or m.flipped_fraction > m.max_flipped_fraction:
            return "REGION FLIPS"
        return "LOW COSINE"

    def describe(self) -> str:
        m = self.metrics
        return (f"DRConv tie-aware: max|err| on values no region flip moves {m.max_abs:.5g} "
                f"(rel {m.rel:.5g}, tol {self.tol:g}); flipped values {m.flipped_fraction:.3%} "
                f"(bound {m.max_flipped_fraction:.1%}); {m.beyond_allowance} beyond their flip's allowance"
                + (f"; cosine {m.cosine:.6f} (min {self.min_cosine})" if self.min_cosine is not None else ""))


class TieAwareCompareFunc(BaseCompareFunc):
    """The DRConv criterion as a polygraphy compare function: values a near-tie region flip cannot
    move must be within ``tol * max|reference|``; the others may take the flipped result, within a
    bound on their share (:mod:`dynconv.runtime.drconv_parity`). ``flips[k]`` is the FlipReference of
    iteration ``k``; ``reference_iterations[k]`` the reference run's ``IterationResult`` it belongs to.
    ``records[(candidate runner, output, k)]`` keeps every metrics object for the DRConv report."""

    _SUMMARY_LABEL = "DRConv tie-aware"

    def __init__(self, flips: Sequence, reference_iterations: Sequence, tol: float,
                 min_cosine: float | None) -> None:
        self.flips = list(flips)
        self._iteration_of = {id(it): k for k, it in enumerate(reference_iterations)}
        self.tol = tol
        self.min_cosine = min_cosine
        self.check_shapes = True
        self.fail_fast = False
        self.find_output_func = None
        self.records: dict[tuple[str, str, int], object] = {}

    def __call__(self, iter_result0, iter_result1):
        k = self._iteration_of.get(id(iter_result1))
        if k is None:
            raise DynconvError("internal: the DRConv comparison got a reference iteration it does not know")
        flips = self.flips[k]

        def match(out0_name, output0, out1_name, output1):
            metrics = flips.compare(out1_name, np.asarray(output0), self.tol)
            self.records[(iter_result0.runner_name, out1_name, k)] = metrics
            result = TieAwareResult(metrics, self.tol, self.min_cosine)
            (G_LOGGER.finish if result else G_LOGGER.error)(result.describe())
            return result

        return self._run_comparison(iter_result0, iter_result1, match)


@dataclass(frozen=True)
class OutputCheck:
    """The worst case over the iterations of one candidate output against the reference."""

    backend: str
    output: str
    max_abs: float
    rel: float  # max_abs / max|reference|
    cosine: float
    shape_ok: bool
    passed: bool
    status: str  # ok, SHAPE MISMATCH, OVER TOLERANCE, REGION FLIPS or LOW COSINE

    def to_json(self) -> dict:
        return {"backend": self.backend, "output": self.output, "max_abs": self.max_abs, "rel": self.rel,
                "cosine": self.cosine, "shape_ok": self.shape_ok, "passed": self.passed, "status": self.status}


def compare_runs(results, reference: str, *, error_func: BaseCompareFunc,
                 min_cosine: float | None) -> list[OutputCheck]:
    """Compare every run in ``results`` (a ``RunResults``) with the run named ``reference`` through
    polygraphy's ``Comparator.compare_accuracy`` (its report goes to stdout), judging each output by
    ``error_func`` (:class:`ScaledMaxErrorCompareFunc` or :class:`TieAwareCompareFunc`) and by
    polygraphy's cosine similarity against ``min_cosine`` (None: reported only)."""
    names = list(results.keys())
    ref_index = names.index(reference)
    pairs = [(i, ref_index) for i in range(len(names)) if i != ref_index]
    floor = NO_COSINE_FLOOR if min_cosine is None else min_cosine
    funcs = [error_func, CosineSimilarityCompareFunc(cosine_similarity_threshold=floor)]
    rows = []
    with _polygraphy.session(report=True):  # the verdicts below run polygraphy code too
        accuracy = Comparator.compare_accuracy(results, comparisons=pairs, compare_func=funcs)
        for i, _ in pairs:
            errors, cosines = (acc[(names[i], reference)] for acc in accuracy)  # [iteration] -> {output: result}
            rows.extend(_output_check(names[i], output, [it[output] for it in errors],
                                      [it[output] for it in cosines]) for output in errors[0])
    return rows


def _output_check(backend: str, output: str, errors: list, cosines: list) -> OutputCheck:
    stats = [_error_stats(r) for r in errors]
    if not all(shape_ok for _, _, shape_ok, _ in stats):
        return OutputCheck(backend, output, math.inf, math.inf, math.nan, False, False, "SHAPE MISMATCH")
    max_abs = max(m for m, _, _, _ in stats)
    rel = max(r for _, r, _, _ in stats)
    cosine = min(_nan_to_minus_inf(c.cosine_similarity) for c in cosines)
    failed = [why for (_, _, _, why), r in zip(stats, errors, strict=True) if not bool(r)]
    if failed:
        status = failed[0]
    elif not all(bool(c) for c in cosines):
        status = "LOW COSINE"
    else:
        status = "ok"
    return OutputCheck(backend, output, max_abs, rel, cosine, True, status == "ok", status)


def _error_stats(result) -> tuple[float, float, bool, str]:
    """(max_abs, rel, shape_ok, status when failed) of one error-function result."""
    if isinstance(result, bool):  # polygraphy's bare False for outputs of different shapes
        return math.inf, math.inf, False, "SHAPE MISMATCH"
    if isinstance(result, TieAwareResult):
        return result.max_abs, result.rel, result.metrics.shape_ok, result.failure()
    return (_nan_to_inf(result.max_absdiff), _ratio(result.max_absdiff, result.reference_scale), True,
            "OVER TOLERANCE")


def format_table(rows: Sequence[OutputCheck]) -> str:
    wb = max([14, *(len(r.backend) for r in rows)])
    wo = max([16, *(len(r.output) for r in rows)])
    lines = [f"{'backend':<{wb}} {'output':<{wo}} {'max_abs':>11} {'rel':>11} {'cosine':>10}  status"]
    for r in rows:
        lines.append(f"{r.backend:<{wb}} {r.output:<{wo}} {r.max_abs:>11.3e} {r.rel:>11.3e} {r.cosine:>10.6f}  "
                     f"{r.status}")
    return "\n".join(lines) + "\n"


def _max_abs(arr) -> float:
    a = np.asarray(arr)
    return float(np.max(np.abs(a.astype(np.float64)))) if a.size else 0.0


def _nan_to_inf(value: float | None) -> float:
    return math.inf if value is None or math.isnan(value) else float(value)


def _nan_to_minus_inf(value: float | None) -> float:
    return -math.inf if value is None or math.isnan(value) else float(value)


def _ratio(err: float | None, scale: float) -> float:
    err = _nan_to_inf(err)
    if scale > 0:
        return err / scale
    return 0.0 if err == 0 else math.inf
