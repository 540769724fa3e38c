"""Lookup of core-op specs by name, torch name or alias; filled by each op package on import."""

from __future__ import annotations

from .errors import DynconvError
from .spec import OpSpec

_SPECS: dict[str, OpSpec] = {}


def register_spec(spec: OpSpec) -> OpSpec:
    """Add ``spec`` to the registry (idempotent for the same object)."""
    for key in (spec.name, spec.torch_name, *spec.aliases):
        existing = _SPECS.get(key)
        if existing is not None and existing is not spec:
            raise ValueError(f"op name {key!r} registered twice")
        _SPECS[key] = spec
    return spec


def _load_ops() -> None:
    from . import load_ops

    load_ops()


def all_specs() -> list[OpSpec]:
    """Every core-op spec, each once, in registration order (loads the op packages)."""
    _load_ops()
    seen: dict[str, OpSpec] = {}
    for spec in _SPECS.values():
        seen.setdefault(spec.name, spec)
    return list(seen.values())


def get_spec(name: str) -> OpSpec:
    """The spec registered under ``name`` (op name, torch name or alias)."""
    if name not in _SPECS:
        _load_ops()
    try:
        return _SPECS[name]
    except KeyError:
        raise DynconvError(f"unknown dynconv op {name!r}; known: {sorted(s.name for s in all_specs())}") from None
