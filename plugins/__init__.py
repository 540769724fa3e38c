"""dynconv.plugins: one spec per dynamic-convolution core op, its torch op and its nn.Module."""

import importlib
import logging

from .errors import DynconvError
from .registry import all_specs, get_spec
from .spec import AttrSpec, OpSpec, TensorSpec

_OP_PACKAGES = ("deform_conv", "dcnv3", "ddf", "involution", "drconv", "dynamic_conv", "skconv")

for _name in _OP_PACKAGES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["AttrSpec", "DynconvError", "OpSpec", "TensorSpec", "all_specs", "get_spec"]
logging.getLogger(__name__).addHandler(logging.NullHandler())
