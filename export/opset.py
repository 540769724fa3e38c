"""Bring an ONNX model down to the requested default-domain opset.

The torch.export-based exporter emits opset >= 18 and down-converts with ONNX's C converter,
which has no adapter for ``Pad`` below 18. A ``Pad`` without the ``axes`` input means the same
in opsets 13..18, so such nodes are parked in a private domain during conversion.
"""

from __future__ import annotations

import logging

import onnx
from onnx import version_converter

from .shapes import is_weight, without_weights

log = logging.getLogger(__name__)
_PARKED_DOMAIN = "dynconv.parked"

def _same_since_13(node: onnx.NodeProto) -> bool:
    """Pad without ``axes`` and Split with explicit sizes mean the same in opsets 13..18."""
    if node.op_type == "Pad":
        return len(node.input) < 4
    if node.op_type == "Split":
        return len(node.input) >= 2 and bool(node.input[1]) and not any(a.name == "num_outputs" for a in node.attribute)
    return False


def _explicit_split_sizes(model: onnx.ModelProto) -> None:
    """Rewrite Split-18 ``num_outputs`` into explicit sizes where the split axis has a static size."""
    splits = [n for n in model.graph.node if n.op_type == "Split" and any(a.name == "num_outputs" for a in n.attribute)]
    if not splits:
        return
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    known = {v.name: v for v in [*inferred.input, *inferred.value_info, *inferred.output]}
    for node in splits:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        value = known.get(node.input[0])
        dims = value.type.tensor_type.shape.dim if value is not None else []
        axis = attrs.get("axis", 0)
        if not dims or not dims[axis].HasField("dim_value"):
            continue  # left as is: the converter then reports the Split it cannot express
        size, parts = dims[axis].dim_value, attrs["num_outputs"]
        chunk = -(-size // parts)
        sizes = [min(chunk, size - i * chunk) for i in range(parts)]
        name = f"{node.output[0]}__split_sizes"
        model.graph.initializer.append(onnx.helper.make_tensor(name, onnx.TensorProto.INT64, [parts], sizes))
        node.input[:] = [node.input[0], name]
        kept = [a for a in node.attribute if a.name != "num_outputs"]
        del node.attribute[:]
        node.attribute.extend(kept)


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 0


def downconvert(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """Return ``model`` at default-domain opset ``target`` (unchanged when already there).

    The converter serialises and copies the whole model, weights included, several times: it runs on
    a copy whose weights are typed graph inputs (:func:`without_weights`), and the weights, which no
    adapter changes, are put back afterwards."""
    if default_opset(model) <= target:
        return model
    converted = _downconvert(without_weights(model), target)
    inputs = {v.name for v in model.graph.input}
    kept_inputs = [v for v in converted.graph.input if v.name in inputs]
    del converted.graph.input[:]
    converted.graph.input.extend(kept_inputs)
    present = {init.name for init in converted.graph.initializer}
    converted.graph.initializer.extend(init for init in model.graph.initializer
                                       if is_weight(init) and init.name not in present)
    return converted


def _downconvert(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    _explicit_split_sizes(model)
    parked = [n for n in model.graph.node if n.domain in ("", "ai.onnx") and _same_since_13(n)]
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
    which only ReduceSum has before opset 18; with explicit axes, or set to 0, it has no effect."""
    if target >= 18 or not node.op_type.startswith("Reduce") or node.op_type == "ReduceSum":
        return
    noop = next((a.i for a in node.attribute if a.name == "noop_with_empty_axes"), 0)
    if noop and not any(a.name == "axes" for a in node.attribute):
        return  # an identity request: only opset 18 can say it, the checker reports it
    kept = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
    if len(kept) != len(node.attribute):
        del node.attribute[:]
        node.attribute.extend(kept)
