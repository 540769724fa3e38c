"""What ``dynconv-check`` runs: polygraphy runners (``OnnxrtRunner`` on the reference, dynconv's own
runners for engines and PyTorch), polygraphy data loaders, ``Comparator.run``/``compare_accuracy``,
and RunResults JSON in and out (interoperable with ``polygraphy run``).

Exit codes: 0 every output passes, 1 a mismatch, 2 bad input (one line on stderr, nothing written)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence

from . import _polygraphy, data_loaders, run_results
from ._cli import EXIT_FAIL, EXIT_OK, atomic_write_text, check_output_path, require_file
from .backends import OrtBackend
from .compare import load_npz
from .errors import DynconvError
from .metadata import EngineMetadata, metadata_path_for
from .polygraphy_compare import (FP16_MIN_COSINE, FP16_TOL, FP32_TOL, OutputCheck, ScaledMaxErrorCompareFunc,
                                 TieAwareCompareFunc, compare_runs, format_table)
from .tensors import parse_shape_args, resolve_shapes

REFERENCE = "reference"  # runner name of onnxruntime on the reference ONNX


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The polygraphy options of dynconv-check (data loaders, RunResults in and out)."""
    p.add_argument("--iterations", type=int, default=1, help="synthetic feeds to compare (default 1)")
    p.add_argument("--val-range", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="range of the synthetic float inputs (polygraphy's default 0 1)")
    p.add_argument("--load-inputs", metavar="JSON", help="feeds from a polygraphy inputs JSON "
                   "(polygraphy run --save-inputs)")
    p.add_argument("--data-loader-script", metavar="FILE.py[:FUNC]",
                   help="feeds from a polygraphy data loader script "
                   f"(FUNC default {data_loaders.DEFAULT_SCRIPT_FUNCTION})")
    p.add_argument("--save-inputs", metavar="JSON", help="write the feeds as a polygraphy inputs JSON")
    p.add_argument("--save-outputs", metavar="JSON", help="write every run as polygraphy RunResults JSON")
    p.add_argument("--load-outputs", metavar="JSON", action="append",
                   help="also compare the runs of a polygraphy RunResults JSON (polygraphy run --save-outputs)")


def run_check(args: argparse.Namespace) -> int:
    """dynconv-check's body: build feeds and runners, run, compare, report, write files."""
    _validate_args(args)
    reference = OrtBackend(require_file(args.reference, "reference ONNX"))
    candidates, engine_fp16, fallback = _candidate_runners(args, reference)
    loaded = [(str(p), run_results.load_run_results(p)) for p in args.load_outputs or ()]
    fp16 = args.fp16 or engine_fp16 or any(s.dtype.name == "float16" for s in (*reference.inputs, *reference.outputs))
    tol = args.atol_scale if args.atol_scale is not None else (FP16_TOL if fp16 else FP32_TOL)

    feeds = _feeds(args, reference, fallback)
    data_loaders.validate_all(reference.inputs, feeds)
    results = _run(reference, candidates, feeds, loaded)
    error_func, drconv = _error_func(args.reference, feeds, results, fp16, tol)
    rows = compare_runs(results, REFERENCE, error_func=error_func,
                        min_cosine=FP16_MIN_COSINE if fp16 and drconv is None else None)
    ok = all(r.passed for r in rows)

    out = [f"inputs: {_describe_feeds(feeds)}\n", format_table(rows)]
    drconv_json = None
    if drconv is not None:
        line, drconv_json = _drconv_report(drconv, error_func)
        out.append(line)
    out.append(("PASS" if ok else "FAIL") + f" (tolerance max|err|/max|ref| <= {tol:g}"
               + (f", cosine >= {FP16_MIN_COSINE}" if fp16 else "") + ")\n")
    sys.stdout.write("".join(out))
    _write_files(args, feeds, results, rows, tol, ok, drconv_json)
    return EXIT_OK if ok else EXIT_FAIL


def _validate_args(args: argparse.Namespace) -> None:
    if not (args.engine or args.candidate or args.torch_model or args.example or args.load_outputs):
        raise DynconvError("nothing to check: give --engine PLAN, --candidate ONNX, --torch-model/--example "
                           "or --load-outputs JSON")
    if args.atol_scale is not None and not args.atol_scale > 0:
        raise DynconvError("--atol-scale must be > 0")
    if args.iterations < 1:
        raise DynconvError("--iterations must be >= 1")
    if args.val_range and not args.val_range[0] <= args.val_range[1]:
        raise DynconvError("--val-range MIN MAX needs MIN <= MAX")
    sources = [f for f, v in (("--inputs", args.inputs), ("--load-inputs", args.load_inputs),
                              ("--data-loader-script", args.data_loader_script)) if v]
    if len(sources) > 1:
        raise DynconvError(f"give one input source, not {' and '.join(sources)}")
    if sources and args.shapes:
        raise DynconvError(f"give either {sources[0]} or --shapes, not both")
    written = [p for p in (args.json, args.save_inputs, args.save_outputs) if p]
    if len(set(written)) != len(written):
        raise DynconvError("--json, --save-inputs and --save-outputs must name different files")
    for flag, path in (("--json", args.json), ("--save-inputs", args.save_inputs), ("--save-outputs", args.save_outputs)):
        if path:  # refused before anything runs; the folder is never created
            check_output_path(path, flag, inputs=[args.reference])


def _candidate_runners(args: argparse.Namespace, reference: OrtBackend):
    """(runners, fp16 engine?, fallback shapes from the engine profile) of the live candidates."""
    from polygraphy.backend.onnxrt import OnnxrtRunner  # noqa: PLC0415

    from .trt_runner import BackendRunner, trt_engine_runner  # noqa: PLC0415

    runners, fp16, fallback = [], False, None
    if args.engine:
        plan = require_file(args.engine, "plan")
        meta = EngineMetadata.load(metadata_path_for(plan))
        fp16 = meta.precision == "fp16"
        fallback = {s.name: tuple(meta.input_range(s.name)[1]) for s in meta.inputs if meta.input_range(s.name)}
        runners.append(trt_engine_runner(plan, plugins=args.plugins, name="tensorrt"))
    if args.candidate:
        cand = OrtBackend(require_file(args.candidate, "candidate ONNX"))
        _check_outputs("candidate", cand.output_names, reference.output_names)
        runners.append(OnnxrtRunner(cand.session, name="candidate"))
    if args.torch_model or args.example:
        from .torch_ref import TorchModel, load_torch_model  # noqa: PLC0415

        model = TorchModel(load_torch_model(args.torch_model, args.example, args.allow_pickle), reference.input_names,
                           reference.output_names)
        runners.append(BackendRunner(model, inputs=reference.inputs, name=TorchModel.name))
    return runners, fp16, fallback


def _check_outputs(name: str, got: Sequence[str], want: Sequence[str]) -> None:
    if sorted(got) != sorted(want):
        raise DynconvError(f"{name} has outputs {list(got)}, the reference has {list(want)}")


def _feeds(args: argparse.Namespace, reference: OrtBackend, fallback) -> list[dict]:
    if args.inputs:
        return [load_npz(args.inputs)]
    if args.load_inputs:
        return data_loaders.load_feeds(args.load_inputs)
    if args.data_loader_script:
        return data_loaders.script_feeds(args.data_loader_script)
    shapes = resolve_shapes(reference.inputs, parse_shape_args(args.shapes), fallback)
    val_range = tuple(args.val_range) if args.val_range else None
    return data_loaders.synthetic_feeds(reference.inputs, shapes, seed=args.seed, iterations=args.iterations,
                                        val_range=val_range)


def _run(reference: OrtBackend, candidates: list, feeds: list[dict], loaded: list[tuple[str, object]]):
    """Comparator.run over the reference and the live candidates, merged with the loaded runs."""
    from polygraphy.backend.onnxrt import OnnxrtRunner  # noqa: PLC0415
    from polygraphy.comparator import Comparator  # noqa: PLC0415

    with _polygraphy.session():
        live = Comparator.run([OnnxrtRunner(reference.session, name=REFERENCE), *candidates], data_loader=feeds)
    results = run_results.merge_run_results([("live", live), *loaded])
    for name, iterations in results.items():
        run_results.check_run_matches(name, iterations, reference.output_names, len(feeds))
    return results


def _error_func(reference_path, feeds: list[dict], results, fp16: bool, tol: float):
    """The DRConv tie-aware criterion when the reference has DRConv, else the scaled max error."""
    from .drconv_parity import flip_reference  # noqa: PLC0415

    import onnx  # noqa: PLC0415

    model = onnx.load(str(reference_path))
    precision = "fp16" if fp16 else "fp32"
    flips = [flip_reference(model, feed, precision) for feed in feeds]
    if flips[0] is None:
        return ScaledMaxErrorCompareFunc(tol), None
    func = TieAwareCompareFunc(flips, results[REFERENCE], tol, FP16_MIN_COSINE if fp16 else None)
    return func, flips


def _drconv_report(flips: list, func: TieAwareCompareFunc) -> tuple[str, dict]:
    """The DRConv line and JSON of the iteration with the most flipped values."""
    by_iteration: dict[int, dict] = {}
    for (runner, output, k), metrics in func.records.items():
        by_iteration.setdefault(k, {})[f"{runner}/{output}"] = metrics
    worst = max(by_iteration, key=lambda k: max(m.flipped_fraction for m in by_iteration[k].values()))
    line = flips[worst].summary(by_iteration[worst])
    report = flips[worst].to_json(by_iteration[worst])
    if len(flips) > 1:
        line = f"iteration {worst} of {len(flips)} (most flips): {line}"
        report["iteration"] = worst
    return line, report


def _describe_feeds(feeds: list[Mapping]) -> str:
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in feeds[0].items())
    return shapes + (f" ({len(feeds)} iterations)" if len(feeds) > 1 else "")


def _write_files(args: argparse.Namespace, feeds: list[dict], results, rows: list[OutputCheck], tol: float,
                 ok: bool, drconv_json: dict | None) -> None:
    if args.save_inputs:
        data_loaders.save_feeds(feeds, args.save_inputs)
    if args.save_outputs:
        run_results.save_run_results(results, args.save_outputs)
    if args.json:
        report = {"tolerance": tol, "passed": ok, "iterations": len(feeds),
                  "inputs": {k: list(v.shape) for k, v in feeds[0].items()},
                  "results": [r.to_json() for r in rows]}
        if drconv_json is not None:
            report["drconv"] = drconv_json
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
