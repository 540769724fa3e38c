"""Operator specifications: the single source of truth for every dynconv core op.

A spec names the op (ONNX ``op_type`` == TensorRT plugin name), its version, its attributes with
types, defaults and valid ranges, and its inputs/outputs. The PyTorch custom op schema, both ONNX
exporters, the reference decomposition, the generated C++ field tables and the tests are all derived
from these objects. This module imports neither torch nor onnx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .errors import DynconvError

DOMAIN = "dynconv"
ATTR_TYPES = ("int", "float", "ints", "str")

# Output-shape rules receive input shapes whose entries may be Python ints or torch SymInts;
# they must only use +, -, *, // and comparisons-free arithmetic so sizes stay symbolic.
ShapeRule = Callable[[Sequence[Sequence[Any]], Mapping[str, Any]], list]
ShapeCheck = Callable[[Sequence[Sequence[int]], Mapping[str, Any]], None]


@dataclass(frozen=True)
class AttrSpec:
    """One ONNX attribute / TensorRT plugin field.

    ``default=None`` marks a required attribute. ``length`` fixes the length of an ``ints``
    attribute. ``minimum``/``maximum`` bound every element; ``choices`` enumerates legal values.
    """

    name: str
    type: str
    default: Any = None
    doc: str = ""
    length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None

    def __post_init__(self) -> None:
        if self.type not in ATTR_TYPES:
            raise ValueError(f"attribute {self.name}: unknown type {self.type!r}")

    @property
    def required(self) -> bool:
        return self.default is None

    def coerce(self, op: str, value: Any) -> Any:
        """Return ``value`` converted to this attribute's type, or raise DynconvError."""
        where = f"{op}.{self.name}"
        if self.type == "int":
            if isinstance(value, bool) or not _is_integral(value):
                raise DynconvError(f"{where} must be an integer, got {value!r}")
            value = int(value)
            self._check_range(where, [value])
        elif self.type == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DynconvError(f"{where} must be a finite number, got {value!r}")
            value = float(value)
            self._check_range(where, [value])
        elif self.type == "ints":
            if _is_integral(value):
                value = [value] * (self.length or 1)
            if not isinstance(value, (list, tuple)) or not all(_is_integral(v) and not isinstance(v, bool) for v in value):
                raise DynconvError(f"{where} must be a list of integers, got {value!r}")
            value = [int(v) for v in value]
            if self.length is not None and len(value) != self.length:
                raise DynconvError(f"{where} needs {self.length} values, got {len(value)}: {value}")
            self._check_range(where, value)
        else:
            if not isinstance(value, str):
                raise DynconvError(f"{where} must be a string, got {value!r}")
        if self.choices is not None:
            items = value if isinstance(value, list) else [value]
            bad = [v for v in items if v not in self.choices]
            if bad:
                raise DynconvError(f"{where}={value!r} is not supported; choose from {list(self.choices)}")
        return value

    def _check_range(self, where: str, values: Sequence[float]) -> None:
        for v in values:
            if self.minimum is not None and v < self.minimum:
                raise DynconvError(f"{where}={v} is below the minimum {self.minimum}")
            if self.maximum is not None and v > self.maximum:
                raise DynconvError(f"{where}={v} is above the maximum {self.maximum}")

    @property
    def torch_type(self) -> str:
        return {"int": "int", "float": "float", "ints": "int[]", "str": "str"}[self.type]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: its name, shape in words, and whether it may be absent.

    An optional input that is present in a graph is flagged by the int attribute
    ``with_<name>`` (added automatically), so a C++ plugin knows which inputs it received.
    """

    name: str
    shape: str
    doc: str = ""
    optional: bool = False

    @property
    def flag(self) -> str:
        return f"with_{self.name}"


@dataclass(frozen=True)
class OpSpec:
    """Everything an implementation of one core op must agree on."""

    name: str
    torch_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    attributes: tuple[AttrSpec, ...]
    output_shape: ShapeRule
    check_shapes: ShapeCheck
    doc: str = ""
    version: str = "1"
    layout: str = "NCHW"
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # Attributes the traced (exported) reference reads back from tensor shapes, where validation
    # makes them equal: one exported reference graph then serves every value of them.
    shape_derived: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        unknown = set(self.shape_derived) - {a.name for a in self.attributes}
        if unknown:
            raise ValueError(f"{self.name}: shape_derived names unknown attributes {sorted(unknown)}")

    # ----- names ---------------------------------------------------------------------------------
    @property
    def qualname(self) -> str:
        """The torch.library name, e.g. ``dynconv::ddf``."""
        return f"{DOMAIN}::{self.torch_name}"

    @property
    def onnx_op(self) -> str:
        """The ONNX ``domain::op_type`` used in exported graphs."""
        return f"{DOMAIN}::{self.name}"

    @property
    def optional_inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(t for t in self.inputs if t.optional)

    @property
    def onnx_attributes(self) -> tuple[AttrSpec, ...]:
        """Attributes of the exported node: the spec's own, the presence flags, ``plugin_version``."""
        flags = tuple(AttrSpec(t.flag, "int", 0, f"1 when input '{t.name}' is present", minimum=0, maximum=1)
                      for t in self.optional_inputs)
        return self.attributes + flags

    def attribute(self, name: str) -> AttrSpec:
        for a in self.onnx_attributes:
            if a.name == name:
                return a
        raise KeyError(name)

    # ----- attributes ----------------------------------------------------------------------------
    def normalize(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Fill defaults, coerce types and check ranges; unknown names are an error."""
        known = {a.name for a in self.attributes}
        unknown = sorted(set(attrs) - known)
        if unknown:
            raise DynconvError(f"{self.name}: unknown attribute(s) {unknown}; valid: {sorted(known)}")
        out: dict[str, Any] = {}
        for a in self.attributes:
            if a.name in attrs and attrs[a.name] is not None:
                out[a.name] = a.coerce(self.name, attrs[a.name])
            elif a.required:
                raise DynconvError(f"{self.name}: attribute '{a.name}' is required")
            else:
                out[a.name] = a.coerce(self.name, a.default)
        return out

    def node_attributes(self, attrs: Mapping[str, Any], present: Mapping[str, bool]) -> dict[str, Any]:
        """Attributes written on the exported ONNX node (normalised values + presence flags)."""
        out = self.normalize(attrs)
        for t in self.optional_inputs:
            out[t.flag] = int(bool(present.get(t.name, False)))
        return out

    def parse_node_attributes(self, node_attrs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
        """Inverse of :meth:`node_attributes`: split a node's attributes into op attrs and flags."""
        flags = {t.name: bool(node_attrs.get(t.flag, 0)) for t in self.optional_inputs}
        plain = {k: v for k, v in node_attrs.items()
                 if k not in {t.flag for t in self.optional_inputs} and k != "plugin_version"}
        return self.normalize(plain), flags

    # ----- shapes --------------------------------------------------------------------------------
    def infer_shapes(self, input_shapes: Sequence[Sequence[Any] | None], attrs: Mapping[str, Any]) -> list:
        """Output shapes from input shapes (``None`` for an absent optional input)."""
        return self.output_shape(input_shapes, attrs)

    def validate(self, input_shapes: Sequence[Sequence[int] | None], attrs: Mapping[str, Any]) -> None:
        """Raise DynconvError when concrete input shapes do not fit the attributes."""
        required = [t.name for t in self.inputs if not t.optional]
        for t, s in zip(self.inputs, input_shapes):
            if s is None and t.name in required:
                raise DynconvError(f"{self.name}: input '{t.name}' is required")
        self.check_shapes(input_shapes, attrs)

    # ----- torch schema ----------------------------------------------------------------------
    def torch_schema(self) -> str:
        """The torch.library schema string; tensors first (optional ones as ``Tensor?``), then attributes."""
        args = [f"Tensor{'?' if t.optional else ''} {t.name}" for t in self.inputs]
        args += [f"{a.torch_type} {a.name}" for a in self.attributes]
        outs = ", ".join("Tensor" for _ in self.outputs)
        if len(self.outputs) > 1:
            outs = f"({outs})"
        return f"({', '.join(args)}) -> {outs}"


def _is_integral(value: Any) -> bool:
    if isinstance(value, int):
        return True
    return hasattr(value, "__index__") and not isinstance(value, float)


def conv_out(size: Any, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int) -> Any:
    """Output size of a convolution window: ``floor((size + pads - dilation*(kernel-1) - 1)/stride) + 1``.

    Written with ``//`` on the non-negative numerator so it stays exact for symbolic sizes.
    """
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def require(condition: bool, message: str) -> None:
    """Raise DynconvError(message) unless ``condition`` holds."""
    if not condition:
        raise DynconvError(message)
