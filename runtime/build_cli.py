"""``dynconv-build model.onnx -o model.plan``: TensorRT engine + metadata JSON beside it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import DynconvError

from ._cli import EXIT_OK, check_output_path, make_parser, require_file, run_main, same_file
from .metadata import metadata_path_for
from .tensors import parse_shape_args

PROG = "dynconv-build"


def _parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Build a TensorRT engine (plan) from an ONNX model exported with target='trt'.")
    p.add_argument("onnx", help="ONNX model (dynconv custom nodes become TensorRT plugins)")
    p.add_argument("-o", "--output", required=True, help="plan file to write; metadata goes to <plan>.json")
    p.add_argument("--plugins", default="auto", metavar="PATH|auto|none",
                   help="plugin library (default auto: $DYNCONV_PLUGIN_LIB, then the default build dir)")
    p.add_argument("--fp16", action="store_true", help="allow FP16 kernels (TensorRT < 11; on 11 export FP16 ONNX)")
    p.add_argument("--strongly-typed", action="store_true", help="strongly typed network (TensorRT >= 9)")
    p.add_argument("--tf32", action="store_true",
                   help="let FP32 layers use TF32 (TensorRT's default; off by default here so FP32 parity holds)")
    p.add_argument("--shapes", action="append", metavar="NAME:MIN,OPT,MAX",
                   help="profile of a dynamic input, e.g. x:1x3x64x64,4x3x224x224,8x3x512x512 (repeatable)")
    p.add_argument("--workspace", type=int, metavar="MiB", help="builder workspace limit in MiB")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache to read and update")
    p.add_argument("--tactic-sources", metavar="LIST",
                   help="'default' or edits, e.g. --tactic-sources=-CUBLAS,-CUDNN,+CUBLAS_LT "
                        "(default: drop CUBLAS, CUBLAS_LT, CUDNN on TensorRT < 10)")
    return p


def _run(args: argparse.Namespace) -> int:
    from .builder import BuildOptions, build  # noqa: PLC0415

    onnx_path = require_file(args.onnx, "ONNX model")
    if args.workspace is not None and args.workspace <= 0:
        raise DynconvError("--workspace must be a positive number of MiB")
    plan = Path(args.output)
    if same_file(plan, onnx_path):
        raise DynconvError("-o must differ from the ONNX input")
    check_output_path(plan, "plan")
    if same_file(metadata_path_for(plan), onnx_path):
        raise DynconvError(f"the metadata file {metadata_path_for(plan)} would overwrite the ONNX input")
    shapes = {k: tuple(v) for k, v in parse_shape_args(args.shapes).items()}
    _check_tactic_syntax(args.tactic_sources)
    meta = build(BuildOptions(
        onnx_path=onnx_path,
        plan_path=plan,
        plugins=args.plugins,
        fp16=args.fp16,
        shapes=shapes,
        workspace_mib=args.workspace,
        timing_cache=Path(args.timing_cache) if args.timing_cache else None,
        tactic_sources=args.tactic_sources,
        strongly_typed=args.strongly_typed,
        tf32=args.tf32,
    ))
    sys.stdout.write(
        f"wrote {plan} and {metadata_path_for(plan)} (TensorRT {meta.tensorrt_version}, "
        f"{meta.gpu_name}, sm_{meta.compute_capability.replace('.', '')}, {meta.precision})\n"
    )
    return EXIT_OK


def _check_tactic_syntax(spec: str | None) -> None:
    if spec is None or spec.strip().lower() == "default":
        return
    items = [e.strip() for e in spec.split(",")]
    if not items or any(not e or e in "+-" for e in items):
        raise DynconvError(f"bad --tactic-sources {spec!r}: use 'default' or e.g. -CUBLAS,-CUDNN")


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _run, _parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
