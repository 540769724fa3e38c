"""``dynconv-bench reference.onnx [--engine model.plan]``: latency and throughput of TensorRT,
onnxruntime (CPU, and CUDA EP when available) and PyTorch eager in one table."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from ._cli import EXIT_OK, atomic_write_text, check_output_path, make_parser, require_file, run_main
from .errors import DynconvError
from .tensors import parse_shape_args

PROG = "dynconv-bench"
log = logging.getLogger("dynconv.runtime")


def _parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Benchmark a TensorRT engine against onnxruntime and PyTorch eager.")
    p.add_argument("onnx", help="reference-flavour ONNX for the onnxruntime rows")
    p.add_argument("--engine", metavar="PLAN", help="TensorRT plan")
    p.add_argument("--plugins", default="auto", metavar="PATH|auto")
    p.add_argument("--cuda-graph", action="store_true", help="replay the engine as a CUDA graph")
    p.add_argument("--torch-model", metavar="FILE")
    p.add_argument("--example", metavar="NAME")
    p.add_argument("--allow-pickle", action="store_true", help="allow a pickled --torch-model (unpickling runs "
                   "code from the file: only for files you trust)")
    p.add_argument("--shapes", action="append", metavar="NAME:SHAPE")
    p.add_argument("--runs", type=int, default=100, help="timed runs per backend")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs before timing")
    p.add_argument("--no-ort-cuda", action="store_true", help="skip onnxruntime's CUDA EP")
    p.add_argument("--ort-threads", type=int, help="onnxruntime intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    p.add_argument("--png", metavar="FILE", help="write a bar chart (matplotlib)")
    return p


def _run(args: argparse.Namespace) -> int:
    import onnxruntime as ort  # noqa: PLC0415

    from . import bench  # noqa: PLC0415
    from .backends import OrtBackend, TrtBackend  # noqa: PLC0415
    from .compare import make_inputs  # noqa: PLC0415

    require_file(args.onnx, "ONNX model")
    if args.runs < 1 or args.warmup < 0:
        raise DynconvError("--runs must be >= 1 and --warmup >= 0")
    for flag, path in (("--json", args.json), ("--png", args.png)):
        if path:
            check_output_path(path, flag, inputs=[args.onnx])
    shapes = parse_shape_args(args.shapes)
    backends = []
    fallback = None
    trt = None
    if args.engine:
        trt = TrtBackend(require_file(args.engine, "plan"), plugins=args.plugins, use_cuda_graph=args.cuda_graph)
        meta = trt.engine.metadata
        fallback = {s.name: tuple(meta.input_range(s.name)[1]) for s in trt.inputs if meta.input_range(s.name)}
        backends.append(trt)
    cpu = OrtBackend(args.onnx, threads=args.ort_threads)
    backends.append(cpu)
    if not args.no_ort_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            backends.append(OrtBackend(args.onnx, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]))
        except DynconvError as exc:
            log.warning("skipping onnxruntime CUDA: %s", exc)
    if args.torch_model or args.example:
        from .torch_ref import TorchModel, load_torch_model  # noqa: PLC0415

        model = load_torch_model(args.torch_model, args.example, args.allow_pickle)
        dev = "cuda" if _torch_cuda() else "cpu"
        torch_row = TorchModel(model, cpu.input_names, cpu.output_names, device=dev)
        torch_row.name = f"torch-{dev}"
        backends.append(torch_row)
    feeds = make_inputs(cpu.inputs, shapes, seed=args.seed, fallback=fallback)

    rows = []
    for b in backends:
        row = bench.bench_backend(b.name, b.infer, feeds, warmup=args.warmup, runs=args.runs)
        if b is trt:
            row.extra = bench.trt_breakdown(trt.engine, feeds, warmup=args.warmup, runs=args.runs)
        rows.append(row)
    sys.stdout.write(f"inputs: {', '.join(f'{k}{list(v.shape)}' for k, v in feeds.items())}\n")
    sys.stdout.write(bench.table(rows))
    if args.json:
        atomic_write_text(args.json, json.dumps({
            "inputs": {k: list(v.shape) for k, v in feeds.items()},
            "warmup": args.warmup,
            "rows": [r.to_json() for r in rows],
        }, indent=2) + "\n")
    if args.png:
        bench.bar_chart(rows, args.png, f"{args.onnx}: " + ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items()))
    for b in backends:
        if hasattr(b, "close"):
            b.close()
    return EXIT_OK


def _torch_cuda() -> bool:
    import torch  # noqa: PLC0415

    return bool(torch.cuda.is_available())


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _run, _parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
