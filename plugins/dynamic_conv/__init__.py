"""DynamicConv and CondConv: mixture-of-experts convolutions exported as standard ONNX (no custom op)."""

from .functional import aggregate_experts, mixture_conv2d
from .module import CondConv2d, DynamicConv2d

__all__ = ["CondConv2d", "DynamicConv2d", "aggregate_experts", "mixture_conv2d"]
