"""Convert an exported float32 graph to float16 storage, compute and I/O.

TensorRT 11 builds only strongly typed networks, so an FP16 engine comes from an FP16 ONNX file.
Custom nodes then receive half inputs and the plugins run their FP16 path (FP32 accumulation).

Not every float tensor may become float16:

* index and shape arithmetic stays float32: outputs of ``Range``, of ``Cast`` from an integer
  tensor (``Cast(Shape(x))``), and of any node whose float inputs are all such tensors or
  constants. A float16 sampling grid built from ``Range`` would lose whole pixels past 2048 and
  ``Range`` has no float16 kernel at all. Where such a tensor meets data (``grid + offset``) a
  ``Cast`` to float16 is inserted;
* an input whose ONNX schema does not allow float16 (``Resize`` scales, ``Range``) keeps float32;
* a constant (initializer or ``Constant``) takes the type of its consumers; one used by both kinds
  is stored in float32 and cast down for the float16 consumers.

Graph inputs and outputs become float16. Custom (``dynconv``) nodes have no ONNX schema: all their
float inputs and outputs are float16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..plugins.errors import DynconvError

_FLOAT, _HALF = TensorProto.FLOAT, TensorProto.FLOAT16
_TYPE_STR = {_FLOAT: "tensor(float)", _HALF: "tensor(float16)"}
# Ops whose float output type is an attribute rather than an input's type.
_DTYPE_ATTRS = {"Cast": "to", "ConstantOfShape": None, "RandomNormal": "dtype", "RandomUniform": "dtype",
                "EyeLike": "dtype", "RandomNormalLike": "dtype", "RandomUniformLike": "dtype"}
_CONSTANT_OPS = ("Constant",)


def half_tensor(tensor: TensorProto) -> TensorProto:
    """``tensor`` as float16 (finite values clipped to the float16 range, infinities kept)."""
    if tensor.data_type != _FLOAT:
        return tensor
    array = numpy_helper.to_array(tensor)
    limit = np.finfo(np.float16).max
    clipped = np.where(np.isfinite(array), np.clip(array, -limit, limit), array)
    return numpy_helper.from_array(clipped.astype(np.float16), tensor.name)


@dataclass
class _Plan:
    """Decided float type of every float tensor, and what each node input must be."""

    types: dict[str, int] = field(default_factory=dict)  # original elem type of every known tensor
    final: dict[str, int] = field(default_factory=dict)  # float tensor -> FLOAT or FLOAT16 after conversion
    required: dict[tuple[int, int], int] = field(default_factory=dict)  # (node index, input index) -> type
    constants: dict[str, set[int]] = field(default_factory=dict)  # constant name -> types its consumers need
    modes: dict[int, int] = field(default_factory=dict)  # node index -> FLOAT or FLOAT16


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return ``model`` with float32 data tensors, attributes, casts and I/O turned into float16,
    index arithmetic kept in float32 (see the module docstring)."""
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        raise DynconvError("--fp16 does not support graphs with control flow (If/Loop/Scan); export float32")
    opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    plan = _plan(graph, opset)
    _apply(graph, plan)
    return model


def _known_types(graph: onnx.GraphProto) -> dict[str, int]:
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type in _CONSTANT_OPS and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer}
    names.update(n.output[0] for n in graph.node if n.op_type in _CONSTANT_OPS)
    return names - {v.name for v in graph.input}


def _plan(graph: onnx.GraphProto, opset: dict[str, int]) -> _Plan:
    plan = _Plan(types=_known_types(graph))
    constants = _constant_names(graph)
    plan.constants = {name: set() for name in constants if plan.types.get(name) == _FLOAT}
    for value in graph.input:
        if plan.types.get(value.name) == _FLOAT:
            plan.final[value.name] = _HALF
    for index, node in enumerate(graph.node):
        if node.op_type in _CONSTANT_OPS:
            continue
        _plan_node(index, node, plan, constants, opset)
    return plan


def _is_float(plan: _Plan, name: str) -> bool:
    return bool(name) and plan.types.get(name) == _FLOAT


def _plan_node(index: int, node: onnx.NodeProto, plan: _Plan, constants: set[str], opset: dict[str, int]) -> None:
    float_inputs = [n for n in node.input if _is_float(plan, n)]
    variable = [n for n in float_inputs if n not in constants]
    # index arithmetic: fed by integers or float32 index tensors only (constants are neutral)
    from_index = any(n and n not in constants and not _is_float(plan, n) for n in node.input)
    index_mode = all(plan.final.get(n) == _FLOAT for n in variable) and (from_index or bool(variable))
    mode = _FLOAT if index_mode else _HALF
    groups = _type_groups(node, opset)
    for position, name in enumerate(node.input):
        if not _is_float(plan, name):
            continue
        wanted = _group_type(groups, "in", position, mode)
        plan.required[(index, position)] = wanted
        if name in plan.constants:
            plan.constants[name].add(wanted)
    made_by_attr = node.op_type in _DTYPE_ATTRS  # the output type is an attribute, set to the mode below
    for position, name in enumerate(node.output):
        if not _is_float(plan, name):
            continue
        plan.final[name] = mode if made_by_attr else _group_type(groups, "out", position, mode)
    plan.modes[index] = mode


def _type_groups(node: onnx.NodeProto, opset: dict[str, int]) -> dict[tuple[str, int], set[str] | None]:
    """(side, position) -> the float types ONNX allows there (None: no schema, anything goes)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset.get(node.domain or "ai.onnx", 1), node.domain)
    except onnx.defs.SchemaError:
        return {}
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    groups: dict[tuple[str, int], set[str] | None] = {}
    for side, formals, actual in (("in", schema.inputs, node.input), ("out", schema.outputs, node.output)):
        for position in range(len(actual)):
            formal = formals[min(position, len(formals) - 1)] if formals else None
            if formal is not None:
                groups[(side, position)] = allowed.get(formal.type_str, {formal.type_str})
    return groups


def _group_type(groups: dict, side: str, position: int, mode: int) -> int:
    allowed = groups.get((side, position))
    if allowed is None or _TYPE_STR[mode] in allowed:
        return mode
    return _FLOAT if _TYPE_STR[_FLOAT] in allowed else mode


def _apply(graph: onnx.GraphProto, plan: _Plan) -> None:
    half_copies, nodes = _convert_constants(graph, plan)
    casts: dict[tuple[str, int], str] = {}
    for index, node in enumerate(graph.node):
        if node.op_type in _CONSTANT_OPS:
            nodes.append(node)
            continue
        for position, name in enumerate(node.input):
            wanted = plan.required.get((index, position))
            if wanted is None:
                continue
            have = plan.final.get(name, _HALF)
            if name in plan.constants:
                node.input[position] = half_copies.get(name, name) if wanted == _HALF else name
            elif have != wanted:
                node.input[position] = _cast(name, wanted, casts, nodes)
        _retype_attributes(node, plan.modes.get(index, _HALF))
        nodes.append(node)
    outputs = _fix_outputs(graph, plan, nodes)
    del graph.node[:]
    graph.node.extend(nodes + outputs)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == _FLOAT:
            value.type.tensor_type.elem_type = plan.final.get(value.name, _HALF)


def _convert_constants(graph: onnx.GraphProto, plan: _Plan) -> tuple[dict[str, str], list[onnx.NodeProto]]:
    """Store each float constant as its consumers need it; returns name -> its float16 copy's name
    for constants that are also needed in float32, and the new ``Constant`` nodes of such copies."""
    copies: dict[str, str] = {}
    new_nodes: list[onnx.NodeProto] = []
    inits = {t.name: i for i, t in enumerate(graph.initializer)}
    constant_nodes = {n.output[0]: n for n in graph.node if n.op_type in _CONSTANT_OPS}
    for name, wanted in plan.constants.items():
        keep_float = _FLOAT in wanted
        target = f"{name}__fp16" if keep_float and _HALF in wanted else name
        if keep_float and target == name:
            plan.final[name] = _FLOAT
            continue
        if name in inits:
            half = half_tensor(graph.initializer[inits[name]])
            half.name = target
            if target == name:
                graph.initializer[inits[name]].CopyFrom(half)
            else:
                graph.initializer.append(half)
        elif name in constant_nodes:
            node = constant_nodes[name]
            if target == name:
                node.attribute[0].t.CopyFrom(half_tensor(node.attribute[0].t))
            else:
                copy = onnx.helper.make_node("Constant", [], [target], name=f"{node.name}__fp16",
                                             value=half_tensor(node.attribute[0].t))
                new_nodes.append(copy)
        plan.final[name] = _FLOAT if keep_float else _HALF
        if target != name:
            copies[name] = target
    return copies, new_nodes


def _cast(name: str, wanted: int, casts: dict[tuple[str, int], str], nodes: list[onnx.NodeProto]) -> str:
    key = (name, wanted)
    if key not in casts:
        suffix = "fp16" if wanted == _HALF else "fp32"
        casts[key] = f"{name}__{suffix}"
        nodes.append(onnx.helper.make_node("Cast", [name], [casts[key]], name=f"{name}__cast_{suffix}", to=wanted))
    return casts[key]


def _retype_attributes(node: onnx.NodeProto, mode: int) -> None:
    attr_name = _DTYPE_ATTRS.get(node.op_type)
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR and mode == _HALF:
            attr.t.CopyFrom(half_tensor(attr.t))
        elif attr_name is not None and attr.name == attr_name and attr.i == _FLOAT:
            attr.i = mode


def _fix_outputs(graph: onnx.GraphProto, plan: _Plan, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Graph outputs computed in float32 (index arithmetic) are cast to float16 under their name."""
    extra: list[onnx.NodeProto] = []
    for value in graph.output:
        if plan.final.get(value.name) != _FLOAT or value.name in plan.constants:
            continue
        inner = f"{value.name}__fp32"
        for node in nodes:
            node.input[:] = [inner if n == value.name else n for n in node.input]
            node.output[:] = [inner if n == value.name else n for n in node.output]
        extra.append(onnx.helper.make_node("Cast", [inner], [value.name], name=f"{value.name}__cast_fp16", to=_HALF))
        plan.final[inner], plan.final[value.name] = _FLOAT, _HALF
    return extra

