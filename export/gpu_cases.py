"""Stage 1 of the GPU checks (needs torch, not TensorRT): write every GPU parity case to a directory.

    python -m dynconv.export.gpu_cases DIR [--bench] [--cases PATTERN ...] [--limit N]

TensorRT may live in another interpreter than torch (e.g. ``trtpy`` next to a torch ``python3``), so
the GPU tests and the plugin benchmark run in two stages. This stage writes, for every case of
:func:`~dynconv.export.op_models.parity_grid` and the ``mixed`` example network, into ``DIR/<id>/``:

- ``trt_fp32.onnx``, ``trt_fp16.onnx``: the trt flavour (NCHW ops: dynamic batch, height and width;
  NHWC ops: dynamic batch; the network: dynamic batch),
- ``ref.onnx``: the reference flavour (FP32), which onnxruntime runs,
- ``profile.json``: min/opt/max shape per input name,
- ``inputs_<k>.npz`` / ``eager_<k>.npz`` / ``ref_<k>.npz``: inputs at two run shapes inside the profile,
  the PyTorch eager outputs and the onnxruntime outputs of ``ref.onnx`` for them (FP32), so that stage 2
  needs neither torch nor onnxruntime,
- ``flip_<precision>_<k>.npz`` where the model has DRConv: the onnxruntime outputs with every near-tie
  guide pixel handed to its runner-up region (:mod:`dynconv.runtime.drconv_parity`), for the tie-aware
  comparison,

the compat-form graphs (``compat_<precision>.onnx`` in their own ``DIR/<id>-<form>/``: the same case as
mmdeploy's ``MMCVModulatedDeformConv2d`` / ``MMCVDeformConv2d`` and InternImage's ``TRTDCNv3`` nodes, in
the exact node form their exporters write), and ``DIR/manifest.json`` listing them. ``--bench`` adds ``DIR/bench/``: static trt-flavour ONNX of each
:func:`~dynconv.export.op_models.benchmark_cases` op and of the standard and depthwise 3x3 conv
baselines at the benchmark shapes, FP16 and FP32 (inputs described by shape, dtype, mean and std, so
they are generated on the GPU host), and, when ``torch.cuda`` is available, ``DIR/eager_timings.json``
with the PyTorch eager implementations timed in CUDA graphs. ``--eager-only`` writes just those
timings for an existing ``DIR`` (the GPU host's torch, after stage 1 ran on a CPU machine).

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
from ..runtime.drconv_parity import flip_reference, ort_runner, region_selects
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
    files["inputs"], files["eager"], files["ref_outputs"] = [], [], []
    drconv = bool(region_selects(ref))
    if drconv:
        files["flips"] = {p: [] for p in PRECISIONS}
    tie_fraction: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for k, arrays in enumerate(runs):
        with torch.no_grad():
            got = model(*[torch.from_numpy(a) for a in arrays])
        got = got if isinstance(got, (tuple, list)) else (got,)
        feeds = dict(zip(names, arrays))
        np.savez(folder / f"inputs_{k}.npz", **feeds)
        np.savez(folder / f"eager_{k}.npz", **{name: t.numpy() for name, t in zip(outputs, got)})
        files["inputs"].append(f"{folder.name}/inputs_{k}.npz")
        files["eager"].append(f"{folder.name}/eager_{k}.npz")
        reference = None
        for precision in PRECISIONS if drconv else ():
            flips = flip_reference(ref, feeds, precision)
            reference = flips.outputs
            np.savez(folder / f"flip_{precision}_{k}.npz", **flips.flipped)
            files["flips"][precision].append(f"{folder.name}/flip_{precision}_{k}.npz")
            tie_fraction[precision].append(flips.tie_fraction)
        reference = reference if reference is not None else ort_runner(ref, feeds)
        np.savez(folder / f"ref_{k}.npz", **{name: reference[name] for name in outputs})
        files["ref_outputs"].append(f"{folder.name}/ref_{k}.npz")
    entry = {"files": files, "input_names": names, "output_names": outputs}
    return entry | ({"drconv": {"tie_fraction": tie_fraction}} if drconv else {})


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


# --- compat-form graphs (mmdeploy, InternImage) ----------------------------------------------------

COMPAT_DOMAIN = "mmdeploy"
# base case (parity-grid index) -> compat node type, as the third-party exporters write it
COMPAT_FORMS = {0: "MMCVModulatedDeformConv2d", 2: "MMCVDeformConv2d", 4: "TRTDCNv3"}


def compat_node(node: onnx.NodeProto, form: str) -> onnx.NodeProto:
    """The dynconv plugin node ``node`` rewritten as ``form`` in its exporter's exact node form: input
    order, attribute names, types and value layout of mmdeploy's / InternImage's symbolic functions."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if form == "MMCVModulatedDeformConv2d":  # mmcv order: input, offset, mask, weight, bias
        x, weight, offset, mask, *bias = node.input
        return helper.make_node(form, [x, offset, mask, weight, *bias], list(node.output), domain=COMPAT_DOMAIN,
                                stride=list(attrs["stride"]), padding=list(attrs["padding"]),
                                dilation=list(attrs["dilation"]), groups=attrs["groups"],
                                deform_groups=attrs["offset_groups"])
    if form == "MMCVDeformConv2d":  # input, offset, weight; padding as [ph, ph, pw, pw]
        x, weight, offset = node.input
        ph, pw = attrs["padding"]
        return helper.make_node(form, [x, offset, weight], list(node.output), domain=COMPAT_DOMAIN,
                                stride=list(attrs["stride"]), padding=[ph, ph, pw, pw],
                                dilation=list(attrs["dilation"]), groups=attrs["groups"],
                                deform_groups=attrs["offset_groups"], bias=0, im2col_step=32)
    if form == "TRTDCNv3":  # InternImage's DCNv3Function.symbolic: 12 scalar fields (remove_center if set)
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (attrs[k] for k in ("kernel_size", "stride", "padding", "dilation"))
        extra = {"remove_center": attrs["remove_center"]} if attrs.get("remove_center") else {}
        return helper.make_node(form, list(node.input), list(node.output), domain=COMPAT_DOMAIN,
                                kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw,
                                dilation_h=dh, dilation_w=dw, group=attrs["group"],
                                group_channels=attrs["group_channels"], offset_scale=float(attrs["offset_scale"]),
                                im2col_step=256, **extra)
    raise DynconvError(f"unknown compat form {form!r}; choose from {sorted(COMPAT_FORMS.values())}")


def compat_model(trt_model: onnx.ModelProto, form: str) -> onnx.ModelProto:
    """A copy of a single-op trt-flavour model whose plugin node is in ``form``'s exact node form."""
    out = onnx.ModelProto()
    out.CopyFrom(trt_model)
    index = next(i for i, n in enumerate(out.graph.node) if n.domain == "dynconv")
    out.graph.node[index].CopyFrom(compat_node(out.graph.node[index], form))
    kept = [o for o in out.opset_import if o.domain != "dynconv"]
    del out.opset_import[:]
    out.opset_import.extend([*kept, onnx.helper.make_opsetid(COMPAT_DOMAIN, 1)])
    return out


def write_compat(out: Path, base: dict, form: str) -> dict:
    """``base``'s case as a ``form`` graph (FP32 and FP16) in ``out/<base id>-<form>``; its manifest entry
    reuses the base case's inputs and references."""
    cid = f"{base['id']}-{form}"
    folder = out / cid
    folder.mkdir(parents=True, exist_ok=True)
    files = {k: v for k, v in base["files"].items() if not k.startswith("trt_")}
    for precision in PRECISIONS:
        proto = compat_model(onnx.load(out / base["files"][f"trt_{precision}"]), form)
        onnx.save(proto, folder / f"compat_{precision}.onnx")
        files[f"trt_{precision}"] = f"{cid}/compat_{precision}.onnx"
    return base | {"id": cid, "kind": "compat", "base": base["id"], "form": f"{COMPAT_DOMAIN}::{form}",
                   "label": f"{base['label']} as {COMPAT_DOMAIN}::{form}", "files": files}


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
    items = []
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
                log.info("bench %s %s %s written", cid, shape_tag(shape), precision)
    section = {"shapes": [list(s) for s in shapes], "precisions": list(precisions), "items": items,
               "eager_timings": EAGER_TIMINGS if eager else None}
    if eager:
        write_eager_timings(out, section, runs)
    return section


def write_eager_timings(out: Path, bench: dict, runs: int = 200) -> list[dict]:
    """Time the PyTorch eager reference of every benchmark op (CUDA graphs) into ``out/eager_timings.json``;
    needs torch with CUDA, not the ONNX exporter."""
    if not torch.cuda.is_available():
        raise DynconvError("torch has no CUDA device: eager timings need a GPU")
    cases = {f"b{i}-" + case_id(i, c.label)[3:]: c for i, c in enumerate(benchmark_cases())}
    timings = []
    for item in (i for i in bench["items"] if i["kind"] == "plugin"):
        case, shape, precision = cases[item["id"]], tuple(item["shape"]), item["precision"]
        ref = eager_reference(case.op)
        if ref is None:
            continue
        model, inputs = case.model(*shape)
        try:
            ms = eager_ms(ref[1], eager_args(case, model, inputs), precision == "fp16", runs)
        except RuntimeError as exc:  # e.g. an op without a half kernel: no eager number
            log.warning("eager %s %s %s failed: %s", case.label, shape_tag(shape), precision, exc)
            ms = None
        timings.append({"id": item["id"], "label": case.label, "shape": list(shape), "precision": precision,
                        "eager_name": ref[0], "eager_ms": ms})
        log.info("eager %s %s %s: %s ms (%s)", case.label, shape_tag(shape), precision, ms, ref[0])
    meta = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "runs": runs}
    (out / EAGER_TIMINGS).write_text(json.dumps({"meta": meta, "timings": timings}, indent=1))
    return timings


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
                bench_shapes: Sequence[tuple[int, int, int, int]] = BENCH_SHAPES, runs: int = 200,
                compat: bool = True, eager: bool | None = None) -> dict:
    """Write the selected cases (with their compat-form twins where one exists; with ``bench`` the
    benchmark models) and ``manifest.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    selected = select_cases(patterns, limit)
    if not selected and not bench:
        raise DynconvError(f"no case matches {list(patterns or [])}")
    entries = []
    grid_index = {case_id(i, c.label): i for i, c in enumerate(parity_grid())}
    for cid, case in selected:
        entries.append(write_mixed(out, cid, exporter) if case is None else write_op_case(out, cid, case, exporter))
        log.info("case %s written", cid)
        form = COMPAT_FORMS.get(grid_index.get(cid, -1)) if compat else None
        if form is not None:
            entries.append(write_compat(out, entries[-1], form))
            log.info("compat case %s written", entries[-1]["id"])
    manifest = {"format": FORMAT_VERSION, "torch": torch.__version__, "exporter": exporter, "channels": CHANNELS,
                "cases": entries,
                "bench": write_bench(out, bench_shapes, runs=runs, exporter=exporter, eager=eager) if bench else None}
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
    p.add_argument("--no-compat", action="store_true", help="skip the mmdeploy/InternImage compat-form graphs")
    p.add_argument("--no-eager", action="store_true", help="do not time eager references even with CUDA")
    p.add_argument("--eager-only", action="store_true",
                   help="only time the eager references of an existing DIR's benchmark (needs CUDA)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("torch", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        if args.eager_only:
            bench = json.loads((Path(args.dir) / MANIFEST).read_text()).get("bench") \
                if (Path(args.dir) / MANIFEST).is_file() else None
            if not bench:
                raise DynconvError(f"{Path(args.dir) / MANIFEST} has no benchmark section: run stage 1 with --bench")
            timings = write_eager_timings(Path(args.dir), bench, args.runs)
            print(f"wrote {len(timings)} eager timings to {Path(args.dir) / EAGER_TIMINGS}")
            return 0
        manifest = write_cases(args.dir, args.cases, args.limit, args.exporter, args.bench, args.bench_shapes,
                               args.runs, compat=not args.no_compat, eager=False if args.no_eager else None)
    except DynconvError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    bench = manifest["bench"]
    print(f"wrote {len(manifest['cases'])} cases" + (f" and {len(bench['items'])} benchmark models" if bench else "")
          + f" to {args.dir}/{MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
