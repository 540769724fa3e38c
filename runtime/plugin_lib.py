"""Locating and loading the dynconv TensorRT plugin library (``libdynconv_plugins.so``)."""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

from .errors import DynconvError

from .metadata import sha256_file

log = logging.getLogger("dynconv.runtime")

ENV_VAR = "DYNCONV_PLUGIN_LIB"
_LOADED: dict[str, ctypes.CDLL] = {}


def locate(spec: str | os.PathLike | None, *, required: bool = False) -> Path | None:
    """The plugin library to use.

    ``spec`` is an explicit path, ``"none"`` (no library), or ``None``/``"auto"``: ask
    ``dynconv.plugins.native.find_plugin_library`` (explicit > $DYNCONV_PLUGIN_LIB > default build
    dir). An explicit path that does not exist is always an error; ``required`` makes "not found"
    an error too."""
    if spec is not None and str(spec).lower() == "none":
        return None
    if spec is not None and str(spec).lower() != "auto":
        path = Path(spec)
        if not path.is_file():
            raise DynconvError(f"plugin library {str(path)!r} does not exist")
        return path
    found = _find_default()
    if found is None and required:
        raise DynconvError(
            "the dynconv plugin library was not found: build it with dynconv-build-plugins, "
            f"pass --plugins PATH or set {ENV_VAR}"
        )
    return found


def _find_default() -> Path | None:
    try:
        from dynconv.plugins.native import find_plugin_library  # noqa: PLC0415
    except ImportError:
        env = os.environ.get(ENV_VAR)
        if env:
            if not Path(env).is_file():
                raise DynconvError(f"{ENV_VAR}={env!r} does not exist") from None
            return Path(env)
        return None
    try:
        found = find_plugin_library(None)
    except DynconvError as exc:
        log.debug("no plugin library: %s", exc)
        return None
    return Path(found) if found else None


def load(path: Path) -> ctypes.CDLL:
    """``dlopen`` the library once (RTLD_GLOBAL) so its static registrars add the plugin creators."""
    key = str(path.resolve())
    if key not in _LOADED:
        try:
            _LOADED[key] = ctypes.CDLL(key, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise DynconvError(f"cannot load plugin library {key!r}: {exc}") from exc
        log.info("loaded plugin library %s", key)
    return _LOADED[key]


def digest(path: Path | None) -> str | None:
    """sha256 of the library, or None."""
    return sha256_file(path) if path is not None else None
