"""Give custom nodes symbolic output shapes from their specs, so shape inference runs through them.

ONNX shape inference knows nothing of the ``dynconv`` domain and stops at custom nodes. Each spec's
shape rule is evaluated on the node's input shapes, with symbolic dims carried as expressions
(``((height + 1)//2)``), alternating with ONNX inference until nothing changes.
"""

from __future__ import annotations

from typing import Any, Sequence

import onnx
import onnx.numpy_helper

from ..plugins.registry import get_spec
from ..plugins.spec import DOMAIN


class SymDim:
    """A symbolic size kept as a linear form ``sum(coeff*atom) + const``; ``//`` by an int that
    does not divide every term makes a new atom. Prints like ``((height + 1)//2)``."""

    def __init__(self, atom: str | None = None, terms: dict[str, int] | None = None, const: int = 0) -> None:
        self.terms = dict(terms or {})
        if atom is not None:
            self.terms[atom] = self.terms.get(atom, 0) + 1
        self.const = const

    @staticmethod
    def _lift(value: Any) -> "SymDim":
        return value if isinstance(value, SymDim) else SymDim(const=int(value))

    def _combine(self, other: Any, sign: int) -> "SymDim":
        other = self._lift(other)
        terms = dict(self.terms)
        for atom, coeff in other.terms.items():
            terms[atom] = terms.get(atom, 0) + sign * coeff
        return SymDim(terms={a: c for a, c in terms.items() if c}, const=self.const + sign * other.const)

    def __add__(self, o): return self._combine(o, 1)
    __radd__ = __add__
    def __sub__(self, o): return self._combine(o, -1)
    def __rsub__(self, o): return self._lift(o)._combine(self, -1)
    def __neg__(self): return SymDim(const=0)._combine(self, -1)

    def __mul__(self, o):
        if isinstance(o, SymDim):
            return SymDim(f"({self.expr}*{o.expr})")
        return SymDim(terms={a: c * o for a, c in self.terms.items() if c * o}, const=self.const * o)
    __rmul__ = __mul__

    def __floordiv__(self, o):
        if isinstance(o, SymDim):
            return SymDim(f"({self.expr}//{o.expr})")
        if all(c % o == 0 for c in self.terms.values()) and self.const % o == 0:
            return SymDim(terms={a: c // o for a, c in self.terms.items()}, const=self.const // o)
        return SymDim(f"({self.expr}//{o})")

    def __rfloordiv__(self, o): return SymDim(f"({o}//{self.expr})")

    @property
    def expr(self) -> str:
        parts = []
        for atom, coeff in self.terms.items():
            parts.append(atom if coeff == 1 else f"{coeff}*{atom}")
        if self.const or not parts:
            parts.append(str(self.const))
        text = " + ".join(parts).replace("+ -", "- ")
        return text if len(parts) == 1 else f"({text})"


class _Unknown:
    """A size nothing is known about; arithmetic keeps it unknown."""

    def _op(self, *_: Any) -> "_Unknown":
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _op
    __floordiv__ = __rfloordiv__ = __neg__ = _op


def _dims(value: onnx.ValueInfoProto | None) -> tuple | None:
    if value is None or not value.type.tensor_type.HasField("shape"):
        return None
    out = []
    for d in value.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else SymDim(d.dim_param) if d.dim_param else _Unknown())
    return tuple(out)


def _fully_typed(value: onnx.ValueInfoProto) -> bool:
    shape = value.type.tensor_type.shape
    return value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") or d.dim_param for d in shape.dim)


def _fully_static(value: onnx.ValueInfoProto) -> bool:
    shape = value.type.tensor_type.shape
    return value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in shape.dim)


def _trusted(value: onnx.ValueInfoProto, static_inputs: bool) -> bool:
    dims = value.type.tensor_type.shape.dim
    if not _fully_typed(value) or any(is_placeholder_dim(d.dim_param) for d in dims):
        return False
    return static_inputs or any(d.dim_param for d in dims)


def node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes as Python values, strings decoded."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}


def spec_output_shapes(node: onnx.NodeProto, input_shapes: Sequence[Sequence[Any]]) -> list:
    """A custom node's output shapes by its spec's rule, from the shapes of the inputs it has."""
    spec = get_spec(node.op_type)
    attrs, present = spec.parse_node_attributes(node_attrs(node))
    given = iter(input_shapes)
    ordered = [next(given) if (not t.optional or present[t.name]) else None for t in spec.inputs]
    return spec.infer_shapes(ordered, attrs)


def _annotate_once(model: onnx.ModelProto) -> bool:
    graph = model.graph
    known = {init.name: onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims))
             for init in graph.initializer}
    known.update({v.name: v for v in [*graph.input, *graph.value_info, *graph.output]})
    changed = False
    typed = {v.name for v in graph.value_info} | {v.name for v in graph.output if _fully_typed(v)}
    for node in graph.node:
        if node.domain != DOMAIN or node.output[0] in typed:
            continue
        shapes = [_dims(known.get(name)) for name in node.input]
        if any(s is None for s in shapes):
            continue
        out_shape = spec_output_shapes(node, shapes)[0]
        elem = known[node.input[0]].type.tensor_type.elem_type
        dims = [d if isinstance(d, int) else d.expr if isinstance(d, SymDim) else None for d in out_shape]
        info = onnx.helper.make_tensor_value_info(node.output[0], elem, dims)
        output = next((v for v in graph.output if v.name == node.output[0]), None)
        if output is not None:
            output.type.CopyFrom(info.type)
        else:
            graph.value_info.append(info)
        changed = True
    return changed


def is_placeholder_dim(dim_param: str) -> bool:
    """Names exporters invent for sizes they could not express."""
    return dim_param.startswith("unk__") or any(dim_param.endswith(f"_dim_{i}") for i in range(8))


def outputs_fully_named(model: onnx.ModelProto) -> bool:
    """Every graph output has a shape whose dims are all numbers or exporter-independent names."""
    return all(_fully_typed(v) and not any(is_placeholder_dim(d.dim_param) for d in v.type.tensor_type.shape.dim)
               for v in model.graph.output)


def _forget_placeholders(values) -> None:
    """Turn invented dim names into unknown dims (rank kept), so inference can fill them."""
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param and is_placeholder_dim(dim.dim_param):
                dim.Clear()


_SHAPE_ONLY_ELEMENTS = 64  # initializers above this size are weights: their values never decide a shape


def without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose large initializers are typed graph inputs instead (no data), so
    the repeated shape-inference rounds, the checker and onnxruntime's load check do not serialise
    every weight each time. The weights themselves are never copied."""
    light = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            _set_field(light, field, value)
    graph = model.graph
    for field, value in graph.ListFields():
        if field.name != "initializer":
            _set_field(light.graph, field, value)
    inputs = {v.name for v in graph.input}
    for init in graph.initializer:
        if not is_weight(init):
            light.graph.initializer.append(init)
        elif init.name not in inputs:
            light.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return light


def tensor_value_key(tensor: onnx.TensorProto) -> tuple:
    """A constant's identity by value (element type, dims, data), whatever its name."""
    array = onnx.numpy_helper.to_array(tensor)
    return array.dtype.str, array.shape, array.tobytes()


def is_weight(init: onnx.TensorProto) -> bool:
    """An initializer too large to be shape arithmetic: :func:`without_weights` leaves its data out."""
    return element_count(init) > _SHAPE_ONLY_ELEMENTS


def _is_repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 6; ``label`` before (deprecated since)
    return bool(repeated) if repeated is not None else field.label == field.LABEL_REPEATED


def _set_field(message: Any, field: Any, value: Any) -> None:
    if _is_repeated(field):
        getattr(message, field.name).extend(value)
    elif field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def element_count(tensor: onnx.TensorProto) -> int:
    """The number of elements ``tensor``'s dims say it holds."""
    numel = 1
    for d in tensor.dims:
        numel *= d
    return numel


def infer_shapes_with_custom_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference plus spec-driven shapes for every custom node (in place; returns ``model``)."""
    graph = model.graph
    custom_outputs = {o for n in graph.node if n.domain == DOMAIN for o in n.output}
    # An exporter's shape for a custom output came from the spec (its fake kernel); where every dim
    # is a number (all inputs fixed) or a real expression (no placeholder), keeping it saves an
    # inference round per chained custom node.
    static = all(_fully_static(v) for v in graph.input)
    kept = [v for v in graph.value_info if v.name not in custom_outputs or _trusted(v, static)]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    _forget_placeholders([*graph.value_info, *graph.output])
    light = onnx.shape_inference.infer_shapes(without_weights(model), strict_mode=False, data_prop=True)
    for _ in range(len(light.graph.node) + 1):
        if not _annotate_once(light):
            break
        light = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    del graph.value_info[:]
    graph.value_info.extend(light.graph.value_info)
    for value, typed in zip(graph.output, light.graph.output):
        value.type.CopyFrom(typed.type)
    return model
