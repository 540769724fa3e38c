"""Replace custom nodes by standard-op subgraphs exported from the ops' PyTorch references.

Used by both exporters for the "onnx" target: the model is exported with custom nodes, each op
call's concrete arguments are recorded in a separate forward pass, and every custom node is
swapped for the TorchScript-exporter ONNX export of its reference decomposition (all dims
dynamic, one export per distinct op configuration), so there is one decomposition per op for
both exporters.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import onnx
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..plugins.errors import DynconvError
from ..plugins.registration import reference_of, split_args
from ..plugins.registry import get_spec
from ..plugins.spec import DOMAIN, OpSpec
from .progress import stage


class CallOrderMismatch(DynconvError):
    """The exported graph's custom nodes are not the recorded op calls, in order."""


@dataclass
class OpCall:
    """One call of a core op seen while running the model."""

    spec: OpSpec
    tensors: list[torch.Tensor | None]
    attrs: dict[str, Any]


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[OpCall] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func.namespace == DOMAIN:
            spec = get_spec(func._opname)
            tensors, attrs = split_args(spec, args)
            self.calls.append(OpCall(spec, [None if t is None else t.detach().clone() for t in tensors],
                                     spec.normalize(attrs)))
        return func(*args, **(kwargs or {}))


def run_and_record(model: torch.nn.Module, args: Sequence[torch.Tensor]) -> tuple[Any, list[OpCall]]:
    """Run ``model`` once; return its output and its core-op calls in execution order."""
    recorder = _Recorder()
    with torch.no_grad(), recorder:
        out = model(*args)
    return out, recorder.calls


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


def _export_reference(call: OpCall, opset: int) -> onnx.GraphProto:
    inputs = [t for t in call.tensors if t is not None]
    names = [f"in{i}" for i in range(len(inputs))]
    axes = {n: {d: f"{n}_d{d}" for d in range(t.dim())} for n, t in zip(names, inputs)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_ReferenceModule(call), tuple(inputs), buffer, dynamo=False, opset_version=opset,
                          input_names=names, output_names=["out"], dynamic_axes=axes, do_constant_folding=True)
    return onnx.load_model_from_string(buffer.getvalue()).graph


def splice_references(model: onnx.ModelProto, calls: list[OpCall], opset: int,
                      keep: frozenset[str] = frozenset()) -> onnx.ModelProto:
    """Swap each custom node of ``model`` (in order) for its call's reference subgraph; nodes of the
    ops named in ``keep`` stay as they are."""
    graph = model.graph
    calls = [c for c in calls if c.spec.name not in keep]
    nodes = [n for n in graph.node if n.domain == DOMAIN and n.op_type not in keep]
    if len(nodes) != len(calls) or any(n.op_type != c.spec.name for n, c in zip(nodes, calls)):
        raise CallOrderMismatch(
            f"cannot decompose: the exported graph has {[n.op_type for n in nodes]} but the model ran "
            f"{[c.spec.name for c in calls]}; use --exporter dynamo for models with data-dependent control flow")
    new_nodes: list[onnx.NodeProto] = []
    cache: dict[str, onnx.GraphProto] = {}
    index = iter(range(len(nodes)))
    call_iter = iter(calls)
    for node in graph.node:
        if node.domain != DOMAIN or node.op_type in keep:
            new_nodes.append(node)
            continue
        call = next(call_iter)
        key = repr((call.spec.name, call.attrs, [None if t is None else (t.dim(), str(t.dtype)) for t in call.tensors]))
        if key not in cache:
            with stage(f"reference graph of {call.spec.name}"):
                cache[key] = _export_reference(call, opset)
        sub = cache[key]
        prefix = f"{node.name or node.op_type}_{next(index)}/"
        rename = {f"in{i}": name for i, name in enumerate(node.input)}
        rename["out"] = node.output[0]

        def mapped(name: str, rename: dict = rename, prefix: str = prefix) -> str:
            return rename.get(name, prefix + name) if name else name

        for init in sub.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = mapped(init.name)
            graph.initializer.append(copy)
        for sub_node in sub.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(sub_node)
            copy.name = prefix + sub_node.name
            copy.input[:] = [mapped(n) for n in sub_node.input]
            copy.output[:] = [mapped(n) for n in sub_node.output]
            new_nodes.append(copy)
    del graph.node[:]
    graph.node.extend(new_nodes)
    if not any(n.domain == DOMAIN for n in graph.node):
        kept = [o for o in model.opset_import if o.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model
