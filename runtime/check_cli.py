"""``dynconv-check reference.onnx --engine model.plan``: compare an engine (or a second ONNX, or
the PyTorch model) with onnxruntime on the reference ONNX; exit 1 when over tolerance."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from ._cli import EXIT_FAIL, EXIT_OK, atomic_write_text, make_parser, require_file, run_main
from .compare import Metrics, compare, load_npz, make_inputs
from .errors import DynconvError
from .tensors import parse_shape_args

PROG = "dynconv-check"
FP32_TOL = 1e-4
FP16_TOL = 1e-2


def _parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Compare a TensorRT engine / ONNX / PyTorch model with onnxruntime on the reference ONNX.")
    p.add_argument("reference", help="reference-flavour ONNX (target='onnx'), run with onnxruntime on CPU")
    p.add_argument("--engine", metavar="PLAN", help="TensorRT plan to check")
    p.add_argument("--candidate", metavar="ONNX", help="another ONNX to check with onnxruntime (CPU testing)")
    p.add_argument("--plugins", default="auto", metavar="PATH|auto", help="plugin library for --engine")
    p.add_argument("--torch-model", metavar="FILE", help="PyTorch model (TorchScript/.pt2/pickled module, "
                   "or a state dict with --example)")
    p.add_argument("--example", metavar="NAME", help="build dynconv.export.examples NAME as the PyTorch model")
    p.add_argument("--shapes", action="append", metavar="NAME:SHAPE", help="input shape, e.g. x:1x3x64x64")
    p.add_argument("--inputs", metavar="NPZ", help="inputs by name from an .npz instead of random ones")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--atol-scale", type=float, metavar="TOL",
                   help=f"max allowed max|err| / max|ref| (default {FP32_TOL} fp32, {FP16_TOL} fp16)")
    p.add_argument("--fp16", action="store_true", help="use the fp16 tolerance")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    return p


def _run(args: argparse.Namespace) -> int:
    from .backends import OrtBackend, TrtBackend  # noqa: PLC0415

    require_file(args.reference, "reference ONNX")
    if not (args.engine or args.candidate or args.torch_model or args.example):
        raise DynconvError("nothing to check: give --engine PLAN, --candidate ONNX or --torch-model/--example")
    if args.atol_scale is not None and not args.atol_scale > 0:
        raise DynconvError("--atol-scale must be > 0")
    shapes = parse_shape_args(args.shapes)
    feeds_given = load_npz(args.inputs) if args.inputs else None

    reference = OrtBackend(args.reference)
    candidates = []
    fp16 = args.fp16
    fallback = None
    if args.engine:
        require_file(args.engine, "plan")
        trt = TrtBackend(args.engine, plugins=args.plugins)
        candidates.append(trt)
        fp16 |= trt.engine.metadata.precision == "fp16"
        fallback = {s.name: tuple(trt.engine.metadata.input_range(s.name)[1])
                    for s in trt.inputs if trt.engine.metadata.input_range(s.name)}
    if args.candidate:
        cand = OrtBackend(require_file(args.candidate, "candidate ONNX"))
        cand.name = "candidate"
        candidates.append(cand)
    if args.torch_model or args.example:
        from .torch_ref import TorchModel, load_torch_model  # noqa: PLC0415

        candidates.append(TorchModel(load_torch_model(args.torch_model, args.example),
                                     reference.input_names, reference.output_names))
    for cand in candidates:
        if hasattr(cand, "outputs") and sorted(cand.output_names) != sorted(reference.output_names):
            raise DynconvError(f"{cand.name} has outputs {cand.output_names}, the reference has {reference.output_names}")
    fp16 |= any(s.dtype == np.float16 for s in (*reference.inputs, *reference.outputs))
    tol = args.atol_scale if args.atol_scale is not None else (FP16_TOL if fp16 else FP32_TOL)

    if feeds_given is not None:
        if shapes:
            raise DynconvError("give either --inputs or --shapes, not both")
        feeds = feeds_given
        reference.validate(feeds)
    else:
        feeds = make_inputs(reference.inputs, shapes, seed=args.seed, fallback=fallback)
    expected = reference.infer(feeds)

    rows = []
    for cand in candidates:
        got = cand.infer(feeds)
        for name in reference.output_names:
            m = compare(got[name], expected[name])
            rows.append((cand.name, name, m))
    ok = all(m.passes(tol) for _, _, m in rows)
    sys.stdout.write(_table(rows, tol, feeds))
    sys.stdout.write(("PASS" if ok else "FAIL") + f" (tolerance max|err|/max|ref| <= {tol:g})\n")
    if args.json:
        atomic_write_text(args.json, json.dumps({
            "tolerance": tol,
            "passed": ok,
            "inputs": {k: list(v.shape) for k, v in feeds.items()},
            "results": [{"backend": b, "output": o, "max_abs": m.max_abs, "rel": m.rel, "cosine": m.cosine,
                         "shape_ok": m.shape_ok, "passed": m.passes(tol)} for b, o, m in rows],
        }, indent=2) + "\n")
    return EXIT_OK if ok else EXIT_FAIL


def _table(rows: list[tuple[str, str, Metrics]], tol: float, feeds) -> str:
    shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())
    lines = [f"inputs: {shapes}",
             f"{'backend':<14} {'output':<16} {'max_abs':>11} {'rel':>11} {'cosine':>10}  status"]
    for backend, output, m in rows:
        status = "ok" if m.passes(tol) else ("SHAPE MISMATCH" if not m.shape_ok else "OVER TOLERANCE")
        lines.append(f"{backend:<14} {output:<16} {m.max_abs:>11.3e} {m.rel:>11.3e} {m.cosine:>10.6f}  {status}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _run, _parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
