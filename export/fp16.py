"""Convert an exported float32 graph to float16 storage and I/O.

TensorRT 11 builds only strongly typed networks, so an FP16 engine comes from an FP16 ONNX file.
Custom nodes then receive half inputs and the plugins run their FP16 path (FP32 accumulation).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

_FLOAT, _HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def _half_tensor(tensor: TensorProto) -> TensorProto:
    if tensor.data_type != _FLOAT:
        return tensor
    array = numpy_helper.to_array(tensor)
    limit = np.finfo(np.float16).max
    converted = numpy_helper.from_array(np.clip(array, -limit, limit).astype(np.float16), tensor.name)
    return converted


def _retype(value: onnx.ValueInfoProto) -> None:
    if value.type.tensor_type.elem_type == _FLOAT:
        value.type.tensor_type.elem_type = _HALF


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return ``model`` with every float32 tensor, attribute, cast and I/O turned into float16."""
    graph = model.graph
    for i, init in enumerate(graph.initializer):
        graph.initializer[i].CopyFrom(_half_tensor(init))
    for value in [*graph.input, *graph.output, *graph.value_info]:
        _retype(value)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                attr.t.CopyFrom(_half_tensor(attr.t))
            elif node.op_type in ("Cast", "CastLike") and attr.name == "to" and attr.i == _FLOAT:
                attr.i = _HALF
            elif node.op_type in ("ConstantOfShape", "RandomNormal", "RandomUniform", "EyeLike") and attr.name == "dtype" and attr.i == _FLOAT:
                attr.i = _HALF
    return model
