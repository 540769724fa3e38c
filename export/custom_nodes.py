"""Emit one custom-domain ONNX node per core op, for both PyTorch exporters, from the op specs.

The node's op_type, attributes and ``plugin_version`` come from the spec, so TensorRT's ONNX parser
maps it onto the plugin registered under the same name and version. Absent optional inputs are
dropped and flagged with ``with_<name>=0``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch.onnx import symbolic_helper

from ..plugins.registration import split_args
from ..plugins.registry import all_specs
from ..plugins.spec import OpSpec
from .shapes import _Unknown

PLUGIN_VERSION_ATTR = "plugin_version"
_TS_PARSE = {"int": "i", "float": "f", "ints": "is", "str": "s"}


def node_attributes(spec: OpSpec, attrs: dict[str, Any], present: dict[str, bool]) -> dict[str, Any]:
    """The attributes written on the exported node, ``plugin_version`` included."""
    out = spec.node_attributes(attrs, present)
    out[PLUGIN_VERSION_ATTR] = spec.version
    return out


def dynamo_emitter(spec: OpSpec) -> Callable[..., torch.Tensor]:
    """A decomposition for ``ExportedProgram.run_decompositions`` that becomes one custom node."""

    def emit(*args: Any) -> torch.Tensor:
        tensors, attrs = split_args(spec, args)
        attrs = spec.normalize(attrs)
        present = {t.name: v is not None for t, v in zip(spec.inputs, tensors)}
        shapes = [None if t is None else tuple(t.shape) for t in tensors]
        out_shape = spec.infer_shapes(shapes, attrs)[0]
        return torch.onnx.ops.symbolic(
            spec.onnx_op, [t for t in tensors if t is not None], node_attributes(spec, attrs, present),
            dtype=tensors[0].dtype, shape=out_shape, version=1)

    return emit


def dynamo_trt_table() -> dict:
    """Decomposition table mapping every registered op to its custom node."""
    return {getattr(torch.ops.dynconv, s.torch_name).default: dynamo_emitter(s) for s in all_specs()}


def torchscript_symbolic(spec: OpSpec) -> Callable:
    """A TorchScript-exporter symbolic function emitting the custom node with a typed output."""
    descriptors = ["v"] * len(spec.inputs) + [_TS_PARSE[a.type] for a in spec.attributes]

    def symbolic(g: Any, *args: Any) -> Any:
        tensors, attrs = split_args(spec, args)
        tensors = [None if symbolic_helper._is_none(t) else t for t in tensors]
        attrs = spec.normalize(attrs)
        present = {t.name: v is not None for t, v in zip(spec.inputs, tensors)}
        kwargs = {f"{k}_{_suffix(v)}": v for k, v in node_attributes(spec, attrs, present).items()}
        out = g.op(spec.onnx_op, *[t for t in tensors if t is not None], **kwargs)
        out.setType(_output_type(spec, tensors, attrs))
        return out

    # parse_args zips descriptors with the parameter names, so give the function one per argument.
    names = ["g"] + [t.name for t in spec.inputs] + [a.name for a in spec.attributes]
    symbolic.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_ONLY) for n in names])
    return symbolic_helper.parse_args(*descriptors)(symbolic)


def register_torchscript_symbolics(opset: int) -> None:
    """Register the symbolic of every op for the TorchScript exporter at ``opset``."""
    for spec in all_specs():
        torch.onnx.register_custom_op_symbolic(spec.qualname, torchscript_symbolic(spec), opset)


def unregister_torchscript_symbolics(opset: int) -> None:
    for spec in all_specs():
        torch.onnx.unregister_custom_op_symbolic(spec.qualname, opset)


def _output_type(spec: OpSpec, tensors: list, attrs: dict[str, Any]) -> Any:
    """Output type with every size that is static in the inputs computed, dynamic ones left unknown."""
    shapes = []
    for t in tensors:
        if t is None:
            shapes.append(None)
            continue
        sizes = t.type().varyingSizes()
        shapes.append(tuple(_Unknown() if s is None else s for s in sizes))
    out = spec.infer_shapes(shapes, attrs)[0]
    dims = [d if isinstance(d, int) else None for d in out]
    return tensors[0].type().with_sizes(dims)


def _suffix(value: Any) -> str:
    if isinstance(value, str):
        return "s"
    if isinstance(value, float):
        return "f"
    return "i"
