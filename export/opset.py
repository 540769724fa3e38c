"""Bring an ONNX model down to the requested default-domain opset.

The torch.export-based exporter emits opset >= 18 and down-converts with ONNX's C converter,
which has no adapter for ``Pad`` below 18. A ``Pad`` without the ``axes`` input means the same
in opsets 13..18, so such nodes are parked in a private domain during conversion.
"""

from __future__ import annotations

import logging

import onnx
from onnx import version_converter

log = logging.getLogger(__name__)
_PARKED_DOMAIN = "dynconv.parked"
_SAME_SINCE_13 = {"Pad"}


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 0


def downconvert(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """Return ``model`` at default-domain opset ``target`` (unchanged when already there)."""
    if default_opset(model) <= target:
        return model
    parked = [n for n in model.graph.node if n.op_type in _SAME_SINCE_13 and n.domain in ("", "ai.onnx")
              and len(n.input) < 4]
    for node in parked:
        node.domain = _PARKED_DOMAIN
    custom = [onnx.OperatorSetIdProto(domain=o.domain, version=o.version) for o in model.opset_import
              if o.domain not in ("", "ai.onnx")]
    if parked:
        model.opset_import.append(onnx.helper.make_opsetid(_PARKED_DOMAIN, 1))
    try:
        converted = version_converter.convert_version(model, target)
    finally:
        for node in parked:
            node.domain = ""
    for node in converted.graph.node:
        if node.domain == _PARKED_DOMAIN:
            node.domain = ""
        _drop_foreign_reduce_attribute(node, target)
    kept = [o for o in converted.opset_import if o.domain != _PARKED_DOMAIN]
    del converted.opset_import[:]
    converted.opset_import.extend(kept)
    have = {o.domain for o in converted.opset_import}
    converted.opset_import.extend(o for o in custom if o.domain not in have)
    return converted


def _drop_foreign_reduce_attribute(node: onnx.NodeProto, target: int) -> None:
    """The C converter moves Reduce* axes back to an attribute but keeps ``noop_with_empty_axes``,
    which only ReduceSum has before opset 18; with explicit axes it has no effect, so drop it."""
    if target >= 18 or not node.op_type.startswith("Reduce") or node.op_type == "ReduceSum":
        return
    if not any(a.name == "axes" for a in node.attribute):
        return
    kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
    if len(kept) != len(node.attribute):
        del node.attribute[:]
        node.attribute.extend(kept)
