"""Rewrite a ``DynconvDeformConv2d`` node as the standard ONNX ``DeformConv`` (opset >= 19); onnx only.

ONNX ``DeformConv`` uses the same math and offset/mask layout as torchvision (and this op):
inputs ``X, W, offset, B, mask``, an absent ``B`` before a present ``mask`` written as ``""``;
attributes ``strides``, ``pads = [ph, pw, ph, pw]``, ``dilations``, ``group``, ``offset_group``,
``kernel_shape`` (optional, inferred from W when absent).
"""

from __future__ import annotations

from typing import Sequence

import onnx
from onnx import helper

from ..errors import DynconvError
from .spec import DEFORM_CONV2D

STANDARD_OP = "DeformConv"
MIN_OPSET = 19


def _attributes(node: onnx.NodeProto) -> dict:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else (list(v) if isinstance(v, (list, tuple)) else v)
            for k, v in attrs.items()}


def _present_inputs(node: onnx.NodeProto, flags: dict[str, bool]) -> dict[str, str]:
    """Map each spec input name to the node's tensor name ("" or missing = absent)."""
    names = list(node.input)
    if len(names) == len(DEFORM_CONV2D.inputs):  # positional form, absent inputs as ""
        return {t.name: n for t, n in zip(DEFORM_CONV2D.inputs, names) if n}
    out: dict[str, str] = {}
    it = iter(names)
    for t in DEFORM_CONV2D.inputs:
        if not t.optional or flags.get(t.name, False):
            name = next(it, "")
            if not name:
                raise DynconvError(f"{node.name or node.op_type}: input '{t.name}' is flagged present but missing")
            out[t.name] = name
    if next(it, None) is not None:
        raise DynconvError(f"{node.name or node.op_type}: {len(names)} inputs do not match its "
                           "with_mask/with_bias flags")
    return out


def to_standard_deform_conv(node: onnx.NodeProto, kernel_shape: Sequence[int] | None = None) -> list[onnx.NodeProto]:
    """The standard ``DeformConv`` node(s) computing what ``node`` (a ``DynconvDeformConv2d``) computes.

    Attributes and presence flags (``with_mask``, ``with_bias``) are read from ``node``;
    ``kernel_shape`` (kh, kw), when known (e.g. from the weight initializer), is written too.
    The output keeps the node's output name, so the result drops into the graph in its place.
    """
    if node.op_type != DEFORM_CONV2D.name:
        raise DynconvError(f"to_standard_deform_conv expects a {DEFORM_CONV2D.name} node, got {node.op_type}")
    attrs, flags = DEFORM_CONV2D.parse_node_attributes(_attributes(node))
    inputs = _present_inputs(node, flags)
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    ordered = [inputs["input"], inputs["weight"], inputs["offset"], inputs.get("bias", ""), inputs.get("mask", "")]
    while ordered and not ordered[-1]:
        ordered.pop()
    extra = {}
    if kernel_shape is not None:
        if len(kernel_shape) != 2:
            raise DynconvError(f"kernel_shape must be (kh, kw), got {list(kernel_shape)}")
        extra["kernel_shape"] = [int(k) for k in kernel_shape]
    standard = helper.make_node(
        STANDARD_OP, ordered, [node.output[0]], name=node.name or None,
        strides=[sh, sw], pads=[ph, pw, ph, pw], dilations=[dh, dw],
        group=attrs["groups"], offset_group=attrs["offset_groups"], **extra)
    return [standard]
