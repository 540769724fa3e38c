"""Shared CLI plumbing of every dynconv command: exit codes, one-line errors on stderr, output-path
checks and atomic file writes. Torch-free (dynconv-export imports it before torch).

Exit codes (all dynconv-* commands):

* 0 (:data:`EXIT_OK`): done;
* 1 (:data:`EXIT_FAIL`): the check ran and found a mismatch (``dynconv-check``);
* 2 (:data:`EXIT_USAGE`): the command line is malformed (unknown flag, missing argument);
* 3 (:data:`EXIT_INPUT`): an input, value, output path, dependency or the environment is wrong
  (one line says which and how to fix it); nothing was written;
* 4 (:data:`EXIT_INTERNAL`): a bug in dynconv or a library (``--debug`` shows the traceback);
  nothing was written;
* 130: interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .errors import DynconvError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130
EXIT_ERROR = EXIT_INPUT  # older name of EXIT_INPUT

# Optional dependency (top-level import name) -> the pyproject extra that installs it.
EXTRAS = {"fastapi": "serve", "uvicorn": "serve", "prometheus_client": "serve", "grpc": "serve",
          "matplotlib": "bench", "tensorrt": "tensorrt", "cuda": "tensorrt"}


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one ``prog: error: ...`` line (no usage dump), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``-v/--verbose`` and ``--debug`` flags."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    return parser


def missing_dependency(exc: ImportError) -> str:
    """``missing dependency X: pip install ...`` naming the extra that provides X."""
    name = (exc.name or str(exc).rsplit(" ", 1)[-1].strip("'\"")).split(".")[0]
    extra = EXTRAS.get(name)
    install = f'pip install "dynconv[{extra}]"' if extra else f"pip install {name.replace('_', '-')}"
    return f"missing dependency {name}: {install}"


def internal_error(exc: BaseException) -> str:
    first = " ".join((str(exc).strip().splitlines() or [""])[0].split())
    return f"internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)"


def error_exit_code(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that ended a command."""
    if isinstance(exc, DynconvError):
        return EXIT_INPUT, str(exc)
    if isinstance(exc, ImportError):
        return EXIT_INPUT, missing_dependency(exc)
    if isinstance(exc, OSError):
        return EXIT_INPUT, f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    return EXIT_INTERNAL, internal_error(exc)


def print_error(prog: str, message: str) -> None:
    first = " ".join(message.strip().split("\n")[0].split()) or "failed"
    sys.stderr.write(f"{prog}: error: {first}\n")


def run_main(prog: str, body: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
             argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``body``; an exception becomes one ``prog: error: ...`` line on stderr
    and the exit code of the module docstring, never a traceback (unless ``--debug``)."""
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format=f"{prog}: %(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("dynconv").setLevel(level)
    try:
        return body(args)
    except (Exception, KeyboardInterrupt) as exc:
        code, message = error_exit_code(exc)
        if code == EXIT_INTERNAL and getattr(args, "debug", False):
            raise
        print_error(prog, message)
        return code


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``Path(path)``, or DynconvError when it is not an existing file."""
    p = Path(path)
    if not p.is_file():
        raise DynconvError(f"{what} {str(p)!r} does not exist or is not a file")
    return p


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file (through links, hard links or relative paths)."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def check_output_path(path: str | os.PathLike, what: str = "output", inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """DynconvError unless ``path`` can be written: its folder exists (it is never created), it is
    not a folder, it is not one of ``inputs``, and the folder is writable."""
    target = Path(path)
    if str(path) == "":
        raise DynconvError(f"{what} path is empty")
    for source in inputs:
        if source is not None and same_file(target, source):
            raise DynconvError(f"{what} {str(target)!r} is the input file {str(source)!r}: choose another -o path")
    if target.is_dir():
        raise DynconvError(f"{what} {str(target)!r} is a directory: give a file path")
    parent = target.parent
    if not parent.exists():
        raise DynconvError(f"{what} directory {str(parent)!r} does not exist (dynconv does not create it)")
    if not parent.is_dir():
        raise DynconvError(f"{what} path {str(target)!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DynconvError(f"cannot write {what} {str(target)!r}: directory {str(parent)!r} is not writable")
    return target


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename, so a
    failure never leaves a half-written file. The folder must exist; the file gets the usual
    ``0666 & ~umask`` mode (not mkstemp's 0600)."""
    target = check_output_path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise DynconvError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DynconvError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
