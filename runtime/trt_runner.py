"""Polygraphy runners over dynconv's own backends.

Polygraphy's ``TrtRunner`` crashes when the TensorRT 8.6.1 Python bindings run on 8.6.0 libraries
(the bundle the GPU hosts have), so engines run through :class:`dynconv.runtime.Engine` instead:
:class:`BackendRunner` adapts any dynconv :class:`~dynconv.runtime.backends.Backend` to polygraphy's
``BaseRunner`` interface, and :func:`trt_engine_runner` is the TensorRT one. The backend is created on
``activate()``, so a runner is cheap to build and TensorRT/torch are imported only when it runs."""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from .backends import TrtBackend
from .tensors import TensorSpec


class InferenceModel(Protocol):
    """What a runner needs: ``infer(feeds) -> outputs`` and ``output_names`` (a dynconv Backend, or
    the PyTorch reference with ``inputs`` given to the runner)."""

    output_names: list[str]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class BackendRunner(BaseRunner):
    """A polygraphy runner over a dynconv backend: given ready-made (the caller closes it) or as a
    factory called on activation (the runner closes what it made).

    ``inputs`` overrides the input specs (for models without them); dynamic dims are reported as
    ``None``, polygraphy's convention. Outputs are numpy arrays by name, in the model's order."""

    def __init__(self, model: InferenceModel | Callable[[], InferenceModel], *,
                 inputs: Sequence[TensorSpec] | None = None, name: str | None = None,
                 prefix: str = "dynconv-runner") -> None:
        super().__init__(name=name, prefix=prefix)
        self._given = model if hasattr(model, "infer") else None
        self._factory = None if self._given is not None else model
        self._inputs = list(inputs) if inputs is not None else None
        self.model: InferenceModel | None = None

    def activate_impl(self) -> None:
        self.model = self._given if self._given is not None else self._factory()

    def get_input_metadata_impl(self) -> TensorMetadata:
        meta = TensorMetadata()
        for spec in self._inputs if self._inputs is not None else self._active().inputs:
            meta.add(spec.name, dtype=spec.dtype, shape=list(spec.shape))
        return meta

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> OrderedDict:
        model = self._active()
        feeds = {name: np.asarray(arr) for name, arr in feed_dict.items()}
        start = time.perf_counter()
        outputs = model.infer(feeds)
        self.inference_time = time.perf_counter() - start
        return OrderedDict((name, outputs[name]) for name in model.output_names)

    def deactivate_impl(self) -> None:
        model, self.model = self.model, None
        if model is not None and model is not self._given and hasattr(model, "close"):
            model.close()

    def _active(self):
        if self.model is None:
            raise RuntimeError(f"{self.name} is not active: use it inside 'with runner:' or Comparator.run")
        return self.model


def trt_engine_runner(plan: str | os.PathLike, *, plugins: str | os.PathLike | None = "auto",
                      name: str | None = None) -> BackendRunner:
    """A polygraphy runner for a dynconv TensorRT plan (its metadata JSON beside it), run through
    :class:`dynconv.runtime.Engine` with the dynconv plugin library."""
    return BackendRunner(lambda: TrtBackend(plan, plugins=plugins), name=name, prefix="trt-dynconv-runner")
