"""Progress lines for long exports: one line when a stage starts and one with its time when it ends.

Lines go to the ``dynconv.export.progress`` logger at INFO, so they are silent unless logging shows
them: ``dynconv-export`` enables them on an interactive terminal (and with ``--verbose``); library
users call :func:`enable_progress` or configure logging themselves.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Iterator, TextIO

PROGRESS_LOGGER = "dynconv.export.progress"
log = logging.getLogger(PROGRESS_LOGGER)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Log ``name ...`` now and ``name: done in N s`` when the block ends without an error."""
    log.info("%s ...", name)
    start = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", name, time.perf_counter() - start)


def enable_progress(stream: TextIO | None = None) -> None:
    """Show progress lines on ``stream`` (stderr by default), once, whatever the root logger does."""
    if any(getattr(h, "_dynconv_progress", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("dynconv-export: %(message)s"))
    handler._dynconv_progress = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
