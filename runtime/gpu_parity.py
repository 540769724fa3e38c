"""Stage-2 parity of one GPU case (no torch, no onnxruntime): a TensorRT engine of the case's trt-flavour
ONNX against the onnxruntime and PyTorch eager outputs stage 1 (``dynconv.export.gpu_cases``) stored.

Models with DRConv use the tie-aware rule (:mod:`dynconv.runtime.drconv_parity`): values a near-tie
region flip can move are judged against stage 1's flipped reference, and the flipped share is bounded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .compare import Metrics, TieAwareMetrics, compare, compare_tie_aware
from .drconv_parity import MAX_FLIPPED_FRACTION

PRECISIONS = ("fp32", "fp16")
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}  # max abs error / max |reference|
MIN_COSINE_FP16 = 0.9999
REFERENCE_TOLERANCE = 1e-4  # onnxruntime vs PyTorch eager, both FP32 on the CPU machine

Runner = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
# (onnx path, plan path, fp16, profile shapes by input name) -> an engine's infer function
EngineFactory = Callable[[Path, Path, bool, dict], Runner]


@dataclass
class ParityRow:
    case: str
    kind: str  # op | network | compat
    op: str | None
    precision: str
    run: int
    input_shapes: list[list[int]]
    against: str  # onnxruntime | pytorch | onnxruntime-vs-pytorch
    max_abs: float
    rel: float
    cosine: float
    tolerance: float
    passed: bool
    flipped_fraction: float | None = None
    tie_fraction: float | None = None
    note: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def load_npz(path: Path, names: list[str]) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[name] for name in names]


def profile_shapes(root: Path, case: dict) -> dict[str, tuple[tuple[int, ...], ...]]:
    profile = json.loads((root / case["files"]["profile"]).read_text())
    return {name: tuple(tuple(p[k]) for k in ("min", "opt", "max")) for name, p in profile.items()}


def _judge(got: np.ndarray, expected: np.ndarray, flipped: np.ndarray | None, precision: str) -> tuple[Metrics, bool]:
    tol = TOLERANCE[precision]
    if flipped is None:
        m = compare(got, expected)
    else:
        m = compare_tie_aware(got, expected, flipped, tol, MAX_FLIPPED_FRACTION[precision])
    ok = m.passes(tol) and (precision != "fp16" or m.cosine >= MIN_COSINE_FP16)
    return m, ok


def check_case(root: Path, case: dict, precision: str, make_engine: EngineFactory, workdir: Path) -> list[ParityRow]:
    """Build ``case``'s engine at ``precision`` and compare it at every stored run shape."""
    files = case["files"]
    fp16 = precision == "fp16"
    names, outputs = case["input_names"], case["output_names"]
    plan = workdir / f"{case['id']}-{precision}.plan"
    infer = make_engine(root / files[f"trt_{precision}"], plan, fp16, profile_shapes(root, case))
    flips = files.get("flips", {}).get(precision)
    ties = case.get("drconv", {}).get("tie_fraction", {}).get(precision)
    rows = []
    for k, (inputs_file, eager_file, ref_file) in enumerate(zip(files["inputs"], files["eager"], files["ref_outputs"])):
        arrays = load_npz(root / inputs_file, names)
        eager = load_npz(root / eager_file, outputs)[0]
        ref = load_npz(root / ref_file, outputs)[0]
        flipped = load_npz(root / flips[k], outputs)[0] if flips else None
        feeds = {name: a.astype(np.float16) if fp16 else a for name, a in zip(names, arrays)}
        result = infer(feeds)
        got = (result[outputs[0]] if outputs[0] in result else next(iter(result.values()))).astype(np.float32)
        base = dict(case=case["id"], kind=case["kind"], op=case.get("op"), precision=precision, run=k,
                    input_shapes=[list(a.shape) for a in arrays], tie_fraction=ties[k] if ties else None)
        m = compare(ref, eager)
        rows.append(ParityRow(**base, against="onnxruntime-vs-pytorch", max_abs=m.max_abs, rel=m.rel,
                              cosine=m.cosine, tolerance=REFERENCE_TOLERANCE, passed=m.passes(REFERENCE_TOLERANCE)))
        for against, expected, twin in (("onnxruntime", ref, flipped),
                                        ("pytorch", eager, None if flipped is None else eager + (flipped - ref))):
            m, ok = _judge(got, expected, twin, precision)
            flipped_share = m.flipped_fraction if isinstance(m, TieAwareMetrics) else None
            note = "" if ok else _failure_note(m, precision)
            rows.append(ParityRow(**base, against=against, max_abs=m.max_abs, rel=m.rel, cosine=m.cosine,
                                  tolerance=TOLERANCE[precision], passed=ok, flipped_fraction=flipped_share,
                                  note=note))
    return rows


def _failure_note(m: Metrics, precision: str) -> str:
    if not m.shape_ok:
        return "shape mismatch"
    parts = []
    if m.rel > TOLERANCE[precision]:
        parts.append(f"rel {m.rel:.3e} > {TOLERANCE[precision]:g}")
    if precision == "fp16" and m.cosine < MIN_COSINE_FP16:
        parts.append(f"cosine {m.cosine:.6f} < {MIN_COSINE_FP16}")
    if isinstance(m, TieAwareMetrics):
        if m.flipped_fraction > m.max_flipped_fraction:
            parts.append(f"DRConv flips {m.flipped_fraction:.3%} > {m.max_flipped_fraction:.1%}")
        if m.beyond_allowance:
            parts.append(f"{m.beyond_allowance} values beyond their flip's allowance")
    return "; ".join(parts) or "not finite"


def trt_engine_factory(plugins: str = "auto") -> EngineFactory:
    """Builds the plan with :func:`dynconv.runtime.builder.build` (FP32 without TF32) and returns the
    infer function of an open :class:`~dynconv.runtime.engine.Engine` (closed at interpreter exit)."""
    import atexit  # noqa: PLC0415

    from .builder import BuildOptions, build  # noqa: PLC0415
    from .engine import Engine  # noqa: PLC0415

    def make(onnx_path: Path, plan: Path, fp16: bool, shapes: dict) -> Runner:
        build(BuildOptions(onnx_path, plan, plugins=plugins, fp16=fp16, shapes=shapes))
        engine = Engine(plan, plugins=plugins)
        atexit.register(engine.close)
        return engine.infer

    return make


def fake_engine_factory(root: Path, case: dict, noise: float = 0.1) -> EngineFactory:
    """For the CPU dry run: an "engine" that answers each stored input with its PyTorch eager output,
    rounded to FP16 for FP16 and perturbed by ``noise`` x the tolerance, and writes a placeholder plan."""
    names, outputs = case["input_names"], case["output_names"]
    answers = {}
    for inputs_file, eager_file in zip(case["files"]["inputs"], case["files"]["eager"]):
        shapes = tuple(a.shape for a in load_npz(root / inputs_file, names))
        answers[shapes] = load_npz(root / eager_file, outputs)[0]

    def make(onnx_path: Path, plan: Path, fp16: bool, shapes: dict) -> Runner:
        if not onnx_path.is_file():
            raise FileNotFoundError(onnx_path)
        plan.write_bytes(b"fake plan of " + onnx_path.name.encode())
        tol = TOLERANCE["fp16" if fp16 else "fp32"]

        def infer(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            want = answers[tuple(np.shape(feeds[n]) for n in names)]
            rng = np.random.default_rng(0)
            out = want + noise * tol * float(np.abs(want).max()) * rng.uniform(-1, 1, want.shape)
            return {outputs[0]: out.astype(np.float16 if fp16 else np.float32)}

        return infer

    return make
