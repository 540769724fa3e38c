"""DDF (decoupled dynamic filter): spec, functional op and modules."""

from .functional import ddf, ddf_reference
from .module import DDFPack, FilterNorm
from .spec import DDF

__all__ = ["DDF", "DDFPack", "FilterNorm", "ddf", "ddf_reference"]
