"""``dynconv-serve MODEL|DIR [--model NAME=PATH ...]``: Open Inference Protocol (KServe v2) server
over HTTP/REST and gRPC with dynamic batching, as Triton serves it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._cli import EXIT_OK, make_parser, run_main
from .errors import DynconvError
from .server import DEFAULT_MAX_REQUEST_BYTES

PROG = "dynconv-serve"


def _parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Serve ONNX models (onnxruntime) and TensorRT plans with the Open Inference "
                          "Protocol (KServe v2, as Triton) over HTTP/REST and gRPC.")
    p.add_argument("model", nargs="?", help="model.onnx / model.plan, or a directory of models "
                   "(*.onnx, *.plan, or Triton's <name>/<version>/model.* layout)")
    p.add_argument("--model", dest="models", action="append", default=[], metavar="NAME=PATH",
                   help="serve PATH as NAME (repeatable)")
    p.add_argument("--name", help="protocol name of a single MODEL file (default: its file stem)")
    p.add_argument("--backend", choices=("ort", "ort-cuda", "trt"),
                   help="default: trt for .plan/.engine, else ort")
    p.add_argument("--host", default="127.0.0.1", help="bind address of both endpoints (default 127.0.0.1)")
    p.add_argument("--http-port", "--port", dest="http_port", type=int, default=8000, help="HTTP/REST port")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (-1: no gRPC endpoint)")
    p.add_argument("--plugins", default="auto", metavar="PATH|auto", help="plugin library (trt backend)")
    p.add_argument("--cuda-graph", action="store_true", help="replay the engine as CUDA graphs (trt backend)")
    p.add_argument("--max-batch", type=int, default=8, help="largest dynamic batch (rows along dim 0)")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="how long to wait to fill a batch")
    p.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                   help="largest request body / gRPC message (also bounds the memory one request takes)")
    p.add_argument("--allow-non-finite", action="store_true",
                   help="compute inputs holding NaN/Inf (default: refuse them with 400)")
    p.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds to drain in-flight requests")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.max_batch < 1 or args.max_delay_ms < 0 or args.max_request_bytes < 1 or args.graceful_timeout < 0:
        raise DynconvError("--max-batch and --max-request-bytes must be >= 1, --max-delay-ms and "
                           "--graceful-timeout >= 0")
    if not 0 <= args.http_port < 65536:
        raise DynconvError(f"bad --http-port {args.http_port}")
    if not -1 <= args.grpc_port < 65536:
        raise DynconvError(f"bad --grpc-port {args.grpc_port}")
    if args.grpc_port == args.http_port and args.http_port != 0:
        raise DynconvError("--http-port and --grpc-port must differ")


def _run(args: argparse.Namespace) -> int:
    from .serve_models import model_sources, open_model  # noqa: PLC0415
    from .serve_runner import InferenceServer  # noqa: PLC0415
    from .server import ModelSet  # noqa: PLC0415

    _check_args(args)
    sources = model_sources(args.model, args.name, args.models)
    trt_options = {"plugins": args.plugins, "use_cuda_graph": args.cuda_graph}
    opened = []
    try:
        for source in sources:
            model = open_model(source, args.backend, **(trt_options if _is_trt(source.path, args.backend) else {}))
            opened.append(model)
        models = ModelSet(opened, max_batch=args.max_batch, max_delay_ms=args.max_delay_ms,
                          allow_non_finite=args.allow_non_finite, close_backends=True)
        server = InferenceServer(models, host=args.host, http_port=args.http_port,
                                 grpc_port=None if args.grpc_port < 0 else args.grpc_port,
                                 max_request_bytes=args.max_request_bytes, graceful_timeout=args.graceful_timeout,
                                 log_level="info" if args.verbose else "warning", on_started=_announce)
    except BaseException:
        for model in opened:
            model.backend.close()
        raise
    import asyncio  # noqa: PLC0415

    asyncio.run(server.serve())
    return EXIT_OK


def _announce(server) -> None:
    grpc = f", gRPC on {server.host}:{server.grpc_port}" if server.grpc_port is not None else ""
    names = ", ".join(server.models.models)
    print(f"{PROG}: serving {names} over HTTP on {server.http_url}{grpc}", flush=True)


def _is_trt(path, kind: str | None) -> bool:
    return kind == "trt" or (kind is None and str(path).endswith((".plan", ".engine", ".trt")))


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _run, _parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
