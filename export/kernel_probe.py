"""A small stand-in graph for onnxruntime's load check: one node per distinct kernel request.

onnxruntime rejects a graph that passes ``onnx.checker`` when it has no kernel for a node's
(domain, op, since-version, types) or when a kernel's constructor refuses the node's attributes.
Both depend on the node alone, not on where it sits, so loading one copy of every distinct
(op, attributes, input and output types) is the same test as loading the whole graph, at a
fraction of the cost on a network's few thousand nodes (session creation scales with nodes).
"""

from __future__ import annotations

import onnx


def kernel_probe(light: onnx.ModelProto) -> onnx.ModelProto | None:
    """One node per distinct kernel request of ``light`` (a model with its weights as typed inputs,
    every value typed by shape inference), each reading its own graph inputs and writing graph
    outputs of the recorded types. None where the probe would not be faithful: subgraphs,
    non-tensor values, or a value whose type inference left unknown."""
    graph = light.graph
    types = {t.name: onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)) for t in graph.initializer}
    types.update({v.name: v.type for v in (*graph.input, *graph.value_info, *graph.output)})
    kinds = {name: _tensor_kind(t) for name, t in types.items()}
    probe = onnx.helper.make_graph([], "kernel_probe", [], [])
    seen: set[tuple] = set()
    for node in graph.node:
        key = _request_key(node, kinds)
        if key is None:
            return None
        if key in seen:
            continue
        seen.add(key)
        _add_probe_node(probe, node, [types[name] if name else None for name in (*node.input, *node.output)],
                        len(seen))
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


def _request_key(node: onnx.NodeProto, kinds: dict[str, tuple[int, int] | None]) -> tuple | None:
    """What kernel lookup and construction see: domain, op, attributes, element types and ranks
    (a Constant's value only through its type and dims); None for a node the probe cannot copy."""
    attrs = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR:
            attrs.append((attr.name, attr.t.data_type, tuple(attr.t.dims)))
        elif attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            return None
        else:
            attrs.append(attr.SerializeToString())
    typed = []
    for name in (*node.input, *node.output):
        kind = kinds.get(name) if name else ()
        if kind is None:
            return None
        typed.append(kind)
    return node.domain, node.op_type, len(node.input), tuple(attrs), tuple(typed)


def _add_probe_node(probe: onnx.GraphProto, node: onnx.NodeProto, values: list[onnx.TypeProto | None],
                    index: int) -> None:
    """Append a copy of ``node`` to ``probe`` reading fresh graph inputs typed as its inputs were and
    writing fresh graph outputs of its outputs' element types ("" stays an absent optional slot)."""
    copy = probe.node.add()
    copy.CopyFrom(node)
    copy.name = f"probe_{index}"
    del copy.input[:]
    del copy.output[:]
    count = len(node.input)
    for slot, (name, value) in enumerate(zip((*node.input, *node.output), values)):
        if not name:
            (copy.input if slot < count else copy.output).append("")
            continue
        side = "in" if slot < count else "out"
        fresh = f"p{index}_{side}{slot}"
        info = onnx.ValueInfoProto(name=fresh)
        if side == "in":
            info.type.CopyFrom(value)
            copy.input.append(fresh)
            probe.input.append(info)
        else:
            info.type.tensor_type.elem_type = value.tensor_type.elem_type  # shapes are the checker's
            copy.output.append(fresh)
            probe.output.append(info)
