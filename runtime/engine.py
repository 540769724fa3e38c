"""``Engine``: a TensorRT plan with its plugin library, checked against its metadata, run by tensor
name on numpy or device arrays, optionally replayed as a CUDA graph.

Only the tensor-name APIs of TensorRT >= 8.5 are used (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``); no profile-indexed format queries (they crash on the 8.6 bundle)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import DynconvError

from . import device, plugin_lib, trt_compat
from .metadata import EngineMetadata, check_compatible, metadata_path_for
from .tensors import TensorSpec, dtype_name, format_shape, validate_feeds

log = logging.getLogger("dynconv.runtime")


class Engine:
    """A deserialized TensorRT engine with one execution context.

    ``infer(feeds)`` takes numpy arrays or CUDA arrays (``__cuda_array_interface__`` or DLPack) by
    input name and returns numpy arrays by output name. ``infer_async`` returns device views of the
    engine's own output buffers without synchronizing (valid until the next call).
    Not re-entrant across threads: calls are serialized by a lock."""

    def __init__(
        self,
        plan: str | os.PathLike,
        *,
        plugins: str | os.PathLike | None = "auto",
        metadata: str | os.PathLike | EngineMetadata | None = None,
        check_metadata: bool = True,
        use_cuda_graph: bool = False,
    ) -> None:
        self.plan_path = Path(plan)
        if not self.plan_path.is_file():
            raise DynconvError(f"plan {str(self.plan_path)!r} does not exist")
        if isinstance(metadata, EngineMetadata):
            self.metadata = metadata
        else:
            self.metadata = EngineMetadata.load(metadata or metadata_path_for(self.plan_path))
        trt = trt_compat.import_tensorrt()
        if device.device_count() == 0:
            raise DynconvError("no CUDA device is visible: a TensorRT engine needs a GPU (use the ort backend)")
        lib = self._plugin_library(plugins)
        if check_metadata:
            gpu = device.current_gpu()
            check_compatible(self.metadata, tensorrt_version=trt.__version__,
                             compute_capability=gpu.compute_capability, gpu_name=gpu.name,
                             plugin_sha256=plugin_lib.digest(lib))
        if lib is not None:
            plugin_lib.load(lib)
        logger = trt_compat.logger(trt)
        if hasattr(trt, "init_libnvinfer_plugins"):
            trt.init_libnvinfer_plugins(logger, "")
        try:
            self._runtime = trt.Runtime(logger)
        except TypeError as exc:  # pybind11 "factory function returned nullptr"
            raise DynconvError("TensorRT could not create a runtime (CUDA initialisation failed?)") from exc
        self._engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self._engine is None:
            raise DynconvError(
                f"TensorRT could not deserialize {self.plan_path.name} (built by another TensorRT, GPU or "
                "plugin build?); rebuild it with dynconv-build"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise DynconvError("TensorRT could not create an execution context (out of GPU memory?)")
        self.inputs, self.outputs = self._io_specs(trt)
        self._stream = device.Stream()
        self._buffers: dict[str, device.DeviceBuffer] = {s.name: device.DeviceBuffer()
                                                          for s in (*self.inputs, *self.outputs)}
        self._bound: dict[str, int] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._out_shapes: dict[str, tuple[int, ...]] = {}
        self.use_cuda_graph = use_cuda_graph
        self._graphs: dict[tuple, device.Graph] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ setup

    def _plugin_library(self, plugins) -> Path | None:
        needed = self.metadata.plugin_sha256 is not None
        lib = plugin_lib.locate(plugins, required=False)
        if lib is None and needed and plugins in (None, "auto") and self.metadata.plugin_library:
            recorded = Path(self.metadata.plugin_library)
            lib = recorded if recorded.is_file() else None
        if lib is None and needed:
            raise DynconvError(
                "the plan needs the dynconv plugin library but none was found: pass plugins=PATH "
                f"(--plugins) or set {plugin_lib.ENV_VAR}"
            )
        return lib

    def _io_specs(self, trt) -> tuple[list[TensorSpec], list[TensorSpec]]:
        engine = self._engine
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dims = tuple(None if int(d) < 0 else int(d) for d in engine.get_tensor_shape(name))
            spec = TensorSpec(name, trt_compat.np_dtype(trt, engine.get_tensor_dtype(name)), dims)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        meta_names = ([s.name for s in self.metadata.inputs], [s.name for s in self.metadata.outputs])
        if meta_names != ([s.name for s in inputs], [s.name for s in outputs]):
            raise DynconvError(
                f"the metadata beside {self.plan_path.name} does not describe this plan "
                f"(I/O {meta_names} vs {[s.name for s in inputs]}, {[s.name for s in outputs]}); rebuild it"
            )
        return inputs, outputs

    # ------------------------------------------------------------------ shapes

    def check_shape(self, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        """DynconvError unless ``shape`` fits the static dims and the profile range of ``spec``."""
        rng = self.metadata.input_range(spec.name)
        if rng is None:
            return
        lo, _, hi = rng
        for axis, (d, a, b) in enumerate(zip(shape, lo, hi)):
            if not a <= d <= b:
                raise DynconvError(
                    f"input {spec.name!r} has shape {list(shape)}: dim {axis} is {d} but the engine's "
                    f"profile allows {a}..{b} (min {lo}, max {hi}); rebuild with a wider --shapes range"
                )

    def _set_shapes(self, views: Mapping[str, object]) -> None:
        for spec in self.inputs:
            shape = tuple(views[spec.name].shape)  # type: ignore[attr-defined]
            if self._shapes.get(spec.name) != shape:
                if not self._context.set_input_shape(spec.name, shape):
                    raise DynconvError(f"TensorRT rejected shape {list(shape)} for input {spec.name!r}")
                self._shapes[spec.name] = shape
                self._out_shapes.clear()
        if not self._out_shapes:
            for spec in self.outputs:
                shape = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
                if any(d < 0 for d in shape):
                    raise DynconvError(f"output {spec.name!r} has a data-dependent shape, which dynconv does not support")
                self._out_shapes[spec.name] = shape

    # ------------------------------------------------------------------ run

    def _views(self, feeds: Mapping[str, object]) -> dict[str, object]:
        views = {name: device.view_of(arr) for name, arr in feeds.items()}
        validate_feeds(self.inputs, views)
        for spec in self.inputs:
            self.check_shape(spec, tuple(views[spec.name].shape))  # type: ignore[attr-defined]
        return views

    def _bind(self, name: str, ptr: int) -> bool:
        if self._bound.get(name) != ptr:
            self._context.set_tensor_address(name, ptr)
            self._bound[name] = ptr
            return True
        return False

    def _stage(self, views: Mapping[str, object], stream: int) -> bool:
        """Copy/bind inputs, size and bind outputs; True when any address changed."""
        changed = False
        for spec in self.inputs:
            v = views[spec.name]
            if isinstance(v, device.DeviceView) and v.on_device and not self.use_cuda_graph:
                changed |= self._bind(spec.name, v.ptr)
                continue
            buf = self._buffers[spec.name]
            if isinstance(v, device.DeviceView) and v.on_device:
                ptr = buf.ensure(v.nbytes)
                device.copy_dtod_async(ptr, v.ptr, v.nbytes, stream)
            else:
                arr = np.ascontiguousarray(v)
                ptr = buf.ensure(arr.nbytes)
                device.copy_htod_async(ptr, arr, stream)
            changed |= self._bind(spec.name, ptr)
        for spec in self.outputs:
            nbytes = int(np.prod(self._out_shapes[spec.name], dtype=np.int64)) * spec.dtype.itemsize
            changed |= self._bind(spec.name, self._buffers[spec.name].ensure(nbytes))
        return changed

    def execute(self, stream: int | None = None) -> None:
        """Enqueue the engine once with the current shapes and bindings (no copies)."""
        handle = self._stream.handle if stream is None else device.stream_handle(stream)
        if not self._context.execute_async_v3(handle):
            raise DynconvError("TensorRT failed to enqueue the engine; rerun with -v for TensorRT's log")

    def _run(self, stream: int) -> None:
        if not self.use_cuda_graph:
            self.execute(stream)
            return
        key = tuple(self._shapes[s.name] for s in self.inputs)
        graph = self._graphs.get(key)
        if graph is None:
            self.execute(stream)  # TensorRT needs one plain enqueue after a shape change
            device.synchronize(stream)
            graph = device.Graph(self.execute, stream)
            self._graphs[key] = graph
        graph.launch(stream)

    def infer_async(self, feeds: Mapping[str, object], stream=None) -> dict[str, device.DeviceView]:
        """Enqueue on ``stream`` (default: the engine's own) and return device views of the outputs
        without waiting; they stay valid until the next call."""
        handle = self._stream.handle if stream is None else device.stream_handle(stream)
        with self._lock:
            views = self._views(feeds)
            self._set_shapes(views)
            if self._stage(views, handle):
                self._drop_graphs()
            self._run(handle)
            return {
                s.name: device.DeviceView(self._buffers[s.name].ptr, self._out_shapes[s.name], s.dtype, True, self)
                for s in self.outputs
            }

    def infer(self, feeds: Mapping[str, object], stream=None) -> dict[str, np.ndarray]:
        """Run on ``feeds`` (numpy or CUDA arrays by input name); numpy outputs by name."""
        handle = self._stream.handle if stream is None else device.stream_handle(stream)
        with self._lock:
            out = self.infer_async(feeds, handle)
            host = {}
            for name, view in out.items():
                arr = np.empty(view.shape, dtype=view.dtype)
                if arr.nbytes:
                    device.copy_dtoh_async(arr, view.ptr, handle)
                host[name] = arr
            device.synchronize(handle)
        return host

    def _drop_graphs(self) -> None:
        for g in self._graphs.values():
            g.destroy()
        self._graphs.clear()

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Free device memory, graphs and the stream."""
        self._drop_graphs()
        for buf in getattr(self, "_buffers", {}).values():
            buf.free()
        if hasattr(self, "_stream"):
            self._stream.destroy()
        self._context = None
        self._engine = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        ios = ", ".join(f"{s.name}: {dtype_name(s.dtype)}{format_shape(s.shape)}" for s in (*self.inputs, *self.outputs))
        return f"Engine({self.plan_path.name}; {ios})"
