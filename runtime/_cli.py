"""Shared CLI plumbing: one-line errors on stderr, exit codes, atomic file writes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import DynconvError

EXIT_OK = 0
EXIT_FAIL = 1  # the check ran and found a mismatch
EXIT_ERROR = 2  # bad input / environment; nothing was written


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one ``prog: error: ...`` line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``-v/--verbose`` flag."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    return parser


def run_main(prog: str, body: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
             argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``body``; any DynconvError, OSError or missing optional dependency
    becomes one ``prog: error: ...`` line on stderr and exit code 2, never a traceback."""
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format=f"{prog}: %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("dynconv").setLevel(level)
    try:
        return body(args)
    except DynconvError as exc:
        return _fail(prog, str(exc))
    except ImportError as exc:
        return _fail(prog, f"missing dependency: {exc}")
    except OSError as exc:
        return _fail(prog, f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        return _fail(prog, "interrupted")


def _fail(prog: str, message: str) -> int:
    first = " ".join(message.strip().split("\n")[0].split()) or "failed"
    sys.stderr.write(f"{prog}: error: {first}\n")
    return EXIT_ERROR


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``Path(path)``, or DynconvError when it is not an existing file."""
    p = Path(path)
    if not p.is_file():
        raise DynconvError(f"{what} {str(p)!r} does not exist or is not a file")
    return p


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so a
    failure never leaves a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
