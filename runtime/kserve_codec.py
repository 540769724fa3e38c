"""Open Inference Protocol (KServe v2) tensors: datatype names, errors and the HTTP/REST body codec
(JSON tensors and the binary tensor data extension). Transport-free: numpy and json only."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .tensors import dtype_name

# Protocol datatype <-> numpy dtype name (BF16 needs ml_dtypes and is binary-only, as in Triton).
_DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "bfloat16",
}
_BY_DTYPE = {v: k for k, v in _DATATYPES.items()}

HEADER_LENGTH = "inference-header-content-length"


class InferError(Exception):
    """A request the protocol answers with an error: ``status`` is the HTTP status (the gRPC
    transport maps it to a status code), ``message`` the protocol's ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def datatype_of(dtype: np.dtype) -> str:
    """The protocol datatype (``FP32``...) of a numpy dtype."""
    name = dtype_name(dtype)
    if name not in _BY_DTYPE:
        raise InferError(500, f"dtype {name} has no Open Inference Protocol datatype")
    return _BY_DTYPE[name]


def dtype_of(datatype: str, tensor: str) -> np.dtype:
    """The numpy dtype of a protocol datatype; 400 for BYTES and unknown names."""
    name = _DATATYPES.get(str(datatype))
    if name is None:
        raise InferError(400, f"input {tensor!r} has unsupported datatype {datatype!r}; "
                              f"use one of {sorted(_DATATYPES)}")
    if name == "bfloat16":
        from .tensors import parse_dtype  # noqa: PLC0415  (ml_dtypes only when BF16 is used)

        return parse_dtype(name)
    return np.dtype(name)


def check_shape(shape: object, tensor: str) -> tuple[int, ...]:
    """A request's ``shape`` field as a tuple of non-negative ints (400 otherwise)."""
    if not isinstance(shape, Sequence) or isinstance(shape, (str, bytes)) or \
            not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InferError(400, f"input {tensor!r} has a bad shape {shape!r}: expected a list of non-negative ints")
    return tuple(int(d) for d in shape)


def tensor_from_bytes(raw: bytes | memoryview, dtype: np.dtype, shape: tuple[int, ...], tensor: str) -> np.ndarray:
    """Row-major raw bytes (binary extension / gRPC raw contents) as an array of ``shape``."""
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise InferError(400, f"input {tensor!r} has {len(raw)} bytes of data; shape {list(shape)} of "
                              f"{datatype_of(dtype)} needs {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def tensor_from_list(data: object, dtype: np.dtype, shape: tuple[int, ...], tensor: str) -> np.ndarray:
    """JSON ``data`` (flat row-major, or nested) as an array of ``shape``."""
    if dtype.name == "bfloat16":
        raise InferError(400, f"input {tensor!r}: BF16 travels only as binary data")
    if not isinstance(data, list):
        raise InferError(400, f"input {tensor!r}: 'data' must be a list of numbers")
    try:
        arr = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InferError(400, f"input {tensor!r}: 'data' is not a rectangular list of numbers ({exc})") from exc
    if arr.size != math.prod(shape):
        raise InferError(400, f"input {tensor!r} has {arr.size} values; shape {list(shape)} needs {math.prod(shape)}")
    return arr.reshape(shape)


@dataclass
class HttpInferRequest:
    """A decoded ``/infer`` body: input arrays, the requested outputs (None: all) and, per output,
    whether it goes back as binary data."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None
    binary_outputs: dict[str, bool] = field(default_factory=dict)
    binary_default: bool = False


def _json_object(body: bytes | memoryview, what: str) -> dict:
    try:
        obj = json.loads(bytes(body))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InferError(400, f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise InferError(400, f"{what} must be a JSON object with an 'inputs' list")
    return obj


def _parameters(obj: Mapping, what: str) -> dict:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise InferError(400, f"{what}: 'parameters' must be an object")
    return params


def decode_http_request(body: bytes, header_length: int | None) -> HttpInferRequest:
    """Parse an ``/infer`` body. With ``header_length`` (``Inference-Header-Content-Length``) the
    body is that many bytes of JSON followed by the binary tensors, in input order."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise InferError(400, f"Inference-Header-Content-Length {header_length} does not fit the "
                              f"{len(body)}-byte body")
    view = memoryview(body)
    head = view[:header_length] if header_length is not None else view
    obj = _json_object(head, "the inference request")
    params = _parameters(obj, "the inference request")
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InferError(400, "'id' must be a string")
    entries = obj.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise InferError(400, "the inference request needs a non-empty 'inputs' list")
    offset = header_length if header_length is not None else len(body)
    inputs: dict[str, np.ndarray] = {}
    for entry in entries:
        arr, offset = _decode_input(entry, view, offset)
        if entry["name"] in inputs:
            raise InferError(400, f"input {entry['name']!r} is given twice")
        inputs[entry["name"]] = arr
    if offset != len(body):
        raise InferError(400, f"the body holds {len(body) - offset} bytes of binary data that no input claims")
    outputs, binary = _requested_outputs(obj.get("outputs"))
    return HttpInferRequest(request_id, inputs, outputs, binary, bool(params.get("binary_data_output", False)))


def _decode_input(entry: object, body: memoryview, offset: int) -> tuple[np.ndarray, int]:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InferError(400, "every input needs a 'name', 'shape', 'datatype' and 'data' (or binary_data_size)")
    name = entry["name"]
    for key in ("shape", "datatype"):
        if key not in entry:
            raise InferError(400, f"input {name!r} has no {key!r}")
    shape = check_shape(entry["shape"], name)
    dtype = dtype_of(entry["datatype"], name)
    size = _parameters(entry, f"input {name!r}").get("binary_data_size")
    if size is None:
        if "data" not in entry:
            raise InferError(400, f"input {name!r} has neither 'data' nor a binary_data_size parameter")
        return tensor_from_list(entry["data"], dtype, shape, name), offset
    if not isinstance(size, int) or size < 0 or offset + size > len(body):
        raise InferError(400, f"input {name!r}: binary_data_size {size!r} runs past the end of the body")
    return tensor_from_bytes(body[offset:offset + size], dtype, shape, name), offset + size


def _requested_outputs(entries: object) -> tuple[list[str] | None, dict[str, bool]]:
    if entries is None:
        return None, {}
    if not isinstance(entries, list):
        raise InferError(400, "'outputs' must be a list of {\"name\": ...} objects")
    names, binary = [], {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InferError(400, "every requested output needs a 'name'")
        names.append(entry["name"])
        flag = _parameters(entry, f"output {entry['name']!r}").get("binary_data")
        if flag is not None:
            binary[entry["name"]] = bool(flag)
    return names, binary


def encode_http_response(model: str, version: str, request: HttpInferRequest,
                         outputs: Mapping[str, np.ndarray]) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length. Non-finite
    floats in JSON data are written as the NaN/Infinity tokens that Python's and rapidjson's
    parsers read (binary data carries them natively)."""
    header: dict = {"model_name": model, "model_version": version, "outputs": []}
    if request.id is not None:
        header["id"] = request.id
    blobs: list[bytes] = []
    for name, arr in outputs.items():
        entry: dict = {"name": name, "datatype": datatype_of(arr.dtype), "shape": list(arr.shape)}
        binary = request.binary_outputs.get(name, request.binary_default) or arr.dtype.name == "bfloat16"
        if binary:
            raw = np.ascontiguousarray(arr).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = arr.reshape(-1).tolist()
        header["outputs"].append(entry)
    text = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return text, None
    return b"".join([text, *blobs]), len(text)
