"""Involution: spec, functional op and module."""

from .functional import involution, involution_reference
from .module import Involution
from .spec import INVOLUTION

__all__ = ["INVOLUTION", "Involution", "involution", "involution_reference"]
