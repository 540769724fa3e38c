"""Thin CUDA runtime layer over cuda-python (``cuda.bindings.runtime`` or the older ``cuda.cudart``):
device memory, streams, events, copies, graphs, and zero-copy views of caller device arrays
(``__cuda_array_interface__`` and DLPack). Imported lazily: only the TensorRT backend needs it."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from .errors import DynconvError

_CUDART: ModuleType | None = None


def cudart() -> ModuleType:
    """The cuda-python runtime module, or DynconvError saying how to install it."""
    global _CUDART
    if _CUDART is None:
        try:
            from cuda.bindings import runtime as rt  # noqa: PLC0415  (cuda-python >= 12.6)
        except ImportError:
            try:
                from cuda import cudart as rt  # type: ignore[no-redef]  # noqa: PLC0415
            except ImportError as exc:
                raise DynconvError(
                    "cuda-python is not installed; install it with pip install 'dynconv[tensorrt]'"
                ) from exc
        _CUDART = rt
    return _CUDART


def check(result):
    """Unpack a cuda-python ``(err, *values)`` tuple, raising DynconvError on a CUDA error."""
    rt = cudart()
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if err != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(err)[1]
        text = rt.cudaGetErrorString(err)[1]
        raise DynconvError(f"CUDA error {_s(name)}: {_s(text)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def device_count() -> int:
    """Number of visible CUDA devices; 0 when cuda-python or a driver is missing."""
    try:
        rt = cudart()
        err, count = rt.cudaGetDeviceCount()
    except (DynconvError, RuntimeError, OSError):
        return 0
    return int(count) if err == rt.cudaError_t.cudaSuccess else 0


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.6"


def current_gpu() -> GpuInfo:
    """Name and compute capability of the current device."""
    rt = cudart()
    dev = check(rt.cudaGetDevice())
    props = check(rt.cudaGetDeviceProperties(dev))
    name = props.name
    name = name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)
    return GpuInfo(name=name, compute_capability=f"{props.major}.{props.minor}")


def stream_handle(stream) -> int:
    """A raw ``cudaStream_t`` as int from an int, a cuda-python stream, or an object with
    ``__cuda_stream__`` (CUDA stream protocol), ``cuda_stream`` (torch) or ``ptr`` (cupy)."""
    if stream is None:
        return 0
    if isinstance(stream, int):
        return stream
    proto = getattr(stream, "__cuda_stream__", None)
    if proto is not None:
        value = proto() if callable(proto) else proto
        return int(value[1])
    for attr in ("cuda_stream", "ptr", "handle"):
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    try:
        return int(stream)
    except (TypeError, ValueError) as exc:
        raise DynconvError(f"cannot use {type(stream).__name__} as a CUDA stream") from exc


class DeviceBuffer:
    """A grow-only device allocation."""

    def __init__(self) -> None:
        self.ptr = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> int:
        """Make the buffer at least ``nbytes`` (>= 1) and return its address."""
        nbytes = max(int(nbytes), 1)
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(check(cudart().cudaMalloc(nbytes)))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr))
            self.ptr = 0
            self.nbytes = 0


class Stream:
    """An owned non-blocking CUDA stream."""

    def __init__(self) -> None:
        rt = cudart()
        self.handle_obj = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
        self.handle = int(self.handle_obj)

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.handle))

    def destroy(self) -> None:
        if self.handle:
            check(cudart().cudaStreamDestroy(self.handle))
            self.handle = 0


def synchronize(stream: int) -> None:
    check(cudart().cudaStreamSynchronize(stream))


def copy_htod_async(dst: int, src: np.ndarray, stream: int) -> None:
    rt = cudart()
    check(rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))


def copy_dtoh_async(dst: np.ndarray, src: int, stream: int) -> None:
    rt = cudart()
    check(rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))


def copy_dtod_async(dst: int, src: int, nbytes: int, stream: int) -> None:
    rt = cudart()
    check(rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream))


class Event:
    """A CUDA event for GPU-side timing."""

    def __init__(self) -> None:
        self.handle = check(cudart().cudaEventCreate())

    def record(self, stream: int) -> None:
        check(cudart().cudaEventRecord(self.handle, stream))

    def elapsed_ms(self, start: "Event") -> float:
        check(cudart().cudaEventSynchronize(self.handle))
        return float(check(cudart().cudaEventElapsedTime(start.handle, self.handle)))

    def destroy(self) -> None:
        if self.handle is not None:
            check(cudart().cudaEventDestroy(self.handle))
            self.handle = None


class Graph:
    """A captured CUDA graph of whatever ``fn(stream)`` enqueues; replay with :meth:`launch`."""

    def __init__(self, fn, stream: int) -> None:
        rt = cudart()
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(rt.cudaStreamBeginCapture(stream, mode))
        try:
            fn(stream)
        finally:
            graph = check(rt.cudaStreamEndCapture(stream))
        try:
            self.exec = check(rt.cudaGraphInstantiate(graph, 0))
        finally:
            check(rt.cudaGraphDestroy(graph))

    def launch(self, stream: int) -> None:
        check(cudart().cudaGraphLaunch(self.exec, stream))

    def destroy(self) -> None:
        if self.exec is not None:
            check(cudart().cudaGraphExecDestroy(self.exec))
            self.exec = None


# ---------------------------------------------------------------- caller-owned device arrays


@dataclass(frozen=True)
class DeviceView:
    """A caller's array as seen by the engine: address, shape, dtype, and where it lives.
    ``owner`` keeps the producer (and any DLPack capsule) alive while the view is used."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    on_device: bool
    owner: object = None

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def __cuda_array_interface__(self) -> dict:
        if not self.on_device:
            raise AttributeError("host view has no __cuda_array_interface__")
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3,
                "strides": None}


def _contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, acc = [], itemsize
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(strides))


def from_cuda_array_interface(obj) -> DeviceView:
    """A :class:`DeviceView` of an object exposing ``__cuda_array_interface__`` (torch, cupy, numba)."""
    cai = obj.__cuda_array_interface__
    shape = tuple(int(d) for d in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is not None and tuple(strides) != _contiguous_strides(shape, dtype.itemsize):
        raise DynconvError("device input arrays must be C-contiguous (call .contiguous() first)")
    return DeviceView(int(cai["data"][0]), shape, dtype, True, obj)


# DLPack C structs (dlpack.h v0.x/v1 DLTensor layout, which the legacy ``dltensor`` capsule holds).
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_KDL_CPU, _KDL_CUDA, _KDL_CUDA_HOST, _KDL_CUDA_MANAGED = 1, 2, 3, 13
_DL_CODES = {0: "i", 1: "u", 2: "f", 6: "b"}


def _capsule_pointer(capsule) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return int(get(capsule, b"dltensor"))


def from_dlpack(obj) -> DeviceView:
    """A :class:`DeviceView` of a DLPack producer (``__dlpack__``), without consuming the capsule:
    the capsule (kept in ``owner``) and the producer keep the memory alive."""
    try:
        capsule = obj.__dlpack__()
    except TypeError:
        capsule = obj.__dlpack__(stream=None)
    tensor = _DLTensor.from_address(_capsule_pointer(capsule))  # DLManagedTensor starts with DLTensor
    if tensor.dtype.lanes != 1 or tensor.dtype.code not in _DL_CODES:
        raise DynconvError("unsupported DLPack dtype (only int/uint/float/bool with 1 lane)")
    kind = _DL_CODES[tensor.dtype.code]
    if tensor.dtype.code == 6:
        dtype = np.dtype(np.bool_)
    else:
        dtype = np.dtype(f"{kind}{tensor.dtype.bits // 8}")
    shape = tuple(int(tensor.shape[i]) for i in range(tensor.ndim))
    if tensor.strides:
        strides = tuple(int(tensor.strides[i]) * dtype.itemsize for i in range(tensor.ndim))
        if any(d > 1 and s != c for d, s, c in zip(shape, strides, _contiguous_strides(shape, dtype.itemsize))):
            raise DynconvError("device input arrays must be C-contiguous (call .contiguous() first)")
    on_device = tensor.device.device_type in (_KDL_CUDA, _KDL_CUDA_MANAGED)
    if not on_device and tensor.device.device_type not in (_KDL_CPU, _KDL_CUDA_HOST):
        raise DynconvError(f"DLPack device type {tensor.device.device_type} is neither CPU nor CUDA")
    ptr = int(tensor.data or 0) + int(tensor.byte_offset)
    return DeviceView(ptr, shape, dtype, on_device, (obj, capsule))


def view_of(array) -> DeviceView | np.ndarray:
    """A numpy array for host data, or a :class:`DeviceView` for a CUDA array."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "__cuda_array_interface__"):
        return from_cuda_array_interface(array)
    if hasattr(array, "__dlpack__") and hasattr(array, "__dlpack_device__"):
        dev_type = int(array.__dlpack_device__()[0])
        if dev_type in (_KDL_CUDA, _KDL_CUDA_MANAGED):
            return from_dlpack(array)
    return np.asarray(array)
