"""A small stand-in graph for onnxruntime's load check: one node per distinct kernel request.

onnxruntime rejects a graph that passes ``onnx.checker`` when it has no kernel for a node's
(domain, op, since-version, types) or when a kernel's constructor refuses the node's attributes or
the values of its constant inputs. All of these depend on the node alone, not on where it sits, so
loading one copy of every distinct (op, attributes, input and output types, constant inputs) is the
same test as loading the whole graph, at a fraction of the cost on a network's few thousand nodes
(session creation scales with nodes). Constant inputs (the initializers left in a weightless graph)
go into the probe with their values; the other inputs become typed graph inputs.
"""

from __future__ import annotations

from typing import Any

import onnx

from .shapes import tensor_value_key


def kernel_probe(light: onnx.ModelProto) -> onnx.ModelProto | None:
    """One node per distinct kernel request of ``light`` (a model with its weights as typed inputs,
    every value typed by shape inference), each reading its own graph inputs and writing graph
    outputs of the recorded types. None where the probe would not be faithful: subgraphs,
    non-tensor values, or a value whose type inference left unknown."""
    graph = light.graph
    constants = {t.name: t for t in graph.initializer}
    types = {v.name: v.type for v in (*graph.input, *graph.value_info, *graph.output)}
    kinds: dict[str, Any] = {name: _tensor_kind(t) for name, t in types.items()}
    kinds.update({name: tensor_value_key(t) for name, t in constants.items()})
    probe = onnx.helper.make_graph([], "kernel_probe", [], [])
    seen: set[tuple] = set()
    for node in graph.node:
        key = _request_key(node, kinds)
        if key is None:
            return None
        if key in seen:
            continue
        seen.add(key)
        _add_probe_node(probe, node, types, constants, len(seen))
    if not seen:
        return None
    model = onnx.helper.make_model(probe, opset_imports=list(light.opset_import))
    model.ir_version = light.ir_version
    return model


def _tensor_kind(value: onnx.TypeProto) -> tuple[int, int] | None:
    """(element type, rank or -1) of a tensor type; None for other or untyped values."""
    if value.WhichOneof("value") != "tensor_type" or not value.tensor_type.elem_type:
        return None
    tensor = value.tensor_type
    return tensor.elem_type, len(tensor.shape.dim) if tensor.HasField("shape") else -1


def _request_key(node: onnx.NodeProto, kinds: dict[str, Any]) -> tuple | None:
    """What kernel lookup and construction see: domain, op, attributes, element types and ranks
    (a Constant's value only through its type and dims); None for a node the probe cannot copy."""
    attrs = []
    for attr in node.attribute:
        kind = attr.type
        if kind == _TENSOR:
            attrs.append((attr.name, attr.t.data_type, tuple(attr.t.dims)))
        elif kind in _SUBGRAPHS:
            return None
        else:
            attrs.append(attr.SerializeToString())
    typed = tuple([kinds.get(name) if name else () for name in (*node.input, *node.output)])
    if None in typed:
        return None
    return node.domain, node.op_type, len(node.input), tuple(attrs), typed


_TENSOR = onnx.AttributeProto.TENSOR
_SUBGRAPHS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def _add_probe_node(probe: onnx.GraphProto, node: onnx.NodeProto, types: dict[str, onnx.TypeProto],
                    constants: dict[str, onnx.TensorProto], index: int) -> None:
    """Append a copy of ``node`` to ``probe`` reading its constant inputs as renamed copies and its other
    inputs as fresh graph inputs of their types, and writing fresh graph outputs of its outputs' element
    types ("" stays an absent optional slot)."""
    copy = probe.node.add()
    copy.CopyFrom(node)
    copy.name = f"probe_{index}"
    del copy.input[:]
    del copy.output[:]
    for slot, name in enumerate(node.input):
        fresh = f"p{index}_in{slot}" if name else ""
        copy.input.append(fresh)
        if not name:
            continue
        if name in constants:
            constant = probe.initializer.add()
            constant.CopyFrom(constants[name])
            constant.name = fresh
        else:
            probe.input.append(onnx.helper.make_value_info(fresh, types[name]))
    for slot, name in enumerate(node.output):
        fresh = f"p{index}_out{slot}" if name else ""
        copy.output.append(fresh)
        if name:  # shapes are the checker's
            probe.output.append(onnx.helper.make_tensor_value_info(fresh, types[name].tensor_type.elem_type, None))
