"""HTTP inference server (FastAPI): ``create_app(backend, ...)``.

Endpoints: ``GET /v1/models/metadata``, ``POST /v1/infer`` (JSON ``{"inputs": {name: nested
list}}`` or an ``application/x-npz`` body; the response uses the request's format),
``GET /health/live``, ``GET /health/ready``, ``GET /metrics`` (Prometheus).
Errors are JSON ``{"error": {"code": N, "message": "..."}}``: 400 malformed body, 413 too large,
415 unknown content type, 422 wrong input names/shapes/dtypes, 503 shutting down, 500 backend failure."""


# No "from __future__ import annotations" here: FastAPI must see the real Request annotation.
import contextlib
import json
import logging
import time

import numpy as np

from .backends import Backend
from .batching import Batcher
from .compare import decode_npz, encode_npz
from .errors import DynconvError
from .tensors import TensorSpec, dtype_name

log = logging.getLogger("dynconv.runtime")

NPZ = "application/x-npz"
DEFAULT_MAX_REQUEST_BYTES = 64 << 20


class HttpError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with that status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Metrics:
    def __init__(self, registry) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: PLC0415

        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter("dynconv_requests", "Inference requests by HTTP status", ["status"],
                                registry=self.registry)
        self.errors = Counter("dynconv_errors", "Failed inference requests by kind", ["kind"], registry=self.registry)
        self.latency = Histogram("dynconv_request_latency_seconds", "Inference request latency",
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
                                 registry=self.registry)
        self.batch = Histogram("dynconv_batch_size", "Rows per backend call",
                               buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128), registry=self.registry)


def _error_kind(status: int) -> str:
    return {400: "malformed", 413: "too_large", 415: "content_type", 422: "invalid_input",
            503: "unavailable"}.get(status, "internal")


def decode_json_body(body: bytes, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """``{"inputs": {name: nested list}}`` -> arrays in the specs' dtypes (400 on bad JSON/lists)."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("inputs"), dict):
        raise HttpError(400, 'JSON body must be an object {"inputs": {"<name>": <nested list>}}')
    dtypes = {s.name: s.dtype for s in specs}
    feeds = {}
    for name, value in obj["inputs"].items():
        if name not in dtypes:
            raise HttpError(422, f"unknown input name {name!r}; the model's inputs are {sorted(dtypes)}")
        try:
            arr = np.asarray(value, dtype=dtypes[name])
        except (ValueError, TypeError) as exc:
            raise HttpError(400, f"input {name!r} is not a rectangular numeric nested list: {exc}") from exc
        feeds[name] = arr
    return feeds


def create_app(
    backend: Backend,
    *,
    max_batch: int = 8,
    max_delay_ms: float = 2.0,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    registry=None,
    close_backend: bool = False,
):
    """A FastAPI app serving ``backend``; the batcher starts and drains with the app's lifespan.
    ``registry`` is a prometheus ``CollectorRegistry`` (a fresh one by default)."""
    from fastapi import FastAPI, Request  # noqa: PLC0415
    from fastapi.responses import JSONResponse, Response  # noqa: PLC0415
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # noqa: PLC0415

    metrics = _Metrics(registry)
    batcher = Batcher(backend, max_batch=max_batch, max_delay_s=max_delay_ms / 1e3, on_batch=metrics.batch.observe)
    state = {"ready": False}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        state["ready"] = True
        log.info("serving %s (%s), batching %s up to %d", backend.input_names, backend.name,
                 "on" if batcher.batching else "off", batcher.max_batch)
        try:
            yield
        finally:
            state["ready"] = False
            await batcher.close()  # drains every queued request
            if close_backend:
                backend.close()

    app = FastAPI(title="dynconv inference server", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.metrics = metrics

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"code": status, "message": message}}, status_code=status)

    @app.get("/health/live")
    async def live():
        return {"status": "live"}

    @app.get("/health/ready")
    async def ready():
        if not state["ready"]:
            return error(503, "not ready")
        return {"status": "ready"}

    @app.get("/v1/models/metadata")
    async def model_metadata():
        meta = backend.metadata()
        meta.update({"max_batch": batcher.max_batch, "dynamic_batching": batcher.batching,
                     "max_delay_ms": max_delay_ms, "max_request_bytes": max_request_bytes})
        return meta

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError as exc:
                raise HttpError(400, "bad Content-Length header") from exc
            if declared > max_request_bytes:
                raise HttpError(413, f"request body of {declared} bytes exceeds the limit of {max_request_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_request_bytes:
                raise HttpError(413, f"request body exceeds the limit of {max_request_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/v1/infer")
    async def infer(request: Request):
        started = time.perf_counter()
        status = 200
        try:
            if not state["ready"]:
                raise HttpError(503, "server is shutting down")
            ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if ctype not in ("application/json", NPZ):
                raise HttpError(415, f"unsupported Content-Type {ctype!r}; use application/json or {NPZ}")
            body = await read_body(request)
            if not body:
                raise HttpError(400, "empty request body")
            if ctype == NPZ:
                try:
                    feeds = decode_npz(body, what="npz body")
                except DynconvError as exc:
                    raise HttpError(400, str(exc)) from exc
            else:
                feeds = decode_json_body(body, backend.inputs)
            try:
                backend.validate(feeds)
            except DynconvError as exc:
                raise HttpError(422, str(exc)) from exc
            if batcher.batching and any(feeds[s.name].shape[0] == 0 for s in backend.inputs):
                raise HttpError(422, "batch dim 0 must be >= 1")
            try:
                out = await batcher.submit(feeds)
            except DynconvError as exc:
                raise HttpError(422, str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 - reported as a 500 with its message
                log.exception("inference failed")
                raise HttpError(500, f"inference failed: {exc}") from exc
            if ctype == NPZ:
                return Response(encode_npz(out), media_type=NPZ)
            return JSONResponse({"outputs": {k: v.tolist() for k, v in out.items()},
                                 "dtypes": {k: dtype_name(v.dtype) for k, v in out.items()}})
        except HttpError as exc:
            status = exc.status
            metrics.errors.labels(_error_kind(status)).inc()
            return error(status, exc.message)
        finally:
            metrics.requests.labels(str(status)).inc()
            metrics.latency.observe(time.perf_counter() - started)

    return app

