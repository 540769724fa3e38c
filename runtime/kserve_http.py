"""HTTP/REST transport of ``dynconv-serve``: the Open Inference Protocol (KServe v2) endpoints as
Triton serves them, with JSON tensors and the binary tensor data extension, plus ``/metrics``.

Errors are ``{"error": "<message>"}`` with status 400 (malformed or invalid request), 404 (unknown
model, version or path), 413 (body over the limit), 415 (content type or encoding), 503 (not
ready) or 500 (the backend failed); every request is counted in ``/metrics`` with that status."""

# No "from __future__ import annotations" here: FastAPI must see the real Request annotation.
import logging
import time
import zlib

from .kserve_codec import HEADER_LENGTH, InferError, decode_http_request, encode_http_response
from .server import EXTENSIONS, SERVER_NAME, SERVER_VERSION, ModelSet

log = logging.getLogger("dynconv.runtime")

JSON = "application/json"
OCTET = "application/octet-stream"
_CONTENT_TYPES = ("", JSON, OCTET)
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate a gzip/deflate body without ever holding more than ``limit`` bytes (413 past it)."""
    inflater = zlib.decompressobj(_ENCODINGS[encoding])
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InferError(400, f"the {encoding} request body is corrupt: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise InferError(413, f"the decompressed request body exceeds the limit of {limit} bytes")
    return out


def create_http_app(models: ModelSet, *, max_request_bytes: int):
    """A FastAPI app over ``models`` (their batchers are started by the caller's event loop)."""
    from fastapi import FastAPI, Request  # noqa: PLC0415
    from fastapi.responses import JSONResponse, Response  # noqa: PLC0415
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # noqa: PLC0415
    from starlette.exceptions import HTTPException  # noqa: PLC0415

    app = FastAPI(title="dynconv-serve (Open Inference Protocol)", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):  # unknown paths and methods answer in the protocol's form
        return error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        return JSONResponse({"ready": models.ready}, status_code=200 if models.ready else 400)

    @app.get("/v2")
    async def server_metadata():
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}

    @app.post("/v2/repository/index")
    async def repository_index():
        state = "READY" if models.ready else "UNAVAILABLE"
        return [{"name": m.name, "version": m.version, "state": state} for m in models.models.values()]

    def guarded(fn):
        try:
            return fn()
        except InferError as exc:
            return error(exc.status, exc.message)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str = ""):
        return guarded(lambda: models.get(name, version).metadata())

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    async def model_config(name: str, version: str = ""):
        return guarded(lambda: models.get(name, version).config(models.max_delay_ms))

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str = ""):
        def answer():
            model = models.get(name, version)
            return JSONResponse({"name": model.name, "ready": models.ready}, status_code=200 if models.ready else 400)

        return guarded(answer)

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(models.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise InferError(400, f"bad Content-Length header {length!r}")
            if int(length) > max_request_bytes:
                raise InferError(413, f"request body of {length} bytes exceeds the limit of {max_request_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_request_bytes:
                raise InferError(413, f"request body exceeds the limit of {max_request_bytes} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding in _ENCODINGS:
            body = _decompress(body, encoding, max_request_bytes)
        elif encoding != "identity":
            raise InferError(415, f"unsupported Content-Encoding {encoding!r}; use gzip, deflate or none")
        if not body:
            raise InferError(400, "empty request body")
        return body

    def header_length(request: Request) -> int | None:
        text = request.headers.get(HEADER_LENGTH)
        if text is None:
            return None
        if not text.strip().isdigit():
            raise InferError(400, f"bad Inference-Header-Content-Length {text!r}")
        return int(text)

    async def run_infer(request: Request, name: str, version: str):
        model = models.get(name, version)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in _CONTENT_TYPES:
            raise InferError(415, f"unsupported Content-Type {ctype!r}; send {JSON} (or {OCTET} with "
                                  "the Inference-Header-Content-Length header for binary tensors)")
        hlen = header_length(request)
        parsed = decode_http_request(await read_body(request), hlen)
        outputs = await models.infer(model, parsed.inputs, parsed.outputs)
        payload, json_len = encode_http_response(model.name, model.version, parsed, outputs)
        if json_len is None:
            return Response(payload, media_type=JSON)
        return Response(payload, media_type=OCTET, headers={"Inference-Header-Content-Length": str(json_len)})

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(request: Request, name: str, version: str = ""):
        started = time.perf_counter()
        status = 200
        try:
            return await run_infer(request, name, version)
        except InferError as exc:
            status = exc.status
            return error(status, exc.message)
        except Exception as exc:  # noqa: BLE001 - still a protocol answer, counted as the 500 it is
            log.exception("unexpected failure answering an inference request")
            status = 500
            return error(status, f"internal error: {' '.join(str(exc).split())}")
        finally:
            models.metrics.observe(models.label(name), "http", status, time.perf_counter() - started)

    return app
