"""How dynconv calls polygraphy: its logger quiet (or at INFO for comparison reports), no torch, and
its exceptions as one-line :class:`DynconvError` s.

Polygraphy's array helpers ask ``torch.is_importable()`` to recognise torch tensors, which imports
torch whenever it is installed (seconds, and the deploy side must never load it). A torch tensor
cannot exist before torch is imported, so while torch is not in ``sys.modules`` :func:`session`
hands those helpers a stand-in that reports torch as absent: the answers stay exact."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator

from .errors import DynconvError

# polygraphy modules that hold a lazy ``torch`` module and ask it is_installed()/is_importable()
_TORCH_HOLDERS = ("polygraphy.util.array", "polygraphy.json.serde", "polygraphy.datatype.torch",
                  "polygraphy.comparator.compare", "polygraphy.comparator.data_loader")


class _TorchAbsent:
    """Stand-in for polygraphy's lazy torch module while torch is not imported."""

    @staticmethod
    def is_installed() -> bool:
        return False

    @staticmethod
    def is_importable() -> bool:
        return False

    def __getattr__(self, name: str):
        raise ImportError("torch is not loaded in this dynconv process")


@contextlib.contextmanager
def _torch_hidden() -> Iterator[None]:
    if "torch" in sys.modules:
        yield
        return
    saved = []
    for module_name in _TORCH_HOLDERS:
        module = importlib.import_module(module_name)
        if hasattr(module, "torch"):
            saved.append((module, module.torch))
            module.torch = _TorchAbsent()
    try:
        yield
    finally:
        for module, lazy in saved:
            module.torch = lazy


@contextlib.contextmanager
def session(*, report: bool = False) -> Iterator[None]:
    """Run polygraphy code: messages at INFO when ``report`` (polygraphy's own comparison report on
    stdout), else silent; PolygraphyException becomes DynconvError with its first line."""
    from polygraphy.exception import PolygraphyException  # noqa: PLC0415
    from polygraphy.logger import G_LOGGER  # noqa: PLC0415

    old_colors = G_LOGGER.colors
    G_LOGGER.colors = False  # no "install colored" notice, plain text
    # above CRITICAL: polygraphy's critical() still raises, but prints nothing (we print one line)
    severity = G_LOGGER.INFO if report else G_LOGGER.CRITICAL + 10
    try:
        with G_LOGGER.verbosity(severity), _torch_hidden():
            yield
    except PolygraphyException as exc:
        raise DynconvError(f"polygraphy: {first_line(str(exc))}") from exc
    finally:
        G_LOGGER.colors = old_colors


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "failed"
