"""dynconv.export: PyTorch models with dynamic convolutions to ONNX (TensorRT-plugin or reference flavour).

``export_model`` and ``ExportOptions`` load on first use, so ``dynconv-export --help`` (and its
"install torch" error) work without torch.
"""

from typing import Any

__all__ = ["ExportOptions", "export_model"]


def __getattr__(name: str) -> Any:
    if name == "export_model":
        from .api import export_model  # imports torch and registers the core ops

        return export_model
    if name == "ExportOptions":
        from .options import ExportOptions

        return ExportOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
