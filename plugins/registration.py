"""Turn an OpSpec plus its PyTorch reference into a ``torch.library`` custom op.

The op gets: a schema generated from the spec, one eager kernel for CPU and CUDA (the reference
decomposition, with concrete-shape validation), a fake kernel whose output sizes come from the
spec's shape rule (kept symbolic, so dynamic dims survive ``torch.export``), and autograd through
the reference. Exporters treat the op as one opaque node.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch

from .registry import register_spec
from .spec import DOMAIN, OpSpec

Reference = Callable[..., torch.Tensor]

_LIBRARY = torch.library.Library(DOMAIN, "FRAGMENT")
_REFERENCES: dict[str, Reference] = {}
CallObserver = Callable[["OpSpec", list, dict], None]
_OBSERVERS: list[tuple[CallObserver, bool]] = []  # (observer, also fake-tensor calls)
_SHAPES_ONLY = [False]


def split_args(spec: OpSpec, args: Sequence[Any]) -> tuple[list[torch.Tensor | None], dict[str, Any]]:
    """Split positional op arguments into (tensors in spec order, attribute dict)."""
    n = len(spec.inputs)
    tensors = list(args[:n])
    attrs = {a.name: v for a, v in zip(spec.attributes, args[n:])}
    return tensors, attrs


def shapes_of(tensors: Sequence[torch.Tensor | None]) -> list[tuple | None]:
    return [None if t is None else tuple(t.shape) for t in tensors]


def define_op(spec: OpSpec, reference: Reference) -> OpSpec:
    """Register ``spec`` and define ``torch.ops.dynconv.<torch_name>`` backed by ``reference``.

    ``reference(*tensors, **attrs)`` receives tensors in spec order (``None`` for an absent
    optional input) and normalised attributes, and must be built from exportable torch ops.
    """
    register_spec(spec)
    if spec.torch_name in _REFERENCES:
        return spec
    _REFERENCES[spec.torch_name] = reference
    _LIBRARY.define(spec.torch_name + spec.torch_schema())

    def kernel(*args: Any) -> torch.Tensor:
        tensors, attrs = split_args(spec, args)
        attrs = spec.normalize(attrs)
        shapes = shapes_of(tensors)
        spec.validate(shapes, attrs)
        for observer, _ in _OBSERVERS:
            observer(spec, tensors, attrs)
        if _SHAPES_ONLY[0]:
            return tensors[0].new_zeros(spec.infer_shapes(shapes, attrs)[0])
        return reference(*tensors, **attrs)

    def fake(*args: Any) -> torch.Tensor:
        tensors, attrs = split_args(spec, args)
        attrs = spec.normalize(attrs)
        for observer, fake_calls in _OBSERVERS:
            if fake_calls:
                observer(spec, tensors, attrs)
        shape = spec.infer_shapes(shapes_of(tensors), attrs)[0]
        return tensors[0].new_empty(shape)

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        tensors, attrs = split_args(spec, inputs)
        ctx.save_for_backward(*[t if t is not None else torch.empty(0) for t in tensors])
        ctx.present = [t is not None for t in tensors]
        ctx.attrs = spec.normalize(attrs)

    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        saved = ctx.saved_tensors
        with torch.enable_grad():
            leaves = [s.detach().requires_grad_(s.is_floating_point()) if p else None
                      for s, p in zip(saved, ctx.present)]
            out = reference(*leaves, **ctx.attrs)
            wrt = [t for t in leaves if t is not None and t.requires_grad]
            grads = iter(torch.autograd.grad(out, wrt, grad_out, allow_unused=True))
        tensor_grads = [next(grads) if t is not None and t.requires_grad else None for t in leaves]
        return (*tensor_grads, *([None] * len(spec.attributes)))

    _LIBRARY.impl(spec.torch_name, kernel, "CompositeExplicitAutograd")
    torch.library.register_fake(spec.qualname, fake, lib=_LIBRARY)
    torch.library.register_autograd(spec.qualname, backward, setup_context=setup_context, lib=_LIBRARY)
    return spec


@contextlib.contextmanager
def calls_observed(observer: CallObserver, fake_calls: bool = False) -> Iterator[None]:
    """Within the block, every eager call of a core op (functional API or ``torch.ops.dynconv``,
    TorchScript tracing included) reports ``observer(spec, tensors, normalised attrs)`` after its
    inputs passed validation; with ``fake_calls`` so do calls on fake tensors (symbolic shapes)."""
    entry = (observer, fake_calls)
    _OBSERVERS.append(entry)
    try:
        yield
    finally:
        _OBSERVERS.remove(entry)


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """Within the block, eager core-op calls return zeros of their output shape instead of running
    the reference. For exporters that only need shapes: the TorchScript tracer records each call
    as one opaque node, so its values never reach the graph (only Python code branching on them
    could tell, and the tracer bakes such a branch in anyway)."""
    saved = _SHAPES_ONLY[0]
    _SHAPES_ONLY[0] = True
    try:
        yield
    finally:
        _SHAPES_ONLY[0] = saved


def reference_of(spec: OpSpec) -> Reference:
    """The reference decomposition registered for ``spec``."""
    return _REFERENCES[spec.torch_name]


def call_op(spec: OpSpec, tensors: Sequence[torch.Tensor | None], attrs: dict[str, Any]) -> torch.Tensor:
    """Call the registered custom op with normalised attributes (the functional API's body)."""
    attrs = spec.normalize(attrs)
    op = getattr(torch.ops.dynconv, spec.torch_name)
    return op(*tensors, *[attrs[a.name] for a in spec.attributes])


def attribute_sizes(tensor: torch.Tensor, *dims: int) -> list[int]:
    """``tensor``'s sizes along ``dims`` as Python ints, for op attributes (kernel size, group
    counts: fixed by the weights' shapes). Under the TorchScript tracer the sizes are read with
    tracing paused: ``int()`` of a traced size records Size nodes that are then dropped and costs a
    TracerWarning each (~0.25 ms, a sizeable share of a network's export)."""
    if not torch.jit.is_tracing():
        return [int(tensor.shape[d]) for d in dims]
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        return [int(tensor.shape[d]) for d in dims]
    finally:
        torch._C._set_tracing_state(state)
