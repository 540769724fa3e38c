"""Core ops that have a standard ONNX equivalent at some opset, for the reference ("onnx") target.

ONNX ``DeformConv`` (opset 19) computes DCNv1/v2 exactly as dynconv's op does; onnxruntime runs it,
so at opset >= 19 the reference flavour keeps it as one node instead of a decomposition.
"""

from __future__ import annotations

from typing import Callable

import onnx

from ..plugins.deform_conv.onnx_standard import MIN_OPSET as DEFORM_CONV_OPSET
from ..plugins.deform_conv.onnx_standard import to_standard_deform_conv
from ..plugins.spec import DOMAIN

Converter = Callable[[onnx.NodeProto], list[onnx.NodeProto]]
_STANDARD: dict[str, tuple[int, Converter]] = {"DynconvDeformConv2d": (DEFORM_CONV_OPSET, to_standard_deform_conv)}


def standard_ops(opset: int) -> frozenset[str]:
    """Names of the core ops that become standard ONNX nodes at ``opset``."""
    return frozenset(name for name, (minimum, _) in _STANDARD.items() if opset >= minimum)


def replace_with_standard_ops(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """Swap custom nodes of the ops in :func:`standard_ops` for their standard equivalents."""
    names = standard_ops(opset)
    if not names:
        return model
    rebuilt: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.domain == DOMAIN and node.op_type in names:
            rebuilt.extend(_STANDARD[node.op_type][1](node))
        else:
            rebuilt.append(node)
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)
    if not any(n.domain == DOMAIN for n in model.graph.node):
        kept = [o for o in model.opset_import if o.domain != DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model
