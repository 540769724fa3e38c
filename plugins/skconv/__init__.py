"""Selective Kernel convolution, exported as standard ONNX (no custom op)."""

from .module import SKConv2d

__all__ = ["SKConv2d"]
