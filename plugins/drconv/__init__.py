"""DRConv (paper form): spec, functional region-select conv and module."""

from .functional import drconv, drconv_reference, drconv_straight_through
from .module import DRConv2d
from .spec import DRCONV

__all__ = ["DRCONV", "DRConv2d", "drconv", "drconv_reference", "drconv_straight_through"]
