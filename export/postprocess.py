"""Finishing passes on an exported graph: cleanup, friendly dim names, IR version, checks."""

from __future__ import annotations

import logging
import re

import onnx

from ..plugins.errors import DynconvError
from ..plugins.registry import get_spec
from ..plugins.spec import DOMAIN
from .kernel_probe import kernel_probe
from .shapes import element_count, node_attrs, without_weights

log = logging.getLogger(__name__)


def cleanup(model: onnx.ModelProto) -> onnx.ModelProto:
    """Sort the nodes topologically, then drop those no graph output depends on and the unused
    initializers and value infos (in place; returns ``model``). Graph inputs all stay."""
    graph = model.graph
    given = list(graph.node)
    reads = [node_inputs(node) for node in given]
    order = _toposorted(given, reads, {v.name for v in graph.input} | {t.name for t in graph.initializer})
    needed = {v.name for v in graph.output}
    live: list[int] = []
    for index in reversed(order):
        if any(name in needed for name in given[index].output):
            live.append(index)
            needed.update(reads[index])
    live.reverse()
    produced = {name for index in live for name in given[index].output}
    initializers = [t for t in graph.initializer if t.name in needed]
    value_info = [v for v in graph.value_info if v.name in produced]
    if live != list(range(len(given))):
        del graph.node[:]
        graph.node.extend(given[index] for index in live)
    if len(initializers) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(initializers)
    if len(value_info) != len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(value_info)
    return model


def node_inputs(node: onnx.NodeProto) -> set[str]:
    """The names ``node`` reads: its inputs and the outer-scope names its subgraphs use."""
    names = {name for name in node.input if name}
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in sub.node:
                names |= node_inputs(inner)
    return names


def _toposorted(nodes: list[onnx.NodeProto], reads: list[set[str]], available: set[str]) -> list[int]:
    """Indices of ``nodes`` in an order where each comes after the producers of what it reads
    (``reads[i]``: the names node i reads); the given order is kept where it already is one (the
    usual case: exporters emit sorted graphs)."""
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    entered, done = [False] * len(nodes), [False] * len(nodes)
    order: list[int] = []
    for root in range(len(nodes)):
        stack = [(root, False)]
        while stack:
            index, expanded = stack.pop()
            if expanded:
                done[index] = True
                order.append(index)
                continue
            if entered[index]:
                continue
            entered[index] = True
            stack.append((index, True))
            for name in reads[index]:
                dep = producer.get(name)
                if dep is not None and not done[dep] and name not in available:
                    stack.append((dep, False))
    return order


def rename_dynamic_dims(model: onnx.ModelProto, axes: dict[str, int]) -> onnx.ModelProto:
    """Name the symbolic input dims ``batch``/``height``/``width`` (``axes``: name -> axis of a
    4-D input) and rewrite them everywhere."""
    mapping: dict[str, str] = {}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for key, axis in axes.items():
            if axis >= len(dims) or (len(dims) != 4 and axis != 0):
                continue
            old = dims[axis].dim_param
            if old and old not in mapping:
                mapping[old] = key if key not in mapping.values() else f"{key}_{value.name}"
    if not mapping:
        return model
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True)) + r")\b")
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: mapping[m.group(1)], dim.dim_param)
    return model


def rename_graph_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Give the graph outputs ``names`` (in order), rewriting every reference to the old names (in
    place; returns ``model``). An output that is also a graph input or another output keeps its
    value and gets an Identity node to carry the new name."""
    graph = model.graph
    fixed = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    mapping: dict[str, str] = {}
    for value, name in zip(graph.output, names):
        if value.name == name:
            continue
        if value.name in fixed or value.name in mapping:
            graph.node.append(onnx.helper.make_node("Identity", [value.name], [name], name=f"{name}_identity"))
        else:
            mapping[value.name] = name
        value.name = name
    if mapping:
        for node in graph.node:
            if not mapping.keys().isdisjoint(node.input):
                node.input[:] = [mapping.get(n, n) for n in node.input]
            if not mapping.keys().isdisjoint(node.output):
                node.output[:] = [mapping.get(n, n) for n in node.output]
        for value in graph.value_info:
            value.name = mapping.get(value.name, value.name)
    return model


def check_dynamic_dims(model: onnx.ModelProto, axes: dict[str, int]) -> None:
    """Fail when a requested dynamic axis came out static (an exporter specialised it)."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for key, axis in axes.items():
            if axis < len(dims) and (len(dims) == 4 or axis == 0) and dims[axis].HasField("dim_value"):
                raise DynconvError(
                    f"input '{value.name}' axis {axis} ({key}) was requested dynamic but the exporter fixed it to "
                    f"{dims[axis].dim_value}: the model's code specialises that size (e.g. int() on a shape)")


def set_ir_version(model: onnx.ModelProto) -> onnx.ModelProto:
    """IR 9 up to opset 20 (onnxruntime's DeformConv needs it; TensorRT 8.x reads it), 10 above."""
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=17)
    model.ir_version = 9 if opset <= 20 else 10
    return model


def check_model(model: onnx.ModelProto) -> None:
    """Everything dynconv writes passes these checks first:

    * ``onnx.checker.check_model(full_check=True)``: structure, every standard node against its
      schema and strict shape/type inference (custom ``dynconv`` nodes have no schema: inference
      passes them by, which is what TensorRT's parser sees too), run with the weights as typed
      inputs, while each weight's stored data must match its type and dims;
    * every custom node against its spec (attributes, input count);
    * a graph without custom nodes (the ``onnx`` target) must load in onnxruntime (CPU). A graph
      with custom nodes cannot: onnxruntime has no kernels for them.
    """
    light = without_weights(model)
    try:
        onnx.checker.check_model(light, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DynconvError(f"exported graph is invalid (nothing written): {first}") from None
    check_weights(model)
    for node in model.graph.node:
        if node.domain == DOMAIN:
            validate_custom_node(node)
    if not any(node.domain == DOMAIN for node in model.graph.node):
        check_loads_in_onnxruntime(light)


def check_weights(model: onnx.ModelProto) -> None:
    """Every initializer is named, typed, and holds exactly as many elements as its dims say."""
    for init in model.graph.initializer:
        if not init.name or init.data_type == onnx.TensorProto.UNDEFINED:
            raise DynconvError(f"exported graph is invalid (nothing written): initializer {init.name!r} has no "
                               "name or no element type")
        if init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        stored = _stored_elements(init)
        if stored is not None and stored != element_count(init):
            raise DynconvError(f"exported graph is invalid (nothing written): initializer {init.name!r} holds "
                               f"{stored} elements for dims {list(init.dims)}")


def _stored_elements(init: onnx.TensorProto) -> int | None:
    """Elements stored in ``init`` (None for types whose packing this does not model)."""
    if init.HasField("raw_data"):
        try:
            bits = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize * 8
        except (KeyError, TypeError, ValueError):
            return None
        if init.data_type in _SUB_BYTE_TYPES:
            return None
        return len(init.raw_data) * 8 // bits
    for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
        values = getattr(init, field)
        if len(values):
            return None if field == "int32_data" and init.data_type in _SUB_BYTE_TYPES else len(values)
    return 0


_SUB_BYTE_TYPES = {getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, n)}


def check_loads_in_onnxruntime(light: onnx.ModelProto) -> None:
    """onnxruntime (CPU, no graph optimisation) accepts the graph of ``light`` (a model with its
    weights as typed inputs, :func:`without_weights`): every node has a kernel for its types.

    Loads the :func:`kernel_probe` (one node per distinct kernel request) instead of the whole
    graph where it can; only a probe that fails loads the whole graph, whose answer stands."""
    probe = kernel_probe(light)
    if probe is not None and _onnxruntime_load_error(probe) is None:
        return
    error = _onnxruntime_load_error(light)
    if error is not None:
        raise DynconvError(f"exported graph does not load in onnxruntime (nothing written): {error[:300]}")


def _onnxruntime_load_error(model: onnx.ModelProto) -> str | None:
    """onnxruntime's first line of complaint about ``model``, or None when a session opens."""
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a graph it rejects
        return " ".join((str(exc).strip().splitlines() or [type(exc).__name__])[0].split())
    return None


def validate_custom_node(node: onnx.NodeProto) -> None:
    """The node's attributes and input count must be exactly what its spec prescribes."""
    spec = get_spec(node.op_type)
    attrs = node_attrs(node)
    if attrs.get("plugin_version") != spec.version:
        raise DynconvError(f"{node.name}: plugin_version {attrs.get('plugin_version')!r} != spec {spec.version!r}")
    expected = {a.name for a in spec.onnx_attributes} | {"plugin_version"}
    if set(attrs) != expected:
        raise DynconvError(f"{node.name}: attributes {sorted(attrs)} differ from the spec's {sorted(expected)}")
    _, present = spec.parse_node_attributes(attrs)
    count = sum(1 for t in spec.inputs if not t.optional) + sum(present.values())
    if len(node.input) != count:
        raise DynconvError(f"{node.name}: {len(node.input)} inputs but the flags say {count}")
