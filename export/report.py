"""What an export did, in a few lines: dynamic ops found, plugin nodes, I/O shapes, file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import onnx
import torch

from ..plugins.spec import DOMAIN

_PLUGIN_PACKAGE = "dynconv.plugins."


@dataclass
class ExportReport:
    target: str
    exporter: str
    opset: int
    modules: Counter = field(default_factory=Counter)
    op_calls: Counter = field(default_factory=Counter)
    plugin_nodes: Counter = field(default_factory=Counter)
    inputs: list[tuple[str, str, list]] = field(default_factory=list)
    outputs: list[tuple[str, str, list]] = field(default_factory=list)
    path: str = ""
    size_bytes: int = 0

    def lines(self) -> list[str]:
        found = ", ".join(f"{n} x{c}" for n, c in sorted(self.modules.items())) or "none"
        calls = ", ".join(f"{n} x{c}" for n, c in sorted(self.op_calls.items())) or "none"
        if self.target == "trt":
            nodes = ", ".join(f"{n} x{c}" for n, c in sorted(self.plugin_nodes.items())) or "none"
            fate = f"plugin nodes: {nodes}"
        else:
            fate = "plugin nodes: none (reference target: core ops decomposed into standard ONNX ops)"
        out = [f"dynamic modules: {found}", f"core op calls: {calls}", fate]
        out += [f"input  {name}: {dtype} {dims}" for name, dtype, dims in self.inputs]
        out += [f"output {name}: {dtype} {dims}" for name, dtype, dims in self.outputs]
        out.append(f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, opset {self.opset}, "
                   f"target {self.target}, exporter {self.exporter})")
        return out


def is_eager_module(model: object) -> bool:
    """An ``nn.Module`` whose submodules can be inspected and swapped (not TorchScript, not a
    ``torch.export`` program)."""
    return isinstance(model, torch.nn.Module) and not isinstance(model, torch.jit.ScriptModule)


def dynamic_modules(model: object) -> Counter:
    """Outermost dynconv layers inside ``model`` (their own sub-layers are not counted again)."""
    counts: Counter = Counter()
    if not is_eager_module(model):
        return counts
    counted: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{prefix}." if prefix else "") for prefix in counted):
            continue
        if type(module).__module__.startswith(_PLUGIN_PACKAGE):
            counts[type(module).__name__] += 1
            counted.append(name)
    return counts


def describe_io(values) -> list[tuple[str, str, list]]:
    rows = []
    for value in values:
        tensor = value.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        rows.append((value.name, onnx.TensorProto.DataType.Name(tensor.elem_type).lower(), dims))
    return rows


def plugin_nodes(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node if n.domain == DOMAIN)
