"""``dynconv-triton-repo model.plan|model.onnx -o repo/ --name NAME``: a Triton model repository entry."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._cli import EXIT_OK, make_parser, require_file, run_main
from .metadata import metadata_path_for

PROG = "dynconv-triton-repo"


def _parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Write a Triton Inference Server model repository entry for a dynconv plan "
                          "(tensorrt_plan) or reference ONNX (onnxruntime_onnx).")
    p.add_argument("plan", metavar="MODEL", help="plan written by dynconv-build (its <plan>.json metadata must be "
                   "beside it), or an ONNX exported with --target onnx")
    p.add_argument("-o", "--output", required=True, metavar="REPO", help="model repository folder")
    p.add_argument("--name", required=True, help="model name (folder and config name)")
    p.add_argument("--max-batch", type=int, help="Triton max_batch_size (default: the profile's max batch, "
                   "or 0 when dim 0 is not dynamic)")
    p.add_argument("--dynamic-batching", action="store_true", help="enable Triton's dynamic batcher")
    p.add_argument("--instances", type=int, default=1, help="model instances per GPU (or CPU)")
    p.add_argument("--instance-kind", choices=("gpu", "cpu"), default="gpu",
                   help="where Triton runs the instances (cpu: ONNX only)")
    p.add_argument("--metadata", metavar="JSON", help="metadata file (default <plan>.json)")
    return p


def _run(args: argparse.Namespace) -> int:
    from .triton import write_repo  # noqa: PLC0415

    plan = require_file(args.plan, "model")
    if plan.suffix != ".onnx":
        require_file(args.metadata or metadata_path_for(plan), "engine metadata")
    target = write_repo(plan, args.output, args.name, max_batch=args.max_batch,
                        dynamic_batching=args.dynamic_batching, instances=args.instances,
                        instance_kind=args.instance_kind, metadata=args.metadata)
    model_file = "model.onnx" if plan.suffix == ".onnx" else "model.plan"
    sys.stdout.write(f"wrote {target}/config.pbtxt and {target}/1/{model_file}; see {target}/README.md\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _run, _parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
