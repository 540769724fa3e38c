"""dynconv.plugins: one spec per dynamic-convolution core op, its torch op and its nn.Module.

Importing this package is cheap and torch-free (the deploy side only needs the errors and the
plugin-library helpers); the op packages, which need torch, load on first use of an op name or
through :func:`load_ops`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from .errors import DynconvError

OP_PACKAGES = ("deform_conv", "dcnv3", "ddf", "involution", "drconv", "dynamic_conv", "skconv")

logging.getLogger(__name__).addHandler(logging.NullHandler())


def load_ops() -> None:
    """Import every op package, which registers its spec and its torch op."""
    for name in OP_PACKAGES:
        importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str) -> Any:
    if name in ("all_specs", "get_spec"):
        from . import registry

        return getattr(registry, name)
    load_ops()
    for package in OP_PACKAGES:
        module = importlib.import_module(f"{__name__}.{package}")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DynconvError", "load_ops"]
