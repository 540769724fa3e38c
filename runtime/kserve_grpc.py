"""gRPC transport of ``dynconv-serve``: the Open Inference Protocol's ``inference.GRPCInferenceService``
(the service definition ``tritonclient`` ships) on a ``grpc.aio`` server.

Inputs come as ``raw_input_contents`` (binary, as tritonclient sends them) or typed ``contents``;
outputs always go back as ``raw_output_contents``. Protocol errors abort the call with the gRPC
code matching their HTTP status (400 INVALID_ARGUMENT, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED,
503 UNAVAILABLE, 500 INTERNAL) and are counted in ``/metrics`` with that HTTP status."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .kserve_codec import InferError, check_shape, datatype_of, dtype_of, tensor_from_bytes, tensor_from_list
from .server import EXTENSIONS, SERVER_NAME, SERVER_VERSION, ModelSet

log = logging.getLogger("dynconv.runtime")

# The typed InferTensorContents field that carries each datatype (FP16/BF16 travel only raw).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}


def _grpc_modules():
    try:
        import grpc  # noqa: PLC0415
        from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(f"{exc.name or exc}: the gRPC endpoint needs pip install grpcio 'tritonclient[grpc]' "
                          "(or start dynconv-serve with --grpc-port -1)", name=exc.name) from exc
    return grpc, service_pb2, service_pb2_grpc, model_config_pb2


def _status_code(grpc, status: int):
    codes = grpc.StatusCode
    return {400: codes.INVALID_ARGUMENT, 404: codes.NOT_FOUND, 413: codes.RESOURCE_EXHAUSTED,
            415: codes.INVALID_ARGUMENT, 503: codes.UNAVAILABLE}.get(status, codes.INTERNAL)


def decode_grpc_inputs(request: Any) -> dict[str, np.ndarray]:
    """The input arrays of a ``ModelInferRequest`` (raw contents, or typed contents)."""
    raws = list(request.raw_input_contents)
    if raws and len(raws) != len(request.inputs):
        raise InferError(400, f"the request has {len(request.inputs)} inputs but {len(raws)} raw_input_contents")
    feeds: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        name = tensor.name
        if name in feeds:
            raise InferError(400, f"input {name!r} is given twice")
        shape = check_shape(list(tensor.shape), name)
        dtype = dtype_of(tensor.datatype, name)
        if raws:
            feeds[name] = tensor_from_bytes(raws[i], dtype, shape, name)
            continue
        field = _CONTENTS_FIELD.get(tensor.datatype)
        if field is None:
            raise InferError(400, f"input {name!r}: {tensor.datatype} travels only in raw_input_contents")
        feeds[name] = tensor_from_list(list(getattr(tensor.contents, field)), dtype, shape, name)
    if not feeds:
        raise InferError(400, "the inference request has no inputs")
    return feeds


class InferenceServicer:
    """The servicer methods dynconv-serve implements; the others answer UNIMPLEMENTED."""

    def __init__(self, models: ModelSet) -> None:
        self.models = models
        self.grpc, self.pb, _, self.config_pb = _grpc_modules()

    async def _abort(self, context, exc: InferError):
        await context.abort(_status_code(self.grpc, exc.status), exc.message)

    async def ServerLive(self, request, context):  # noqa: N802 - names fixed by the service definition
        return self.pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):  # noqa: N802
        return self.pb.ServerReadyResponse(ready=self.models.ready)

    async def ServerMetadata(self, request, context):  # noqa: N802
        return self.pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS)

    async def ModelReady(self, request, context):  # noqa: N802
        try:
            self.models.get(request.name, request.version)
        except InferError:
            return self.pb.ModelReadyResponse(ready=False)  # an unknown model or version is not ready
        return self.pb.ModelReadyResponse(ready=self.models.ready)

    async def ModelMetadata(self, request, context):  # noqa: N802
        try:
            meta = self.models.get(request.name, request.version).metadata()
        except InferError as exc:
            await self._abort(context, exc)
        tensor = self.pb.ModelMetadataResponse.TensorMetadata
        return self.pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]], outputs=[tensor(**t) for t in meta["outputs"]])

    async def ModelConfig(self, request, context):  # noqa: N802
        from google.protobuf import json_format  # noqa: PLC0415

        try:
            config = self.models.get(request.name, request.version).config(self.models.max_delay_ms)
        except InferError as exc:
            await self._abort(context, exc)
        return self.pb.ModelConfigResponse(config=json_format.ParseDict(config, self.config_pb.ModelConfig()))

    async def RepositoryIndex(self, request, context):  # noqa: N802
        index = self.pb.RepositoryIndexResponse
        state = "READY" if self.models.ready else "UNAVAILABLE"
        return index(models=[index.ModelIndex(name=m.name, version=m.version, state=state)
                             for m in self.models.models.values()])

    async def ModelInfer(self, request, context):  # noqa: N802
        started = time.perf_counter()
        status = 200
        try:
            return await self._infer(request)
        except InferError as exc:
            status = exc.status
            await self._abort(context, exc)
        except Exception as exc:  # noqa: BLE001 - still a protocol answer, counted as the 500 it is
            log.exception("unexpected failure answering a gRPC inference request")
            status = 500
            await self._abort(context, InferError(500, f"internal error: {' '.join(str(exc).split())}"))
        finally:
            self.models.metrics.observe(self.models.label(request.model_name), "grpc", status,
                                        time.perf_counter() - started)

    async def _infer(self, request):
        model = self.models.get(request.model_name, request.model_version)
        feeds = decode_grpc_inputs(request)
        requested = [o.name for o in request.outputs] or None
        outputs = await self.models.infer(model, feeds, requested)
        response = self.pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        for name, arr in outputs.items():
            meta = {"name": name, "datatype": datatype_of(arr.dtype), "shape": list(arr.shape)}
            response.outputs.append(self.pb.ModelInferResponse.InferOutputTensor(**meta))
            response.raw_output_contents.append(np.ascontiguousarray(arr).tobytes())
        return response


def create_grpc_server(models: ModelSet, address: str, *, max_request_bytes: int):
    """A ``grpc.aio`` server bound to ``address`` (``host:port``, port 0 picks a free one); returns
    ``(server, port)``. Call ``await server.start()`` inside the event loop of the models."""
    grpc, _, service_grpc, _ = _grpc_modules()
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_request_bytes),
                                      ("grpc.max_send_message_length", -1),
                                      ("grpc.so_reuseport", 0)])
    servicer = InferenceServicer(models)
    # Only the implemented methods are bound; the rest keep the generated UNIMPLEMENTED answers.
    base = service_grpc.GRPCInferenceServiceServicer()
    for name in ("ServerLive", "ServerReady", "ServerMetadata", "ModelReady", "ModelMetadata", "ModelConfig",
                 "RepositoryIndex", "ModelInfer"):
        setattr(base, name, getattr(servicer, name))
    service_grpc.add_GRPCInferenceServiceServicer_to_server(base, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc reports a failed bind this way
        raise OSError(f"cannot bind the gRPC endpoint to {address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot bind the gRPC endpoint to {address}")
    return server, port
