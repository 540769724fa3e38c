"""``dynconv-serve MODEL --port 8000``: HTTP inference server with dynamic batching."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._cli import EXIT_OK, make_parser, require_file, run_main
from .errors import DynconvError
from .server import DEFAULT_MAX_REQUEST_BYTES

PROG = "dynconv-serve"


def _parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Serve an ONNX model (onnxruntime) or a TensorRT plan over HTTP.")
    p.add_argument("model", help="model.onnx (ort backend) or model.plan (trt backend)")
    p.add_argument("--backend", choices=("ort", "trt"), help="default: trt for .plan/.engine, else ort")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--plugins", default="auto", metavar="PATH|auto", help="plugin library (trt backend)")
    p.add_argument("--cuda-graph", action="store_true", help="replay the engine as CUDA graphs (trt backend)")
    p.add_argument("--max-batch", type=int, default=8, help="largest dynamic batch (rows along dim 0)")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="how long to wait to fill a batch")
    p.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES)
    p.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds to drain in-flight requests")
    return p


def _run(args: argparse.Namespace) -> int:
    import uvicorn  # noqa: PLC0415

    from .backends import open_backend  # noqa: PLC0415
    from .server import create_app  # noqa: PLC0415

    require_file(args.model, "model")
    if args.max_batch < 1 or args.max_delay_ms < 0 or args.max_request_bytes < 1:
        raise DynconvError("--max-batch and --max-request-bytes must be >= 1, --max-delay-ms >= 0")
    if not 0 <= args.port < 65536:
        raise DynconvError(f"bad --port {args.port}")
    kwargs = {}
    kind = args.backend
    if kind == "trt" or (kind is None and args.model.endswith((".plan", ".engine", ".trt"))):
        kwargs = {"plugins": args.plugins, "use_cuda_graph": args.cuda_graph}
    backend = open_backend(args.model, kind, **kwargs)
    app = create_app(backend, max_batch=args.max_batch, max_delay_ms=args.max_delay_ms,
                     max_request_bytes=args.max_request_bytes, close_backend=True)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=args.graceful_timeout,
                log_level="info" if args.verbose else "warning")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _run, _parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
