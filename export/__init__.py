"""dynconv.export: PyTorch models with dynamic convolutions to ONNX (TensorRT-plugin or reference flavour)."""

from .. import plugins as _plugins  # noqa: F401  (registers every core op)
from .api import export_model
from .options import ExportOptions

__all__ = ["ExportOptions", "export_model"]
