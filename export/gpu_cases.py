"""Stage 1 of the GPU checks (needs torch, not TensorRT): write every GPU parity case to a directory.

    python -m dynconv.export.gpu_cases DIR [--bench] [--cases PATTERN ...] [--limit N]

TensorRT may live in another interpreter than torch (e.g. ``trtpy`` next to a torch ``python3``), so
the GPU tests and the plugin benchmark run in two stages. This stage writes, for every case of
:func:`~dynconv.export.op_models.parity_grid` and the ``mixed`` example network, into ``DIR/<id>/``:

- ``trt_fp32.onnx``, ``trt_fp16.onnx``: the trt flavour (NCHW ops: dynamic batch, height and width;
  NHWC ops: dynamic batch; the network: dynamic batch),
- ``ref.onnx``: the reference flavour (FP32), which onnxruntime runs,
- ``profile.json``: min/opt/max shape per input name,
- ``inputs_<k>.npz`` / ``eager_<k>.npz``: inputs at two run shapes inside the profile and the PyTorch
  eager outputs for them (FP32),

and ``DIR/manifest.json`` listing them. ``--bench`` adds ``DIR/bench/``: static trt-flavour ONNX of each
:func:`~dynconv.export.op_models.benchmark_cases` op and of the standard and depthwise 3x3 conv
baselines at the benchmark shapes, FP16 and FP32 (inputs described by shape, dtype, mean and std, so
they are generated on the GPU host), and, when ``torch.cuda`` is available, ``DIR/eager_timings.json``
with the PyTorch eager implementations timed in CUDA graphs.

Stage 2 (no torch): ``DYNCONV_GPU_CASES=DIR pytest -m gpu tests/test_gpu_plugins.py`` and
``python -m dynconv.runtime.bench_plugins DIR``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
import torch

from ..plugins.errors import DynconvError
from . import ExportOptions, export_model
from .examples import build_example
from .op_models import OpCase, benchmark_cases, parity_grid

PROG = "python -m dynconv.export.gpu_cases"
MANIFEST = "manifest.json"
EAGER_TIMINGS = "eager_timings.json"
FORMAT_VERSION = 1
CHANNELS = 32
PROFILE = {"min": (1, 7, 9), "opt": (2, 13, 17), "max": (3, 24, 24)}  # (N, H, W)
RUN_SIZES = [(2, 13, 17), (3, 21, 19)]
MIXED_BATCHES = {"min": 1, "opt": 2, "max": 4}
MIXED_RUN_BATCHES = (1, 3)
BENCH_SHAPES = [(1, 256, 100, 152), (8, 128, 28, 28), (32, 64, 56, 56)]
PRECISIONS = ("fp32", "fp16")

log = logging.getLogger("dynconv.export")


def case_id(index: int, label: str) -> str:
    """A file-system friendly id: ``03-dcnv2-k1x1-s1x1-p0x0-d1x1-g1-og2``."""
    compact = re.sub(r"\((\d+), (\d+)\)", r"\1x\2", label)
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9.]+", "-", compact).strip("-")


def dynamic_axes(layout: str) -> tuple[str, ...]:
    return ("batch",) if layout == "NHWC" else ("batch", "height", "width")


def case_sizes(case: OpCase) -> tuple[dict[str, tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(profile (N, H, W) by min/opt/max, run sizes): NHWC ops keep H and W at the opt size."""
    if case.layout == "NCHW":
        return dict(PROFILE), list(RUN_SIZES)
    hw = PROFILE["opt"][1:]
    return {k: (v[0], *hw) for k, v in PROFILE.items()}, [(n, *hw) for n, _, _ in RUN_SIZES]


def graph_inputs(case: OpCase, n: int, h: int, w: int) -> list[np.ndarray]:
    """The case's graph inputs (parameters excluded) at (n, CHANNELS, h, w), seeded by the size."""
    _, inputs = case.model(n, CHANNELS, h, w, seed=n * 1000 + h * 10 + w)
    return [t.numpy() for t in inputs]


def _names(proto: onnx.ModelProto) -> tuple[list[str], list[str]]:
    return [v.name for v in proto.graph.input], [v.name for v in proto.graph.output]


def _write_common(folder: Path, model: torch.nn.Module, example: tuple, dynamic: tuple[str, ...],
                  exporter: str, profile_arrays: dict[str, list[np.ndarray]], runs: list[list[np.ndarray]]) -> dict:
    """Export the three ONNX files, write profile, inputs and eager outputs; return the files entry."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict = {}
    names = outputs = None
    for precision in PRECISIONS:
        proto = export_model(model, example, ExportOptions(target="trt", exporter=exporter, dynamic=dynamic,
                                                           fp16=precision == "fp16"))
        names, outputs = _names(proto)
        onnx.save(proto, folder / f"trt_{precision}.onnx")
        files[f"trt_{precision}"] = f"{folder.name}/trt_{precision}.onnx"
    ref = export_model(model, example, ExportOptions(target="onnx", exporter=exporter, dynamic=dynamic))
    if _names(ref) != (names, outputs):
        raise DynconvError(f"{folder.name}: reference I/O names {_names(ref)} differ from trt {(names, outputs)}")
    onnx.save(ref, folder / "ref.onnx")
    files["ref"] = f"{folder.name}/ref.onnx"
    profile = {name: {k: list(arrays[i].shape) for i, k in enumerate(("min", "opt", "max"))}
               for name, arrays in zip(names, zip(*[profile_arrays[k] for k in ("min", "opt", "max")]))}
    (folder / "profile.json").write_text(json.dumps(profile, indent=1))
    files["profile"] = f"{folder.name}/profile.json"
    files["inputs"], files["eager"] = [], []
    for k, arrays in enumerate(runs):
        with torch.no_grad():
            got = model(*[torch.from_numpy(a) for a in arrays])
        got = got if isinstance(got, (tuple, list)) else (got,)
        np.savez(folder / f"inputs_{k}.npz", **dict(zip(names, arrays)))
        np.savez(folder / f"eager_{k}.npz", **{name: t.numpy() for name, t in zip(outputs, got)})
        files["inputs"].append(f"{folder.name}/inputs_{k}.npz")
        files["eager"].append(f"{folder.name}/eager_{k}.npz")
    return {"files": files, "input_names": names, "output_names": outputs}


def write_op_case(out: Path, cid: str, case: OpCase, exporter: str = "torchscript") -> dict:
    """One parity-grid case into ``out/cid``; returns its manifest entry."""
    sizes, runs = case_sizes(case)
    n, h, w = sizes["opt"]
    model, example = case.model(n, CHANNELS, h, w)
    entry = {"id": cid, "label": case.label, "kind": "op", "op": case.op, "layout": case.layout,
             "dynamic": list(dynamic_axes(case.layout)), "run_sizes": [list(s) for s in runs]}
    entry |= _write_common(out / cid, model, example, dynamic_axes(case.layout), exporter,
                           {k: graph_inputs(case, *sizes[k]) for k in sizes},
                           [graph_inputs(case, *s) for s in runs])
    return entry


def write_mixed(out: Path, cid: str = "mixed", exporter: str = "torchscript") -> dict:
    """The mixed example network (dynamic batch) into ``out/cid``; returns its manifest entry."""
    model, x = build_example("mixed")
    shape = tuple(x.shape[1:])

    def batch(n: int, seed: int) -> list[np.ndarray]:
        return [torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed)).numpy()]

    entry = {"id": cid, "label": "mixed example network", "kind": "network", "op": None, "layout": "NCHW",
             "dynamic": ["batch"], "run_sizes": [[n, *shape[1:]] for n in MIXED_RUN_BATCHES]}
    entry |= _write_common(out / cid, model, (x,), ("batch",), exporter,
                           {k: batch(n, 0) for k, n in MIXED_BATCHES.items()},
                           [batch(n, 1000 + n) for n in MIXED_RUN_BATCHES])
    return entry


# --- benchmark models (static shapes) -------------------------------------------------------------

def baseline_models(shape: tuple[int, int, int, int]) -> list[tuple[str, torch.nn.Module, tuple]]:
    """(name, nn.Module, inputs) for the standard and depthwise 3x3 conv engines."""
    c = shape[1]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    conv = torch.nn.Conv2d(c, c, 3, padding=1).eval()
    depthwise = torch.nn.Conv2d(c, c, 3, padding=1, groups=c).eval()
    return [("conv3x3", conv, (x,)), ("depthwise3x3", depthwise, (x,))]


def baseline_onnx(module: torch.nn.Module, inputs: tuple, fp16: bool, exporter: str = "torchscript"):
    return export_model(module, inputs, ExportOptions(target="onnx", exporter=exporter, fp16=fp16))


def eager_reference(op: str) -> tuple[str, Callable] | None:
    """The PyTorch eager implementation users would otherwise run, if one exists."""
    if op == "DynconvDeformConv2d":
        try:
            from torchvision.ops import deform_conv2d
        except Exception:
            return None
        return "torchvision.deform_conv2d", lambda x, w, off, mask=None, bias=None: deform_conv2d(
            x, off, w, bias, padding=(1, 1), mask=mask)
    if op == "DynconvInvolution":
        return "unfold involution", _unfold_involution
    if op == "DynconvDDF":
        return "unfold ddf", _unfold_ddf
    return None


def _unfold_involution(x, weight):
    import torch.nn.functional as F

    n, c, h, w = x.shape
    g = weight.shape[1] // 9
    cols = F.unfold(x, 3, padding=1).view(n, g, c // g, 9, h, w)
    return (cols * weight.view(n, g, 1, 9, h, w)).sum(3).view(n, c, h, w)


def _unfold_ddf(x, channel_filter, spatial_filter):
    import torch.nn.functional as F

    n, c, h, w = x.shape
    cols = F.unfold(x, 3, padding=1).view(n, c, 9, h, w)
    return (cols * channel_filter.view(n, c, 9, 1, 1) * spatial_filter.view(n, 1, 9, h, w)).sum(2)


def eager_args(case: OpCase, model, inputs) -> list:
    """Arguments of the eager reference in its own order."""
    if case.op == "DynconvDeformConv2d":
        x, offset, *mask = inputs
        bias = getattr(model, "bias", None)
        return [x, model.weight.detach(), offset, mask[0] if mask else None,
                bias.detach() if bias is not None else None]
    return list(inputs)


def eager_ms(fn: Callable, tensors: Sequence, fp16: bool, runs: int) -> float:
    """Median ms of ``fn`` on CUDA tensors, replayed in a CUDA graph (launch overhead removed)."""
    dtype = torch.float16 if fp16 else torch.float32
    args = [None if t is None else t.cuda().to(dtype) for t in tensors]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):
            fn(*args)
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn(*args)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(runs):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def _describe(names: Sequence[str], tensors: Sequence[torch.Tensor], fp16: bool) -> list[dict]:
    """Input descriptions for stage 2, which draws normal values with the same mean and std."""
    return [{"name": name, "shape": list(t.shape), "dtype": "float16" if fp16 else "float32",
             "mean": float(t.float().mean()), "std": float(t.float().std()) if t.numel() > 1 else 1.0}
            for name, t in zip(names, tensors)]


def shape_tag(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def write_bench(out: Path, shapes: Sequence[tuple[int, int, int, int]] = BENCH_SHAPES,
                precisions: Sequence[str] = ("fp16", "fp32"), runs: int = 200, exporter: str = "torchscript",
                eager: bool | None = None) -> dict:
    """Static benchmark ONNX under ``out/bench``; eager CUDA-graph timings when CUDA is available."""
    eager = torch.cuda.is_available() if eager is None else eager
    items, timings = [], []
    cases = [(f"b{i}-" + case_id(i, c.label)[3:], c) for i, c in enumerate(benchmark_cases())]
    for shape in shapes:
        for precision in precisions:
            fp16 = precision == "fp16"
            folder = out / "bench" / f"{shape_tag(shape)}-{precision}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, module, args in baseline_models(shape):
                proto = baseline_onnx(module, args, fp16, exporter)
                onnx.save(proto, folder / f"{name}.onnx")
                items.append({"id": name, "kind": "baseline", "label": name, "op": None, "shape": list(shape),
                              "precision": precision, "onnx": f"bench/{folder.name}/{name}.onnx",
                              "inputs": _describe(_names(proto)[0], args, fp16)})
            for cid, case in cases:
                model, inputs = case.model(*shape)  # static shapes: no dynamic axes
                proto = export_model(model, inputs, ExportOptions(target="trt", exporter=exporter, fp16=fp16))
                onnx.save(proto, folder / f"{cid}.onnx")
                items.append({"id": cid, "kind": "plugin", "label": case.label, "op": case.op, "shape": list(shape),
                              "precision": precision, "onnx": f"bench/{folder.name}/{cid}.onnx",
                              "inputs": _describe(_names(proto)[0], inputs, fp16)})
                ref = eager_reference(case.op) if eager else None
                if ref is not None:
                    try:
                        ms = eager_ms(ref[1], eager_args(case, model, inputs), fp16, runs)
                    except RuntimeError as exc:  # e.g. an op without a half kernel: no eager number
                        log.warning("eager %s %s %s failed: %s", case.label, shape_tag(shape), precision, exc)
                        ms = None
                    timings.append({"id": cid, "label": case.label, "shape": list(shape), "precision": precision,
                                    "eager_name": ref[0], "eager_ms": ms})
                    log.info("eager %s %s %s: %s ms (%s)", case.label, shape_tag(shape), precision, ms, ref[0])
                log.info("bench %s %s %s written", cid, shape_tag(shape), precision)
    if eager:
        meta = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "runs": runs}
        (out / EAGER_TIMINGS).write_text(json.dumps({"meta": meta, "timings": timings}, indent=1))
    return {"shapes": [list(s) for s in shapes], "precisions": list(precisions), "items": items,
            "eager_timings": EAGER_TIMINGS if eager else None}


# --- driver ---------------------------------------------------------------------------------------

def select_cases(patterns: Sequence[str] | None = None, limit: int | None = None) -> list[tuple[str, OpCase | None]]:
    """(id, case) pairs of the parity grid plus ("mixed", None), filtered: a pattern selects the ids
    that contain it or match it as a glob; ``limit`` keeps the first N."""
    from fnmatch import fnmatch

    every = [(case_id(i, c.label), c) for i, c in enumerate(parity_grid())] + [("mixed", None)]
    if patterns:
        every = [(cid, c) for cid, c in every if any(p in cid or fnmatch(cid, p) for p in patterns)]
    return every[:limit] if limit is not None else every


def write_cases(out: str | Path, patterns: Sequence[str] | None = None, limit: int | None = None,
                exporter: str = "torchscript", bench: bool = False,
                bench_shapes: Sequence[tuple[int, int, int, int]] = BENCH_SHAPES, runs: int = 200) -> dict:
    """Write the selected cases (and with ``bench`` the benchmark models) and ``manifest.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    selected = select_cases(patterns, limit)
    if not selected and not bench:
        raise DynconvError(f"no case matches {list(patterns or [])}")
    entries = []
    for cid, case in selected:
        entries.append(write_mixed(out, cid, exporter) if case is None else write_op_case(out, cid, case, exporter))
        log.info("case %s written", cid)
    manifest = {"format": FORMAT_VERSION, "torch": torch.__version__, "exporter": exporter, "channels": CHANNELS,
                "cases": entries,
                "bench": write_bench(out, bench_shapes, runs=runs, exporter=exporter) if bench else None}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; expected NxCxHxW")
    return dims  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("dir", help="output directory (created)")
    p.add_argument("--bench", action="store_true", help="also write the plugin benchmark models (+ eager timings)")
    p.add_argument("--cases", nargs="+", metavar="PATTERN", help="only case ids containing/matching these")
    p.add_argument("--limit", type=int, help="only the first N selected cases")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript")
    p.add_argument("--bench-shapes", nargs="+", type=_shape, default=BENCH_SHAPES, metavar="NxCxHxW")
    p.add_argument("--runs", type=int, default=200, help="timed CUDA-graph replays per eager timing")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("torch", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        manifest = write_cases(args.dir, args.cases, args.limit, args.exporter, args.bench, args.bench_shapes,
                               args.runs)
    except DynconvError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    bench = manifest["bench"]
    print(f"wrote {len(manifest['cases'])} cases" + (f" and {len(bench['items'])} benchmark models" if bench else "")
          + f" to {args.dir}/{MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
