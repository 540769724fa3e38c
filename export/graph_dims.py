"""Symbolic sizes of an exported ONNX graph, named as the dynamo exporter names them.

The TorchScript exporter keeps a dynamic input dim's name only where it passes through unchanged
(a strided conv's output height becomes ``unk__3``). :func:`graph_symbolic_dims` walks the graph
once, in order: each dynamic input dim is a symbol named after its axis, every tensor gets its
shape as sympy expressions, small integer tensors (the exporter's size arithmetic feeding Reshape,
Expand, Range) get their values, and custom nodes their spec's output shape. Floor divisions are
torch's ``FloorDiv``, so the sizes print as torch prints them (``(((height - 1)//2)) + 1``).

An op it has no rule for, or a size it cannot express, ends the walk with ``None``: the caller then
takes the slower symbolic run of the model itself (:func:`torch_export.symbolic_output_dims`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import onnx
import onnx.numpy_helper
import sympy
from torch.utils._sympy.functions import FloorDiv

from ..plugins.errors import DynconvError
from ..plugins.spec import DOMAIN, conv_out
from .shapes import is_weight, node_attrs, spec_output_shapes

log = logging.getLogger(__name__)

Size = sympy.Expr
Shape = tuple  # of Size


class Unsupported(Exception):
    """The walk met an op or a size it cannot express symbolically."""


class SymbolicDims(NamedTuple):
    """Sizes as expressions of the named dynamic input dims (ints, or strings as torch prints them):
    the graph outputs', and each custom node's or core-op call's output, in order (``(op name, sizes)``)."""

    outputs: list[list[int | str]]
    core_ops: list[tuple[str, list[int | str]]]


_VALUE_LIMIT = 64  # integer tensors up to this many elements (rank <= 1) carry their values
_BIG = 2 ** 62  # Slice ends at or past this mean "to the end"


class _Walk:
    def __init__(self, graph: onnx.GraphProto, symbols: dict[str, dict[int, str]]) -> None:
        self.shapes: dict[str, Shape] = {}
        self.values: dict[str, tuple[list[Size], bool]] = {}  # name -> (elements, is a scalar)
        self.arrays: dict[str, np.ndarray] = {}  # small constants of any type (e.g. Resize scales)
        self.memo: dict[tuple, Any] = {}  # slow sympy steps by (step, arguments): a network repeats few sizes
        for value in graph.input:
            axes = symbols.get(value.name, {})
            dims = value.type.tensor_type.shape.dim
            self.shapes[value.name] = tuple(
                sympy.Symbol(axes[i], integer=True, positive=True) if i in axes else self._static(d, value.name)
                for i, d in enumerate(dims))
        for init in graph.initializer:
            if is_weight(init):  # only its shape matters
                self.shapes[init.name] = tuple(sympy.Integer(d) for d in init.dims)
            else:
                self._constant(init.name, onnx.numpy_helper.to_array(init))

    def once(self, step: Callable[..., Any], *args: Any) -> Any:
        """``step(*args)``, computed once per walk for each distinct argument tuple."""
        key = (step, *args)
        if key not in self.memo:
            self.memo[key] = step(*args)
        return self.memo[key]

    @staticmethod
    def _static(dim: onnx.TensorShapeProto.Dimension, name: str) -> Size:
        if not dim.HasField("dim_value"):
            raise Unsupported(f"input {name} has an unnamed dynamic dim")
        return sympy.Integer(dim.dim_value)

    def _constant(self, name: str, array: np.ndarray) -> None:
        self.shapes[name] = tuple(sympy.Integer(d) for d in array.shape)
        if array.size <= _VALUE_LIMIT:
            self.arrays[name] = array
        if array.dtype.kind in "iub" and array.ndim <= 1 and array.size <= _VALUE_LIMIT:
            self.values[name] = ([sympy.Integer(int(v)) for v in array.reshape(-1)], array.ndim == 0)

    # ----- lookups -------------------------------------------------------------------------------
    def shape(self, name: str) -> Shape:
        if name not in self.shapes:
            raise Unsupported(f"no shape for {name}")
        return self.shapes[name]

    def value(self, name: str) -> list[Size]:
        if name not in self.values:
            raise Unsupported(f"no value for {name}")
        return self.values[name][0]

    def ints(self, name: str) -> list[int]:
        values = self.value(name)
        if not all(v.is_Integer for v in values):
            raise Unsupported(f"{name} is not constant")
        return [int(v) for v in values]

    def set(self, name: str, shape: Sequence[Size], value: list[Size] | None = None, scalar: bool = False) -> None:
        self.shapes[name] = tuple(sympy.sympify(d) for d in shape)
        if value is not None and len(value) <= _VALUE_LIMIT:
            self.values[name] = ([sympy.sympify(v) for v in value], scalar)


def _broadcast(*shapes: Shape) -> Shape:
    rank = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(sympy.Integer(1),) * (rank - len(s)) + tuple(s) for s in shapes]):
        kept = {d for d in dims if d != 1}
        if len(kept) > 1:
            static = {d for d in kept if d.is_Integer}
            if len(static) != 1:
                raise Unsupported(f"cannot broadcast {dims}")
            kept = static
        out.append(kept.pop() if kept else sympy.Integer(1))
    return tuple(out)


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _exact_div(numerator: Size, denominator: Size) -> Size:
    quotient = sympy.cancel(numerator / denominator)
    if quotient.as_numer_denom()[1] != 1:
        raise Unsupported(f"{numerator} / {denominator} is not exact")
    return quotient


def _floors_as_floordiv(size: Size) -> Size:
    """sympy's ``floor(a/b)`` (what ``//`` makes of an expression) as torch's ``FloorDiv(a, b)``."""
    def rewrite(arg: Size) -> Size:
        numerator, denominator = sympy.fraction(sympy.together(arg))
        return FloorDiv(numerator, denominator)
    return size.replace(sympy.floor, rewrite)


def _window(size: Size, kernel: int, stride: int, begin: int, end: int, dilation: int) -> Size:
    return _floors_as_floordiv(conv_out(size, kernel, stride, begin, end, dilation))


def _ceil_window(size: Size, kernel: int, stride: int, begin: int, end: int, dilation: int) -> Size:
    """Pooling output with ``ceil_mode``: ``ceil(span/stride) + 1``, less one where the last window
    would start in the end padding. That correction never applies when ``end + stride <=
    dilation*(kernel-1) + 1`` (the usual 3x3/2 and 2x2/2 pools); otherwise it depends on the size."""
    count = FloorDiv(size + begin + end - dilation * (kernel - 1) - 1 + stride - 1, stride) + 1
    if size.is_Integer:
        return count - 1 if (count - 1) * stride >= size + begin else count
    if end + stride > dilation * (kernel - 1) + 1:
        raise Unsupported("ceil_mode pooling whose size rule depends on the input size")
    return count


# ----- rules: each sets the node's outputs on the walk -------------------------------------------
Rule = Callable[[_Walk, onnx.NodeProto, dict], None]


def _same_shape(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    w.set(n.output[0], w.shape(n.input[0]))


def _elementwise(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    names = [i for i in n.input if i]
    shape = _broadcast(*[w.shape(i) for i in names])
    value = None
    if n.op_type in _VALUE_OPS and all(i in w.values for i in names):
        items = [w.values[i] for i in names]
        length = max(len(v) for v, _ in items)
        if all(len(v) in (1, length) for v, _ in items):
            columns = [[v[k if len(v) > 1 else 0] for v, _ in items] for k in range(length)]
            value = [_VALUE_OPS[n.op_type](*c) for c in columns]
            if any(v is None for v in value):
                value = None
    w.set(n.output[0], shape, value, scalar=all(s for _, s in (w.values.get(i, ([], False)) for i in names)))


def _int_div(x: Size, y: Size) -> Size | None:
    return FloorDiv(x, y) if x.is_integer and y.is_integer else None


def _compare(relation: Callable[[Size, Size], Any]) -> Callable[[Size, Size], Size | None]:
    def run(x: Size, y: Size) -> Size | None:
        outcome = relation(x, y)
        return sympy.Integer(int(bool(outcome))) if outcome in (sympy.true, sympy.false, True, False) else None
    return run


_VALUE_OPS: dict[str, Callable[..., Size | None]] = {
    "Add": lambda x, y: x + y, "Sub": lambda x, y: x - y, "Mul": lambda x, y: x * y, "Div": _int_div,
    "Max": sympy.Max, "Min": sympy.Min, "Neg": lambda x: -x, "Abs": sympy.Abs,
    "Equal": _compare(lambda x, y: sympy.Eq(x, y)), "Less": _compare(lambda x, y: x < y),
    "Greater": _compare(lambda x, y: x > y), "Where": lambda c, x, y: (x if c == 1 else y) if c.is_Integer else None,
}


def _cast(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    source = w.values.get(n.input[0])
    integer = a["to"] in (onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL)
    w.set(n.output[0], w.shape(n.input[0]), source[0] if source and integer else None,
          bool(source and source[1]))


def _shape(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    dims = w.shape(n.input[0])
    picked = list(dims[slice(a.get("start", 0), a.get("end"))])
    w.set(n.output[0], (len(picked),), picked)


def _constant_node(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    if "value" not in a:
        raise Unsupported("Constant without a tensor value")
    w._constant(n.output[0], onnx.numpy_helper.to_array(a["value"]))


def _constant_of_shape(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    dims = w.value(n.input[0])
    fill = onnx.numpy_helper.to_array(a["value"]).reshape(-1)[0] if "value" in a else 0
    count = math.prod(int(d) for d in dims) if all(d.is_Integer for d in dims) else None
    integer = isinstance(fill, (np.integer, np.bool_))
    value = [sympy.Integer(int(fill))] * count if integer and count is not None and len(dims) <= 1 else None
    w.set(n.output[0], dims, value)


def _gather(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    data, indices = w.shape(n.input[0]), w.shape(n.input[1])
    axis = _axis(a.get("axis", 0), len(data))
    value, scalar = None, False
    if axis == 0 and len(data) == 1 and n.input[0] in w.values and n.input[1] in w.values:
        elements = w.value(n.input[0])
        picked = w.ints(n.input[1])
        value = [elements[i if i >= 0 else i + len(elements)] for i in picked]
        scalar = w.values[n.input[1]][1]
    w.set(n.output[0], data[:axis] + indices + data[axis + 1:], value, scalar)


def _axes(w: _Walk, n: onnx.NodeProto, a: dict) -> list[int] | None:
    if len(n.input) > 1 and n.input[1]:
        return w.ints(n.input[1])
    return list(a["axes"]) if "axes" in a else None


def _unsqueeze(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = list(w.shape(n.input[0]))
    rank = len(shape) + len(_axes(w, n, a))
    for axis in sorted(_axis(x, rank) for x in _axes(w, n, a)):
        shape.insert(axis, sympy.Integer(1))
    source = w.values.get(n.input[0])
    w.set(n.output[0], shape, source[0] if source and len(shape) <= 1 else None)


def _squeeze(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    axes = _axes(w, n, a)
    drop = {_axis(x, len(shape)) for x in axes} if axes is not None else {i for i, d in enumerate(shape) if d == 1}
    out = [d for i, d in enumerate(shape) if i not in drop]
    source = w.values.get(n.input[0])
    w.set(n.output[0], out, source[0] if source else None, scalar=not out)


def _concat(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shapes = [w.shape(i) for i in n.input]
    axis = _axis(a["axis"], len(shapes[0]))
    out = list(shapes[0])
    out[axis] = sum((s[axis] for s in shapes), sympy.Integer(0))
    value = None
    if len(shapes[0]) == 1 and all(i in w.values for i in n.input):
        value = [v for i in n.input for v in w.value(i)]
    w.set(n.output[0], out, value)


def _slice(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = list(w.shape(n.input[0]))
    starts, ends = w.ints(n.input[1]), w.ints(n.input[2])
    axes = w.ints(n.input[3]) if len(n.input) > 3 and n.input[3] else list(range(len(starts)))
    steps = w.ints(n.input[4]) if len(n.input) > 4 and n.input[4] else [1] * len(starts)
    source = w.values.get(n.input[0])
    value = list(source[0]) if source and len(shape) == 1 else None
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = _axis(axis, len(shape))
        size = shape[axis]
        if size.is_Integer:
            shape[axis] = sympy.Integer(len(range(*slice(start, end, step).indices(int(size)))))
        elif step == 1 and start >= 0 and end >= _BIG:
            shape[axis] = size - start
        elif step == 1 and start >= 0 and end < 0:
            shape[axis] = size + end - start
        elif step == 1 and start < 0 and end >= _BIG:
            shape[axis] = sympy.Integer(-start)
        else:
            raise Unsupported(f"Slice {start}:{end}:{step} of a symbolic size")
        if value is not None:
            value = value[slice(start, None if end >= _BIG else end, step)]
    w.set(n.output[0], shape, value)


def _reshape(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    target = list(w.value(n.input[1]))
    if not a.get("allowzero", 0):
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    if any(d == -1 for d in target):
        known = math.prod([d for d in target if d != -1], start=sympy.Integer(1))
        missing = w.once(_exact_div, math.prod(shape, start=sympy.Integer(1)), known)
        target = [missing if d == -1 else d for d in target]
    source = w.values.get(n.input[0])
    w.set(n.output[0], target, source[0] if source and len(target) <= 1 else None, scalar=not target)


def _expand(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    w.set(n.output[0], _broadcast(w.shape(n.input[0]), tuple(w.value(n.input[1]))))


def _tile(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    w.set(n.output[0], [d * r for d, r in zip(w.shape(n.input[0]), w.value(n.input[1]))])


def _range(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    start, limit, delta = (w.value(i)[0] for i in n.input)
    if not (delta.is_Integer and int(delta) > 0):
        raise Unsupported("Range with a symbolic or negative step")
    count = FloorDiv(limit - start + delta - 1, delta)
    value = None
    if start.is_Integer and limit.is_Integer:
        value = [sympy.Integer(v) for v in range(int(start), int(limit), int(delta))]
    w.set(n.output[0], (count,), value)


def _transpose(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    perm = a.get("perm", list(reversed(range(len(shape)))))
    w.set(n.output[0], [shape[p] for p in perm])


def _flatten(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    axis = _axis(a.get("axis", 1), len(shape))
    one = sympy.Integer(1)
    w.set(n.output[0], (math.prod(shape[:axis], start=one), math.prod(shape[axis:], start=one)))


def _matmul(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    x, y = w.shape(n.input[0]), w.shape(n.input[1])
    if len(x) < 2 or len(y) < 2:
        raise Unsupported("MatMul of a vector")
    w.set(n.output[0], _broadcast(x[:-2], y[:-2]) + (x[-2], y[-1]))


def _gemm(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    x, y = w.shape(n.input[0]), w.shape(n.input[1])
    rows = x[1] if a.get("transA", 0) else x[0]
    cols = y[0] if a.get("transB", 0) else y[1]
    w.set(n.output[0], (rows, cols))


def _window_op(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    spatial = len(shape) - 2
    if n.op_type == "Conv":
        weight = w.shape(n.input[1])
        kernel = list(a.get("kernel_shape", [int(d) for d in weight[2:]]))
        channels = weight[0]
    else:
        kernel, channels = list(a["kernel_shape"]), shape[1]
    strides = list(a.get("strides", [1] * spatial))
    dilations = list(a.get("dilations", [1] * spatial))
    pads = list(a.get("pads", [0] * 2 * spatial))
    auto_pad = a.get("auto_pad", "NOTSET")
    out = []
    for i, size in enumerate(shape[2:]):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(FloorDiv(size + strides[i] - 1, strides[i]))
        elif auto_pad == "VALID":
            out.append(w.once(_window, size, kernel[i], strides[i], 0, 0, dilations[i]))
        elif a.get("ceil_mode", 0):
            out.append(_ceil_window(size, kernel[i], strides[i], pads[i], pads[i + spatial], dilations[i]))
        else:
            out.append(w.once(_window, size, kernel[i], strides[i], pads[i], pads[i + spatial], dilations[i]))
    w.set(n.output[0], (shape[0], channels, *out))
    for extra in n.output[1:]:
        if extra:
            w.set(extra, (shape[0], channels, *out))


def _global_pool(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    w.set(n.output[0], (*shape[:2], *[sympy.Integer(1)] * (len(shape) - 2)))


def _reduce(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    axes = _axes(w, n, a)
    if axes is None:
        axes = [] if a.get("noop_with_empty_axes", 0) else list(range(len(shape)))
    axes = {_axis(x, len(shape)) for x in axes}
    if a.get("keepdims", 1):
        out = [sympy.Integer(1) if i in axes else d for i, d in enumerate(shape)]
    else:
        out = [d for i, d in enumerate(shape) if i not in axes]
    w.set(n.output[0], out)


def _split(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    axis = _axis(a.get("axis", 0), len(shape))
    outputs = [o for o in n.output]
    if len(n.input) > 1 and n.input[1]:
        sizes = w.value(n.input[1])
    elif "split" in a:
        sizes = [sympy.Integer(s) for s in a["split"]]
    else:
        sizes = [w.once(_exact_div, shape[axis], sympy.Integer(len(outputs)))] * len(outputs)
    for name, size in zip(outputs, sizes):
        w.set(name, shape[:axis] + (size,) + shape[axis + 1:])


def _pad(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    pads = w.value(n.input[1]) if len(n.input) > 1 and n.input[1] else [sympy.Integer(p) for p in a["pads"]]
    if len(n.input) > 3 and n.input[3]:
        raise Unsupported("Pad with axes")
    rank = len(shape)
    w.set(n.output[0], [d + pads[i] + pads[i + rank] for i, d in enumerate(shape)])


def _resize(w: _Walk, n: onnx.NodeProto, a: dict) -> None:
    shape = w.shape(n.input[0])
    if len(n.input) > 3 and n.input[3]:
        w.set(n.output[0], w.value(n.input[3]))
        return
    scales = w.arrays.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
    if scales is None or scales.size != len(shape):
        raise Unsupported("Resize by computed scales")
    out = []
    for d, s in zip(shape, scales.tolist()):
        if float(s).is_integer():
            out.append(d * int(s))
        else:
            raise Unsupported("Resize by a fractional scale")
    w.set(n.output[0], out)


def _custom(w: _Walk, n: onnx.NodeProto) -> None:
    for name, out in zip(n.output, spec_output_shapes(n, [w.shape(i) for i in n.input])):
        w.set(name, [_floors_as_floordiv(sympy.sympify(d)) for d in out])


_SAME = ("Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log", "Floor", "Ceil", "Identity", "Softmax",
         "LogSoftmax", "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
         "Dropout", "Not", "Clip", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Gelu", "Softplus",
         "Reciprocal", "CumSum", "Round", "Sign", "IsNaN", "Mish", "Selu", "Celu")
_BROADCAST = ("Add", "Sub", "Mul", "Div", "Pow", "Where", "And", "Or", "Xor", "Less", "Greater", "Equal",
              "LessOrEqual", "GreaterOrEqual", "Max", "Min", "Sum", "Mean", "PRelu", "Mod", "Neg", "Abs")

RULES: dict[str, Rule] = {
    **{op: _same_shape for op in _SAME}, **{op: _elementwise for op in _BROADCAST},
    "Cast": _cast, "Shape": _shape, "Constant": _constant_node, "ConstantOfShape": _constant_of_shape,
    "Gather": _gather, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Concat": _concat, "Slice": _slice,
    "Reshape": _reshape, "Expand": _expand, "Tile": _tile, "Range": _range, "Transpose": _transpose,
    "Flatten": _flatten, "MatMul": _matmul, "Gemm": _gemm, "Conv": _window_op, "MaxPool": _window_op,
    "AveragePool": _window_op, "GlobalAveragePool": _global_pool, "GlobalMaxPool": _global_pool,
    "ReduceMean": _reduce, "ReduceSum": _reduce, "ReduceMax": _reduce, "ReduceMin": _reduce,
    "ReduceProd": _reduce, "ReduceL2": _reduce, "Split": _split, "Pad": _pad, "Resize": _resize,
}


def _text(size: Size) -> int | str:
    """``size`` as the exporter writes a dim: an int, or the expression's text."""
    return int(size) if size.is_Integer else str(size)


def graph_symbolic_dims(model: onnx.ModelProto, dynamic_axes: dict[str, dict[int, str]]) -> SymbolicDims | None:
    """Sizes of the graph outputs and of every custom node's output as expressions of the named
    dynamic input dims (``dynamic_axes``: input name -> {axis: name}); None when some op or size
    is beyond the walk (see the module docstring)."""
    graph = model.graph
    try:
        walk = _Walk(graph, dynamic_axes)
        core_ops: list[tuple[str, list[int | str]]] = []
        for node in graph.node:
            if node.domain == DOMAIN:
                _custom(walk, node)
                core_ops.append((node.op_type, [walk.once(_text, d) for d in walk.shape(node.output[0])]))
                continue
            rule = RULES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if rule is None:
                raise Unsupported(f"no rule for {node.domain or 'ai.onnx'}::{node.op_type}")
            rule(walk, node, node_attrs(node))
        outputs = [[walk.once(_text, d) for d in walk.shape(v.name)] for v in graph.output]
    except (Unsupported, DynconvError, KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
        log.debug("graph symbolic dims: %s: %s", type(exc).__name__, exc)
        return None
    return SymbolicDims(outputs, core_ops)
