"""DRConv-aware parity: tell region flips at near-tie guide pixels apart from kernel error.

DRConv picks each output pixel's filter by ``argmax`` over the guide's regions. Where the top two
guide logits are closer than the candidate's guide error (FP16 inputs, an FP16/TF32 guide
convolution), the candidate may legitimately pick the runner-up: a jump no tolerance covers. The
check therefore runs the reference (onnxruntime) twice on a copy of the reference-flavour ONNX:

1. with every DRConv guide (the input of the region ``ArgMax``) exposed as an extra output; pixels
   whose top-2 margin is within :func:`guide_error_bound` are near ties;
2. with a delta added to each guide that hands every near-tie pixel to its runner-up region.

:func:`~dynconv.runtime.compare.compare_tie_aware` then compares the values run 2 leaves unchanged
with the usual tolerance, and reports the share of values that took the flipped result.
Torch-free; onnx and onnxruntime are imported when a model is inspected.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .compare import TieAwareMetrics, compare_tie_aware

# Guide error bound as a share of max|guide|: FP32 with TF32 off (~1e-6 observed, 10x margin);
# FP16: inputs rounded to 11 bits (2^-11 ~ 4.9e-4 relative) or an FP16 guide conv downstream of
# other FP16 layers: 2e-3 x max|guide| covers both with room.
GUIDE_ERROR_BOUND = {"fp32": 1e-5, "fp16": 2e-3}
# Share of output values allowed to take the runner-up region's result.
MAX_FLIPPED_FRACTION = {"fp32": 1e-3, "fp16": 1e-2}
DELTA_PREFIX = "dynconv_guide_delta_"
DRCONV_NODE_TAG = "DynconvDRConv"

ModelRunner = Callable[[object, Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def top2_margin(guide: np.ndarray, axis: int = 1) -> np.ndarray:
    """Top-1 minus top-2 logit along ``axis`` (kept as size 1); +inf with a single region."""
    g = np.asarray(guide, dtype=np.float64)
    if g.shape[axis] < 2:
        return np.full(g.shape[:axis] + (1,) + g.shape[axis + 1:], np.inf)
    part = -np.partition(-g, 1, axis=axis)
    return np.take(part, [0], axis=axis) - np.take(part, [1], axis=axis)


def guide_error_bound(guide: np.ndarray, precision: str) -> float:
    """Largest guide error expected at ``precision`` ("fp32" or "fp16"), in guide units."""
    return GUIDE_ERROR_BOUND[precision] * float(np.max(np.abs(guide))) if np.size(guide) else 0.0


def near_ties(guide: np.ndarray, bound: float, axis: int = 1) -> np.ndarray:
    """Boolean mask (size 1 along ``axis``) of pixels whose top-2 margin is within ``bound``."""
    return top2_margin(guide, axis) <= bound


def runner_up_delta(guide: np.ndarray, bound: float, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(delta, ties): ``guide + delta`` gives every near-tie pixel to its runner-up region (by more
    than ``bound``, so the flipped run is itself no tie) and leaves the other pixels alone."""
    g = np.asarray(guide)
    ties = near_ties(g, bound, axis)
    delta = np.zeros(g.shape, dtype=g.dtype)
    if g.shape[axis] < 2 or not ties.any():
        return delta, ties
    order = np.argsort(-g.astype(np.float64), axis=axis, kind="stable")
    second = np.take(order, [1], axis=axis)
    margin = top2_margin(g, axis)
    step = np.where(ties, margin + 2 * max(bound, 1e-30) + 1e-6 * float(np.max(np.abs(g))), 0.0)
    np.put_along_axis(delta, second, step.astype(g.dtype), axis=axis)
    return delta, ties


@dataclass
class FlipReference:
    """The reference outputs, the same run with near-tie regions flipped, and what was flipped."""

    precision: str
    outputs: dict[str, np.ndarray]
    flipped: dict[str, np.ndarray]
    tie_fraction: float  # share of guide pixels (all DRConv layers) within the error bound
    guides: list[str] = field(default_factory=list)

    @property
    def max_flipped_fraction(self) -> float:
        return MAX_FLIPPED_FRACTION[self.precision]

    def compare(self, name: str, actual: np.ndarray, tol: float) -> TieAwareMetrics:
        return compare_tie_aware(actual, self.outputs[name], self.flipped[name], tol, self.max_flipped_fraction)

    def summary(self, metrics: Mapping[str, TieAwareMetrics]) -> str:
        """The one line dynconv-check and the GPU check print."""
        worst = max((m.flipped_fraction for m in metrics.values()), default=0.0)
        return (f"DRConv region flips: {worst:.3%} of output values (bound {self.max_flipped_fraction:.1%}); "
                f"near-tie guide pixels {self.tie_fraction:.3%} (margin <= {GUIDE_ERROR_BOUND[self.precision]:g}"
                f" x max|guide|, {self.precision}) in {len(self.guides)} DRConv layer(s)\n")

    def to_json(self, metrics: Mapping[str, TieAwareMetrics]) -> dict:
        return {"precision": self.precision, "guides": list(self.guides), "tie_fraction": self.tie_fraction,
                "max_flipped_fraction": self.max_flipped_fraction,
                "outputs": {k: {"flipped_fraction": m.flipped_fraction, "unstable_fraction": m.unstable_fraction,
                                "beyond_allowance": m.beyond_allowance} for k, m in metrics.items()}}


# --- graph surgery on a copy of the reference ONNX ---------------------------------------------------

def region_selects(model) -> list:
    """The DRConv region ``ArgMax`` nodes (axis 1) of a reference-flavour graph, in graph order.

    The reference exporter names a decomposed op's nodes ``/DynconvDRConv_<k>/...``; graphs without
    such names fall back to every ``ArgMax`` over axis 1 (no other dynconv reference uses ArgMax)."""
    import onnx  # noqa: PLC0415

    def axis(node) -> int:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        return int(attrs.get("axis", 0))

    candidates = [n for n in model.graph.node if n.op_type == "ArgMax" and axis(n) == 1]
    tagged = [n for n in candidates if DRCONV_NODE_TAG in n.name]
    return tagged or candidates


def with_guides_exposed(model) -> tuple[object, list[str]]:
    """A copy of ``model`` whose outputs also include every DRConv guide; (copy, guide names)."""
    import onnx  # noqa: PLC0415

    out = copy.deepcopy(model)
    guides = [n.input[0] for n in region_selects(out)]
    present = {o.name for o in out.graph.output} | {i.name for i in out.graph.input}
    for name in dict.fromkeys(guides):
        if name not in present:
            out.graph.output.append(onnx.ValueInfoProto(name=name))
    return out, guides


def with_guide_deltas(model, dtypes: Mapping[str, int]) -> tuple[object, list[str]]:
    """A copy of ``model`` where each region ArgMax reads ``guide + <delta input>``; (copy, delta names)."""
    import onnx  # noqa: PLC0415

    out = copy.deepcopy(model)
    deltas = []
    for k, node in enumerate(region_selects(out)):
        guide, delta, shifted = node.input[0], f"{DELTA_PREFIX}{k}", f"{DELTA_PREFIX}{k}_sum"
        out.graph.input.append(onnx.helper.make_tensor_value_info(
            delta, dtypes[guide], [f"{delta}_d{i}" for i in range(4)]))
        index = list(out.graph.node).index(node)
        out.graph.node.insert(index, onnx.helper.make_node("Add", [guide, delta], [shifted],
                                                           name=f"/{DELTA_PREFIX}{k}/Add"))
        node.input[0] = shifted
        deltas.append(delta)
    return out, deltas


def ort_runner(model, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an in-memory ONNX model on onnxruntime's CPU provider; outputs by name."""
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {k: np.ascontiguousarray(v) for k, v in feeds.items()})))


def flip_reference(model, feeds: Mapping[str, np.ndarray], precision: str,
                   run: ModelRunner = ort_runner) -> FlipReference | None:
    """Reference outputs and their near-tie-flipped twin for a model with DRConv; None without."""
    import onnx  # noqa: PLC0415

    if precision not in GUIDE_ERROR_BOUND:
        raise ValueError(f"precision must be one of {sorted(GUIDE_ERROR_BOUND)}, got {precision!r}")
    if not region_selects(model):
        return None
    exposed, guides = with_guides_exposed(model)
    first = run(exposed, feeds)
    values = {name: np.asarray(first[name] if name in first else feeds[name]) for name in guides}
    outputs = {o.name: first[o.name] for o in model.graph.output}
    dtypes = {name: onnx.helper.np_dtype_to_tensor_dtype(v.dtype) for name, v in values.items()}
    shifted, delta_names = with_guide_deltas(model, dtypes)
    extra, ties, pixels = {}, 0, 0
    for name, delta_name in zip(guides, delta_names):
        guide = values[name]
        delta, mask = runner_up_delta(guide, guide_error_bound(guide, precision))
        extra[delta_name] = delta
        ties, pixels = ties + int(mask.sum()), pixels + mask.size
    flipped = run(shifted, {**feeds, **extra}) if ties else outputs
    return FlipReference(precision, outputs, {k: flipped[k] for k in outputs}, ties / max(pixels, 1),
                         list(guides))

