"""Replace custom nodes by standard-op subgraphs exported from the ops' PyTorch references.

Used by both exporters for the "onnx" target: the model is exported with custom nodes while each
op call's shapes and attributes are recorded (in the TorchScript exporter's own trace, or in an
example run with the ops computing nothing), and every custom node is swapped for the
TorchScript-exporter ONNX export of its reference decomposition. One export serves each distinct
op configuration: traced on a shrunk feature map (batch and map sides dynamic), its constants folded and
shared by every instance as initializers. So there is one decomposition per op for both exporters.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import onnx
import onnx.numpy_helper
import torch

from ..plugins.errors import DynconvError
from ..plugins.registration import calls_observed, reference_of
from ..plugins.spec import DOMAIN, OpSpec, TensorSpec
from .postprocess import node_inputs
from .progress import stage
from .shapes import tensor_value_key


class CallOrderMismatch(DynconvError):
    """The exported graph's custom nodes are not the recorded op calls, in order."""


@dataclass
class OpCall:
    """One call of a core op seen while running the model."""

    spec: OpSpec
    tensors: list[torch.Tensor | None]
    attrs: dict[str, Any]


@contextlib.contextmanager
def recording_calls() -> Iterator[list[OpCall]]:
    """Within the block, every eager core-op call is appended to the yielded list, in execution order
    (functional API, ``torch.ops.dynconv`` calls and TorchScript models alike)."""
    calls: list[OpCall] = []

    def record(spec: OpSpec, tensors: list, attrs: dict[str, Any]) -> None:
        calls.append(OpCall(spec, [None if t is None else t.detach() for t in tensors], attrs))

    with calls_observed(record):
        yield calls


def run_and_record(model: torch.nn.Module, args: Sequence[torch.Tensor]) -> tuple[Any, list[OpCall]]:
    """Run ``model`` once; return its output and its core-op calls in execution order."""
    with torch.no_grad(), recording_calls() as calls:
        out = model(*args)
    return out, calls


def record_calls(model: torch.nn.Module, args: Sequence[torch.Tensor]) -> list[OpCall]:
    """Run ``model`` once and return its core-op calls in execution order."""
    return run_and_record(model, args)[1]


def functional_modules() -> list[Any]:
    """The plugin modules whose functional ops call ``call_op`` (patched by :func:`calls_replaced`)."""
    from ..plugins.dcnv3 import functional as dcnv3_fn  # noqa: PLC0415
    from ..plugins.ddf import functional as ddf_fn  # noqa: PLC0415
    from ..plugins.deform_conv import functional as deform_fn  # noqa: PLC0415
    from ..plugins.drconv import functional as drconv_fn  # noqa: PLC0415
    from ..plugins.involution import functional as involution_fn  # noqa: PLC0415

    return [deform_fn, dcnv3_fn, ddf_fn, involution_fn, drconv_fn]


@contextlib.contextmanager
def calls_replaced(replacement: Callable[[OpSpec, Sequence[torch.Tensor | None], dict[str, Any]], Any],
                   ) -> Iterator[None]:
    """Within the block, every functional dynconv op runs ``replacement(spec, tensors, attrs)`` instead
    of its custom op (calls of ``torch.ops.dynconv.*`` made directly are not affected)."""
    modules = functional_modules()
    saved = [m.call_op for m in modules]
    for m in modules:
        m.call_op = replacement
    try:
        yield
    finally:
        for m, original in zip(modules, saved):
            m.call_op = original


class _ReferenceModule(torch.nn.Module):
    def __init__(self, call: OpCall) -> None:
        super().__init__()
        self.spec, self.attrs = call.spec, call.attrs
        self.present = [t is not None for t in call.tensors]

    def forward(self, *present: torch.Tensor) -> torch.Tensor:
        it = iter(present)
        tensors = [next(it) if p else None for p in self.present]
        return reference_of(self.spec)(*tensors, **self.attrs)


_TRACE_SIZES = (8, 16, 32)  # feature-map sides tried for tracing a reference (the graph is size-generic)


def dim_labels(tensor: TensorSpec) -> list[str]:
    """The spec's dim names of ``tensor``, e.g. ``['N', 'C', 'H', 'W']`` from ``"[N, C, H, W]"``."""
    return [d.strip() for d in tensor.shape.strip("[]").split(",")]


def small_shapes(call: OpCall) -> list[tuple[int, ...] | None]:
    """The call's input shapes with batch at most 2 and the feature map shrunk to the smallest
    side in :data:`_TRACE_SIZES` that the spec accepts (its output size follows by the spec's rule);
    the call's own shapes when no smaller one is valid. Channel and kernel dims stay as they are."""
    spec = call.spec
    shapes = [None if t is None else tuple(t.shape) for t in call.tensors]
    labels = [dim_labels(t) for t in spec.inputs]
    sizes = dict(zip(labels[0], shapes[0]))
    out_labels = dim_labels(spec.outputs[0])
    for side in _TRACE_SIZES:
        h, w = min(sizes["H"], side), min(sizes["W"], side)
        if (h, w) == (sizes["H"], sizes["W"]) and sizes["N"] <= 2:
            break
        small = {"N": min(sizes["N"], 2), "H": h, "W": w}
        first = tuple(small.get(label, size) for label, size in zip(labels[0], shapes[0]))
        out = dict(zip(out_labels, spec.infer_shapes([first, *shapes[1:]], call.attrs)[0]))
        small.update(Ho=out["Ho"], Wo=out["Wo"])
        candidate = [None if shape is None else tuple(small.get(label, size) for label, size in zip(names, shape))
                     for names, shape in zip(labels, shapes)]
        try:
            spec.validate(candidate, call.attrs)
        except DynconvError:
            continue
        return candidate
    return shapes


_MAP_DIMS = frozenset({"N", "H", "W", "Ho", "Wo"})  # the dims a model's dynamic axes can move


def _present(call: OpCall) -> list[tuple[TensorSpec, torch.Tensor]]:
    return [(spec, t) for spec, t in zip(call.spec.inputs, call.tensors) if t is not None]


def _config_key(call: OpCall) -> str:
    """Op, attributes (but the ``shape_derived`` ones), present inputs, their ranks and dtypes."""
    attrs = {k: v for k, v in call.attrs.items() if k not in call.spec.shape_derived}
    return repr((call.spec.name, attrs, [None if t is None else (t.dim(), str(t.dtype)) for t in call.tensors]))


def reference_keys(calls: Sequence[OpCall]) -> list[tuple[str, list[list[int]]]]:
    """Per call, the key of the exported reference graph it shares and the dims that graph keeps
    dynamic (per present input).

    Batch and map sides are always dynamic. Any other dim (channels, kernel taps) is static where
    all calls of the configuration (:func:`_config_key`) have the same size in it, so the size
    arithmetic on it folds away (fewer nodes per instance) at no extra export: e.g. DCNv3's
    channel counts, fixed by its attributes, or a 3x3 kernel shared by convolutions of different
    widths. Ops with ``shape_derived`` attributes keep every dim dynamic (those attributes live in
    such dims)."""
    configs = [_config_key(call) for call in calls]
    sizes: dict[str, list[list[set[int]]]] = {}
    for call, config in zip(calls, configs):
        seen = sizes.setdefault(config, [[set() for _ in t.shape] for _, t in _present(call)])
        for dims, (_, tensor) in zip(seen, _present(call)):
            for values, size in zip(dims, tensor.shape):
                values.add(int(size))
    keys = []
    for call, config in zip(calls, configs):
        dynamic = [[d for d, label in enumerate(dim_labels(spec)) if call.spec.shape_derived
                    or label in _MAP_DIMS or len(sizes[config][i][d]) > 1]
                   for i, (spec, _) in enumerate(_present(call))]
        fixed = [[int(size) for d, size in enumerate(t.shape) if d not in dims]
                 for dims, (_, t) in zip(dynamic, _present(call))]
        keys.append((config + repr(fixed), dynamic))
    return keys


def _export_reference(call: OpCall, opset: int, dynamic: list[list[int]] | None = None) -> onnx.GraphProto:
    """The reference decomposition of ``call``'s op as a graph with inputs ``in<i>`` and output
    ``out``; the ``dynamic`` dims per input (:func:`reference_keys`; default all) are dynamic, the
    rest keep the call's sizes. Traced on small inputs of the call's dtypes (:func:`small_shapes`)."""
    inputs = [torch.zeros(shape, dtype=t.dtype) for t, shape in zip(call.tensors, small_shapes(call))
              if t is not None]
    names = [f"in{i}" for i in range(len(inputs))]
    dynamic = [list(range(t.dim())) for t in inputs] if dynamic is None else dynamic
    axes = {n: {d: f"{n}_d{d}" for d in dims} for n, dims in zip(names, dynamic)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_ReferenceModule(call), tuple(inputs), buffer, dynamo=False, opset_version=opset,
                          input_names=names, output_names=["out"], dynamic_axes=axes, do_constant_folding=True)
    return onnx.load_model_from_string(buffer.getvalue()).graph


_RANDOM = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                     "Bernoulli"})  # never folded nor merged: each node draws its own values
_SUBGRAPH = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_TYPE_KEEPING = frozenset({"Gather", "Slice", "Reshape", "Unsqueeze", "Squeeze", "Concat", "Transpose", "Identity",
                           "Add", "Sub", "Mul", "Div", "Min", "Max", "Neg", "Abs", "Expand", "Tile"})


class _Reference:
    """One exported reference graph, ready to be instanced for many calls: its constants (initializers
    and ``Constant`` nodes) become initializers that every instance shares under ``shared_prefix``."""

    def __init__(self, graph: onnx.GraphProto, shared_prefix: str, opset: int) -> None:
        self.shared_prefix = shared_prefix
        self.constants = {init.name: init for init in graph.initializer}
        self.nodes = []
        for node in graph.node:
            value = node.attribute[0].t if len(node.attribute) == 1 and node.attribute[0].name == "value" else None
            if node.op_type == "Constant" and value is not None and node.output[0] != "out":
                constant = self.constants[node.output[0]] = onnx.TensorProto()
                constant.CopyFrom(value)
                constant.name = node.output[0]
            else:
                self.nodes.append(node)
        self._fold_static_sizes(graph)
        if not any(a.type in _SUBGRAPH for node in self.nodes for a in node.attribute):  # renames stay local
            self._drop_noop_casts(graph)
            self._merge_repeated_nodes()
        self._fold_constants(opset)
        self._drop_dead_nodes()

    def _merge_repeated_nodes(self) -> None:
        """One node for each repeated computation (the exporter emits ``Shape(x)`` per size read),
        after one constant for each repeated value (e.g. an ``Unsqueeze`` axes tensor per call)."""
        alias: dict[str, str] = {}
        by_value: dict[tuple, str] = {}
        for name, value in self.constants.items():
            first = by_value.setdefault(tensor_value_key(value), name)
            if first != name:
                alias[name] = first
        seen: dict[tuple, onnx.NodeProto] = {}
        kept = []
        for node in self.nodes:
            node.input[:] = [alias.get(name, name) for name in node.input]
            key = (node.domain, node.op_type, tuple(node.input),
                   tuple(a.SerializeToString(deterministic=True) for a in node.attribute))
            first = seen.get(key) if node.op_type not in _RANDOM else None
            if first is not None and len(first.output) == len(node.output) and "out" not in node.output:
                alias.update(zip(node.output, first.output))
                continue
            seen.setdefault(key, node)
            kept.append(node)
        self.nodes = kept

    def _drop_noop_casts(self, graph: onnx.GraphProto) -> None:
        """``Cast`` to the type its input already has (the exporter casts every traced size to int64)."""
        types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info]}
        types.update({name: value.data_type for name, value in self.constants.items()})
        alias: dict[str, str] = {}
        kept = []
        for node in self.nodes:
            node.input[:] = [alias.get(name, name) for name in node.input]
            if node.op_type == "Shape":
                types[node.output[0]] = onnx.TensorProto.INT64
            elif node.op_type in _TYPE_KEEPING and node.input[0] in types:
                types.setdefault(node.output[0], types[node.input[0]])
            to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
            if to is not None and types.get(node.input[0]) == to and node.output[0] != "out":
                alias[node.output[0]] = node.input[0]
                continue
            kept.append(node)
        self.nodes = kept

    def _fold_static_sizes(self, graph: onnx.GraphProto) -> None:
        """``Gather(Shape(x), i)`` becomes a constant where dim i of x is static (the exporter keeps
        such size arithmetic, e.g. ``x.shape[1] // groups``, even for a constant channel count)."""
        sizes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                 for v in [*graph.input, *graph.value_info] if v.type.tensor_type.HasField("shape")}
        shapes: dict[str, list[int | None]] = {}
        kept = []
        for node in self.nodes:
            if node.op_type == "Shape" and node.input[0] in sizes:
                attrs = {a.name: a.i for a in node.attribute}
                dims = sizes[node.input[0]]
                shapes[node.output[0]] = dims[attrs.get("start", 0):attrs.get("end", len(dims))]
            elif node.op_type == "Gather" and node.input[0] in shapes and node.input[1] in self.constants:
                index = onnx.numpy_helper.to_array(self.constants[node.input[1]])
                dims = shapes[node.input[0]]
                picked = [dims[i] for i in index.reshape(-1)] if not any(a.i for a in node.attribute) else [None]
                if all(d is not None for d in picked) and node.output[0] != "out":
                    value = np.asarray(picked, dtype=np.int64).reshape(index.shape)
                    self.constants[node.output[0]] = onnx.numpy_helper.from_array(value, node.output[0])
                    continue
            kept.append(node)
        self.nodes = kept

    def _drop_dead_nodes(self) -> None:
        """Nodes whose outputs nothing reads (a ``Shape`` left without readers by the folding)."""
        needed = {"out"}
        live = []
        for node in reversed(self.nodes):
            if any(name in needed for name in node.output):
                live.append(node)
                needed.update(node_inputs(node))
        self.nodes = live[::-1]
        self.constants = {name: value for name, value in self.constants.items() if name in needed}

    def _fold_constants(self, opset: int) -> None:
        """Evaluate the nodes that read constants only (the exporter leaves e.g. ``F.pad``'s pads
        arithmetic in the graph), so every instance carries just the nodes that depend on inputs."""
        known = set(self.constants)
        foldable = []
        for node in self.nodes:
            inputs = [name for name in node.input if name]
            if (inputs and node.op_type not in _RANDOM and all(name in known for name in inputs)
                    and "out" not in node.output and not any(a.type in _SUBGRAPH for a in node.attribute)):
                foldable.append(node)
                known.update(node.output)
        if not foldable:
            return
        from onnx.reference import ReferenceEvaluator  # noqa: PLC0415

        outputs = [name for node in foldable for name in node.output]
        graph = onnx.helper.make_graph(foldable, "fold", [], [onnx.helper.make_value_info(n, onnx.TypeProto())
                                                              for n in outputs], list(self.constants.values()))
        try:
            values = ReferenceEvaluator(onnx.helper.make_model(
                graph, opset_imports=[onnx.helper.make_opsetid("", opset)])).run(None, {})
        except Exception:  # noqa: BLE001 - an op the evaluator lacks: keep the nodes as they are
            return
        for name, value in zip(outputs, values):
            self.constants[name] = onnx.numpy_helper.from_array(np.asarray(value), name)
        folded = {id(node) for node in foldable}
        self.nodes = [node for node in self.nodes if id(node) not in folded]

    def shared_constants(self) -> list[onnx.TensorProto]:
        """The constants as initializers named for :meth:`instance` (added to the graph once)."""
        tensors = []
        for name, value in self.constants.items():
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value)
            tensor.name = self.shared_prefix + name
            tensors.append(tensor)
        return tensors

    def instance(self, node: onnx.NodeProto, prefix: str) -> list[onnx.NodeProto]:
        """The reference's nodes wired to ``node``'s inputs and output, other values under ``prefix``."""
        rename = {f"in{i}": name for i, name in enumerate(node.input)}
        rename["out"] = node.output[0]
        for name in self.constants:
            rename[name] = self.shared_prefix + name

        def mapped(name: str) -> str:
            return rename.get(name, prefix + name) if name else name

        copies = []
        for sub_node in self.nodes:
            copy = onnx.NodeProto()
            copy.CopyFrom(sub_node)
            copy.name = prefix + sub_node.name
            copy.input[:] = [mapped(n) for n in sub_node.input]
            copy.output[:] = [mapped(n) for n in sub_node.output]
            copies.append(copy)
        return copies


def _same_tensor(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def without_repeats(calls: Sequence[OpCall]) -> list[OpCall]:
    """``calls`` less those that repeat an earlier call: same op and attributes on inputs of equal
    values. The TorchScript exporter merges such calls (a layer applied twice to the same input,
    its offset branch included) into one node."""
    kept: list[OpCall] = []
    for call in calls:
        if not any(c.spec is call.spec and c.attrs == call.attrs and len(c.tensors) == len(call.tensors)
                   and all(_same_tensor(a, b) for a, b in zip(c.tensors, call.tensors)) for c in kept):
            kept.append(call)
    return kept


def splice_references(model: onnx.ModelProto, calls: list[OpCall], opset: int,
                      keep: frozenset[str] = frozenset()) -> onnx.ModelProto:
    """Swap each custom node of ``model`` (in order) for its call's reference subgraph; nodes of the
    ops named in ``keep`` stay as they are."""
    graph = model.graph
    calls = [c for c in calls if c.spec.name not in keep]
    nodes = [n for n in graph.node if n.domain == DOMAIN and n.op_type not in keep]
    if len(nodes) < len(calls):  # the TorchScript exporter merges a call repeated on the same inputs
        calls = without_repeats(calls)
    if len(nodes) != len(calls) or any(n.op_type != c.spec.name for n, c in zip(nodes, calls)):
        raise CallOrderMismatch(
            f"cannot decompose: the exported graph has {[n.op_type for n in nodes]} but the model ran "
            f"{[c.spec.name for c in calls]}; use --exporter dynamo for models with data-dependent control flow")
    new_nodes: list[onnx.NodeProto] = []
    cache: dict[str, _Reference] = {}
    index = iter(range(len(nodes)))
    call_iter = iter(zip(calls, reference_keys(calls)))
    for node in graph.node:
        if node.domain != DOMAIN or node.op_type in keep:
            new_nodes.append(node)
            continue
        call, (key, dynamic) = next(call_iter)
        if key not in cache:
            with stage(f"reference graph of {call.spec.name}"):
                cache[key] = _Reference(_export_reference(call, opset, dynamic), f"dynconv_reference_{len(cache)}/",
                                        opset)
            graph.initializer.extend(cache[key].shared_constants())
        new_nodes.extend(cache[key].instance(node, f"{node.name or node.op_type}_{next(index)}/"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    if not any(n.domain == DOMAIN for n in graph.node):
        kept = [o for o in model.opset_import if o.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model
