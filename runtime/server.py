"""Inference core of ``dynconv-serve``, shared by its HTTP/REST and gRPC transports (Open Inference
Protocol / KServe v2): the served models, each with its own dynamic batcher, the request checks,
the non-finite policy and the Prometheus metrics. Transports decode a request into arrays, call
:meth:`ModelSet.infer` and map :class:`InferError` to their own error answer."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .backends import Backend
from .batching import Batcher
from .errors import DynconvError
from .kserve_codec import InferError, datatype_of

log = logging.getLogger("dynconv.runtime")

DEFAULT_MAX_REQUEST_BYTES = 64 << 20
SERVER_NAME = "dynconv"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data", "model_repository(read-only)", "statistics(prometheus /metrics)"]

_ERROR_KINDS = {400: "invalid_request", 404: "not_found", 413: "too_large", 415: "content_type",
                503: "unavailable"}


class ServerMetrics:
    """Prometheus metrics of one server (its own registry, so tests can run several servers)."""

    def __init__(self, registry=None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector  # noqa: PLC0415

        self.registry = registry if registry is not None else CollectorRegistry()
        if registry is None:
            ProcessCollector(registry=self.registry)  # process_resident_memory_bytes etc.
        self.requests = Counter("dynconv_requests", "Inference requests by model, protocol and answered status",
                                ["model", "protocol", "status"], registry=self.registry)
        self.errors = Counter("dynconv_errors", "Failed inference requests by kind", ["kind"], registry=self.registry)
        self.latency = Histogram("dynconv_request_latency_seconds", "Inference request latency", ["model"],
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
                                 registry=self.registry)
        self.batch = Histogram("dynconv_batch_size", "Rows per backend call", ["model"],
                               buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128), registry=self.registry)

    def observe(self, model: str, protocol: str, status: int, seconds: float) -> None:
        """Record one answered request with the status it was really answered with."""
        self.requests.labels(model, protocol, str(status)).inc()
        self.latency.labels(model).observe(seconds)
        if status != 200:
            self.errors.labels(_ERROR_KINDS.get(status, "internal")).inc()


@dataclass
class ServedModel:
    """One model of the server: its protocol name and version, and the backend that runs it."""

    name: str
    backend: Backend
    version: str = "1"
    batcher: Batcher | None = field(default=None, repr=False)

    @property
    def platform(self) -> str:
        """Triton's platform name for the backend."""
        return "tensorrt_plan" if self.backend.name == "tensorrt" else "onnxruntime_onnx"

    def metadata(self) -> dict:
        """The protocol's model metadata (dynamic dims are -1)."""
        def tensors(specs):
            return [{"name": s.name, "datatype": datatype_of(s.dtype), "shape": s.to_json()["shape"]} for s in specs]

        return {"name": self.name, "versions": [self.version], "platform": self.platform,
                "inputs": tensors(self.backend.inputs), "outputs": tensors(self.backend.outputs)}

    def config(self, max_delay_ms: float = 0.0) -> dict:
        """Triton's model configuration in its JSON form (parses as ``model_config.ModelConfig``):
        with batching on, ``max_batch_size`` > 0 and dims without the batch dim, as in Triton."""
        from .triton import triton_type  # noqa: PLC0415

        batching = self.batcher is not None and self.batcher.batching
        max_batch = self.batcher.max_batch if batching and self.batcher is not None else 0

        def tensors(specs):
            return [{"name": s.name, "data_type": triton_type(s.dtype),
                     "dims": s.to_json()["shape"][1:] if batching else s.to_json()["shape"]} for s in specs]

        config = {"name": self.name, "platform": self.platform, "max_batch_size": max_batch,
                  "input": tensors(self.backend.inputs), "output": tensors(self.backend.outputs)}
        if batching:
            config["dynamic_batching"] = {"max_queue_delay_microseconds": int(max_delay_ms * 1000)}
        return config


class ModelSet:
    """The models of one server, their batchers, readiness and metrics.

    ``allow_non_finite``: inputs holding NaN/Inf are computed and returned (True) or refused with
    400 (False). Batchers start in :meth:`start` and drain in :meth:`close`, inside the event loop
    that serves the transports."""

    def __init__(self, models: Sequence[ServedModel], *, max_batch: int = 8, max_delay_ms: float = 2.0,
                 allow_non_finite: bool = False, registry=None, close_backends: bool = False) -> None:
        if not models:
            raise DynconvError("no model to serve")
        names = [m.name for m in models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DynconvError(f"model name(s) {duplicates} given twice; use --model NAME=PATH with distinct names")
        self.metrics = ServerMetrics(registry)
        self.models = {m.name: m for m in models}
        self.allow_non_finite = allow_non_finite
        self.max_delay_ms = max_delay_ms
        self.close_backends = close_backends
        self.ready = False
        for m in models:
            m.batcher = Batcher(m.backend, max_batch=max_batch, max_delay_s=max_delay_ms / 1e3,
                                on_batch=self.metrics.batch.labels(m.name).observe)

    async def start(self) -> None:
        for m in self.models.values():
            assert m.batcher is not None
            await m.batcher.start()
            log.info("serving model %r v%s (%s): inputs %s, batching %s up to %d", m.name, m.version, m.backend.name,
                     m.backend.input_names, "on" if m.batcher.batching else "off", m.batcher.max_batch)
        self.ready = True

    async def close(self) -> None:
        """Refuse new requests, finish the queued ones, release the backends."""
        self.ready = False
        for m in self.models.values():
            if m.batcher is not None:
                await m.batcher.close()
            if self.close_backends:
                m.backend.close()

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model ``name`` (404 unless served; 404 for any version but its own)."""
        model = self.models.get(name)
        if model is None:
            raise InferError(404, f"unknown model {name!r}; this server has {sorted(self.models)}")
        if version not in (None, "", model.version):
            raise InferError(404, f"unknown version {version!r} of model {name!r}; it has version {model.version!r}")
        return model

    def label(self, name: str) -> str:
        """The metrics label for a requested model name (bounded: unknown names share one)."""
        return name if name in self.models else "<unknown>"

    async def infer(self, model: ServedModel, feeds: Mapping[str, np.ndarray],
                    requested: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Check ``feeds``, run them through the model's batcher and return the requested outputs
        (all by default) in the model's order."""
        if not self.ready:
            raise InferError(503, "the server is not ready (starting or shutting down)")
        check_inputs(model, feeds, allow_non_finite=self.allow_non_finite)
        names = output_names(model, requested)
        assert model.batcher is not None
        try:
            out = await model.batcher.submit(feeds)
        except DynconvError as exc:
            raise InferError(400, str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - answered as a protocol 500 with its message
            log.exception("inference failed on model %r", model.name)
            raise InferError(500, f"inference failed: {' '.join(str(exc).split())}") from exc
        return {n: out[n] for n in names}


def output_names(model: ServedModel, requested: Sequence[str] | None) -> list[str]:
    """The outputs to return: ``requested`` (checked, deduplicated) or all of the model's."""
    known = model.backend.output_names
    if not requested:
        return list(known)
    unknown = [n for n in requested if n not in known]
    if unknown:
        raise InferError(400, f"unknown output(s) {unknown} requested from model {model.name!r}; it has {known}")
    return [n for n in known if n in set(requested)]


def check_inputs(model: ServedModel, feeds: Mapping[str, np.ndarray], *, allow_non_finite: bool) -> None:
    """400 unless ``feeds`` has exactly the model's inputs with their datatypes and shapes (and,
    unless allowed, only finite values)."""
    backend = model.backend
    specs = {s.name: s for s in backend.inputs}
    unknown = sorted(set(feeds) - set(specs))
    missing = [n for n in specs if n not in feeds]
    if unknown or missing:
        what = f"unknown input(s) {unknown}" if unknown else f"missing input(s) {missing}"
        raise InferError(400, f"{what} for model {model.name!r}; its inputs are {list(specs)}")
    for name, spec in specs.items():
        got, want = datatype_of(feeds[name].dtype), datatype_of(spec.dtype)
        if got != want:
            raise InferError(400, f"input {name!r} has datatype {got}; model {model.name!r} expects {want}")
    try:
        backend.validate(feeds)
    except DynconvError as exc:
        raise InferError(400, str(exc)) from exc
    if model.batcher is not None and model.batcher.batching and any(a.ndim and a.shape[0] == 0 for a in feeds.values()):
        raise InferError(400, "batch dim 0 must be >= 1")
    if not allow_non_finite:
        for name, arr in feeds.items():
            bad = _non_finite_count(arr)
            if bad:
                raise InferError(400, f"input {name!r} holds {bad} non-finite value(s) (NaN or Inf); send finite "
                                      "values, or start dynconv-serve with --allow-non-finite to compute them")


def _non_finite_count(arr: np.ndarray) -> int:
    if arr.dtype.kind != "f" and arr.dtype.name != "bfloat16":
        return 0
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))
