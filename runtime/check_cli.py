"""``dynconv-check reference.onnx --engine model.plan``: compare an engine (or a second ONNX, or
the PyTorch model) with onnxruntime on the reference ONNX; exit 1 when over tolerance."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._cli import make_parser, run_main
from .check_run import add_arguments, run_check
from .polygraphy_compare import FP16_TOL, FP32_TOL

PROG = "dynconv-check"


def _parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Compare a TensorRT engine / ONNX / PyTorch model with onnxruntime on the reference ONNX.")
    p.add_argument("reference", help="reference-flavour ONNX (target='onnx'), run with onnxruntime on CPU")
    p.add_argument("--engine", metavar="PLAN", help="TensorRT plan to check")
    p.add_argument("--candidate", metavar="ONNX", help="another ONNX to check with onnxruntime (CPU testing)")
    p.add_argument("--plugins", default="auto", metavar="PATH|auto", help="plugin library for --engine")
    p.add_argument("--torch-model", metavar="FILE", help="PyTorch model (TorchScript/.pt2/pickled module, "
                   "or a state dict with --example)")
    p.add_argument("--example", metavar="NAME", help="build dynconv.export.examples NAME as the PyTorch model")
    p.add_argument("--allow-pickle", action="store_true", help="allow a pickled --torch-model (unpickling runs "
                   "code from the file: only for files you trust)")
    p.add_argument("--shapes", action="append", metavar="NAME:SHAPE", help="input shape, e.g. x:1x3x64x64")
    p.add_argument("--inputs", metavar="NPZ", help="inputs by name from an .npz instead of synthetic ones")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic inputs (polygraphy's DataLoader; "
                   "default 1, as polygraphy run)")
    p.add_argument("--atol-scale", type=float, metavar="TOL",
                   help=f"max allowed max|err| / max|ref| (default {FP32_TOL} fp32, {FP16_TOL} fp16)")
    p.add_argument("--fp16", action="store_true", help="use the fp16 tolerance")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, run_check, _parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
