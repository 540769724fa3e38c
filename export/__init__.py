"""dynconv.export: PyTorch models with dynamic convolutions to ONNX (TensorRT-plugin or reference flavour)."""

from ..plugins import load_ops

load_ops()
from .api import export_model  # noqa: E402
from .options import ExportOptions

__all__ = ["ExportOptions", "export_model"]
