"""``DynconvError`` for the deploy side (``dynconv.plugins`` imports without torch)."""

from ..plugins.errors import DynconvError

__all__ = ["DynconvError"]
