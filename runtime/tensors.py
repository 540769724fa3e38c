"""Tensor specs, dtype names and feed validation shared by every backend (numpy only, no torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import DynconvError

Dim = int | None
"""One dimension of a tensor spec: a fixed size, or ``None`` when it is dynamic."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one model input or output; ``None`` marks a dynamic dim."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]

    @property
    def batch_dynamic(self) -> bool:
        """True when dim 0 exists and is dynamic (requests may be concatenated along it)."""
        return len(self.shape) > 0 and self.shape[0] is None

    def to_json(self) -> dict:
        """``{"name", "dtype", "shape"}`` with ``-1`` for dynamic dims (Triton/TensorRT style)."""
        return {
            "name": self.name,
            "dtype": dtype_name(self.dtype),
            "shape": [-1 if d is None else int(d) for d in self.shape],
        }

    @staticmethod
    def from_json(obj: Mapping) -> "TensorSpec":
        """Inverse of :meth:`to_json`."""
        shape = tuple(None if int(d) < 0 else int(d) for d in obj["shape"])
        return TensorSpec(str(obj["name"]), parse_dtype(str(obj["dtype"])), shape)


_DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "fp16": "float16",
    "half": "float16",
    "int": "int32",
}


def parse_dtype(name: str) -> np.dtype:
    """A numpy dtype from a name such as ``float32``, ``fp16`` or ``int64``."""
    key = _DTYPE_ALIASES.get(name.lower(), name.lower())
    if key == "bfloat16":
        try:
            import ml_dtypes  # noqa: PLC0415  (optional, only for bf16 I/O)
        except ImportError as exc:
            raise DynconvError("bfloat16 tensors need the ml_dtypes package: pip install ml_dtypes") from exc
        return np.dtype(ml_dtypes.bfloat16)
    try:
        return np.dtype(key)
    except TypeError as exc:
        raise DynconvError(f"unknown dtype {name!r}; use e.g. float32, float16, int32, int64") from exc


def dtype_name(dtype: np.dtype) -> str:
    """The canonical name of a numpy dtype (``float32``, ``float16``, ``bfloat16``...)."""
    return np.dtype(dtype).name


def format_shape(shape: Sequence[Dim]) -> str:
    """``[N, 3, H, W]``-style text: dynamic dims print as ``?``."""
    return "[" + ", ".join("?" if d is None or (isinstance(d, int) and d < 0) else str(d) for d in shape) + "]"


def validate_feeds(
    specs: Sequence[TensorSpec], feeds: Mapping[str, object], *, check_dtype: bool = True
) -> None:
    """Raise DynconvError unless ``feeds`` holds exactly the inputs of ``specs`` with matching
    ranks, static dims and (when ``check_dtype``) dtypes. Arrays only need ``shape``/``dtype``."""
    expected = {s.name for s in specs}
    missing = [s.name for s in specs if s.name not in feeds]
    unknown = sorted(set(feeds) - expected)
    if unknown:
        raise DynconvError(f"unknown input name(s) {unknown}; the model's inputs are {sorted(expected)}")
    if missing:
        raise DynconvError(f"missing input(s) {missing}; the model's inputs are {sorted(expected)}")
    for spec in specs:
        arr = feeds[spec.name]
        shape = tuple(int(d) for d in arr.shape)  # type: ignore[attr-defined]
        if len(shape) != len(spec.shape):
            raise DynconvError(
                f"input {spec.name!r} has shape {list(shape)} (rank {len(shape)}); "
                f"expected rank {len(spec.shape)} {format_shape(spec.shape)}"
            )
        for axis, (got, want) in enumerate(zip(shape, spec.shape)):
            if want is not None and got != want:
                raise DynconvError(
                    f"input {spec.name!r} has shape {list(shape)}; dim {axis} must be {want} "
                    f"(expected {format_shape(spec.shape)})"
                )
        if check_dtype:
            got_dtype = np.dtype(arr.dtype)  # type: ignore[attr-defined]
            if got_dtype != spec.dtype:
                raise DynconvError(
                    f"input {spec.name!r} has dtype {dtype_name(got_dtype)}; expected {dtype_name(spec.dtype)}"
                )


def parse_dims(text: str) -> tuple[int, ...]:
    """``1x3x224x224`` (or ``1,3,224,224`` inside brackets) -> ``(1, 3, 224, 224)``."""
    body = text.strip().strip("[]()")
    sep = "x" if "x" in body else ","
    try:
        dims = tuple(int(part) for part in body.split(sep) if part.strip() != "")
    except ValueError as exc:
        raise DynconvError(f"bad shape {text!r}: write dims as 1x3x224x224") from exc
    if not dims or any(d <= 0 for d in dims):
        raise DynconvError(f"bad shape {text!r}: every dim must be >= 1 (a zero-sized tensor checks nothing)")
    return dims


def parse_shape_arg(arg: str) -> tuple[str, list[tuple[int, ...]]]:
    """One ``--shapes`` value: ``name:1x3x32x32`` or ``name:min,opt,max`` (each ``AxBx..``).
    Returns the name and the 1 or 3 shapes. The name may itself contain ``:``; the last one splits."""
    name, sep, rest = arg.rpartition(":")
    if not sep or not name or not rest:
        raise DynconvError(f"bad --shapes value {arg!r}: expected name:1x3x32x32 or name:MIN,OPT,MAX")
    parts = [p for p in rest.split(",")]
    if len(parts) not in (1, 3) or any(not p.strip() for p in parts):
        raise DynconvError(f"bad --shapes value {arg!r}: give one shape or three (min,opt,max) separated by ','")
    shapes = [parse_dims(p) for p in parts]
    if len({len(s) for s in shapes}) != 1:
        raise DynconvError(f"bad --shapes value {arg!r}: min, opt and max must have the same rank")
    if len(shapes) == 3:
        lo, opt, hi = shapes
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise DynconvError(f"bad --shapes value {arg!r}: need min <= opt <= max in every dim")
    return name, shapes


def parse_shape_args(args: Sequence[str] | None) -> dict[str, list[tuple[int, ...]]]:
    """All ``--shapes`` values keyed by input name (a name given twice is an error)."""
    out: dict[str, list[tuple[int, ...]]] = {}
    for arg in args or ():
        name, shapes = parse_shape_arg(arg)
        if name in out:
            raise DynconvError(f"--shapes gives input {name!r} twice")
        out[name] = shapes
    return out


def concrete_shape(spec: TensorSpec, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """A concrete shape for ``spec``: ``given`` (checked against the static dims) or the static
    shape itself; DynconvError when dims are dynamic and nothing was given."""
    if given is not None:
        if len(given) != len(spec.shape) or any(w is not None and g != w for g, w in zip(given, spec.shape)):
            raise DynconvError(
                f"shape {list(given)} given for input {spec.name!r} does not fit {format_shape(spec.shape)}"
            )
        return tuple(given)
    if any(d is None for d in spec.shape):
        example = "x".join("1" if i == 0 and d is None else ("32" if d is None else str(d)) for i, d in enumerate(spec.shape))
        raise DynconvError(
            f"input {spec.name!r} has dynamic dims {format_shape(spec.shape)}; "
            f"give a concrete shape, e.g. --shapes {spec.name}:{example}"
        )
    return tuple(int(d) for d in spec.shape)  # type: ignore[arg-type]


def random_inputs(
    specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[int, ...]], seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded random feeds: standard normal for floats, small non-negative ints for integers."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = shapes[spec.name]
        if np.issubdtype(spec.dtype, np.integer):
            feeds[spec.name] = rng.integers(0, 4, size=shape).astype(spec.dtype)
        elif spec.dtype == np.bool_:
            feeds[spec.name] = rng.random(shape) < 0.5
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def resolve_shapes(
    specs: Sequence[TensorSpec],
    shapes: Mapping[str, Sequence[tuple[int, ...]]],
    fallback: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, tuple[int, ...]]:
    """A concrete shape per input: its ``--shapes`` value (the opt entry when three are given), else
    ``fallback`` (e.g. the engine profile's opt shape), else the static shape."""
    unknown = sorted(set(shapes) - {s.name for s in specs})
    if unknown:
        raise DynconvError(f"--shapes names unknown input(s) {unknown}; inputs are {[s.name for s in specs]}")
    concrete = {}
    for spec in specs:
        given = shapes.get(spec.name)
        chosen = given[len(given) // 2] if given else (fallback or {}).get(spec.name)
        concrete[spec.name] = concrete_shape(spec, tuple(chosen) if chosen is not None else None)
    return concrete
