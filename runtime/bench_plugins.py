"""Plugin speed table: each core op inside a TensorRT engine vs TensorRT engines of a standard 3x3
conv and a depthwise 3x3 conv of the same shape, and vs PyTorch eager references where they exist.

``python -m dynconv.runtime.bench_plugins [--json out.json] [--precision fp16 fp32] [--runs 200]``
Needs TensorRT, a CUDA GPU, cuda-python, torch and the plugin library. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ._cli import atomic_write_text
from .errors import DynconvError

log = logging.getLogger("dynconv.runtime")
PROG = "dynconv-bench-plugins"
SHAPES = [(1, 256, 100, 152), (8, 128, 28, 28), (32, 64, 56, 56)]


@dataclass
class Result:
    op: str
    shape: tuple[int, int, int, int]
    precision: str
    plugin_ms: float
    conv3x3_ms: float
    depthwise_ms: float
    eager_ms: float | None
    eager_name: str | None

    @property
    def vs_conv(self) -> float:
        return self.plugin_ms / self.conv3x3_ms

    @property
    def vs_depthwise(self) -> float:
        return self.plugin_ms / self.depthwise_ms


def baseline_models(shape: tuple[int, int, int, int]):
    """(name, nn.Module, input) for the standard and depthwise 3x3 conv engines."""
    import torch

    n, c, h, w = shape
    x = torch.randn(shape)
    return [("conv3x3", torch.nn.Conv2d(c, c, 3, padding=1).eval(), (x,)),
            ("depthwise3x3", torch.nn.Conv2d(c, c, 3, padding=1, groups=c).eval(), (x,))]


def plugin_onnx(case, shape: tuple[int, int, int, int], fp16: bool):
    """trt-flavour ONNX of one core op at ``shape`` (static) and its graph inputs."""
    from ..export import ExportOptions, export_model

    model, inputs = case.model(*shape)
    return export_model(model, inputs, ExportOptions(target="trt", exporter="torchscript", fp16=fp16)), inputs


def engine_gpu_ms(proto, inputs, fp16: bool, workdir: Path, runs: int) -> float:
    """Median GPU time (CUDA events) of one engine built from ``proto``."""
    import onnx

    from . import bench
    from .builder import BuildOptions, build
    from .engine import Engine

    path = workdir / "m.onnx"
    onnx.save(proto, path)
    plan = workdir / "m.plan"
    build(BuildOptions(path, plan, plugins="auto", fp16=fp16))
    feeds = {v.name: t.numpy().astype(np.float16 if fp16 else np.float32) for v, t in zip(proto.graph.input, inputs)}
    with Engine(plan, plugins="auto") as engine:
        return bench.trt_breakdown(engine, feeds, warmup=20, runs=runs)["gpu_ms"]


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


def eager_ms(fn: Callable, tensors: Sequence, fp16: bool, runs: int) -> float:
    """Median ms of ``fn`` on CUDA tensors, replayed in a CUDA graph (launch overhead removed)."""
    import torch

    dtype = torch.float16 if fp16 else torch.float32
    args = [t.cuda().to(dtype) for t in tensors]
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):
            fn(*args)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn(*args)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(runs):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def run(precisions: Sequence[str], runs: int, shapes: Sequence[tuple[int, int, int, int]]) -> list[Result]:
    from ..export import ExportOptions, export_model
    from ..export.op_models import benchmark_cases

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for shape in shapes:
            for precision in precisions:
                fp16 = precision == "fp16"
                base = {}
                for name, module, args in baseline_models(shape):
                    proto = export_model(module, args, ExportOptions(target="onnx", exporter="torchscript", fp16=fp16))
                    base[name] = engine_gpu_ms(proto, args, fp16, workdir, runs)
                for case in benchmark_cases():
                    proto, inputs = plugin_onnx(case, shape, fp16)
                    plugin = engine_gpu_ms(proto, inputs, fp16, workdir, runs)
                    ref = eager_reference(case.op)
                    eager = None
                    if ref is not None:
                        model, _ = case.model(*shape)
                        tensors = _eager_args(case, model, inputs)
                        eager = eager_ms(ref[1], tensors, fp16, runs)
                    results.append(Result(case.label, shape, precision, plugin, base["conv3x3"], base["depthwise3x3"],
                                          eager, ref[0] if ref else None))
                    log.info("%s", _row(results[-1]))
    return results


def _eager_args(case, model, inputs):
    """Arguments of the eager reference in its own order."""
    if case.op == "DynconvDeformConv2d":
        x, offset, *mask = inputs
        bias = model.bias.detach() if hasattr(model, "bias") else None
        return [x, model.weight.detach(), offset, mask[0] if mask else None, bias]
    return list(inputs)


def _row(r: Result) -> str:
    eager = f"{r.eager_ms:8.3f}" if r.eager_ms is not None else "       -"
    return (f"{r.op:<44} {'x'.join(map(str, r.shape)):<14} {r.precision:<5} {r.plugin_ms:8.3f} {r.conv3x3_ms:8.3f} "
            f"{r.depthwise_ms:8.3f} {eager} {r.vs_conv:6.2f} {r.vs_depthwise:6.2f}")


def table(results: Sequence[Result]) -> str:
    head = (f"{'op':<44} {'NxCxHxW':<14} {'prec':<5} {'plugin':>8} {'conv3x3':>8} {'dw3x3':>8} {'eager':>8} "
            f"{'/conv':>6} {'/dw':>6}   (median GPU ms)")
    return "\n".join([head, *(_row(r) for r in results)])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--precision", nargs="+", choices=("fp16", "fp32"), default=["fp16", "fp32"])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from .device import device_count
        from .trt_compat import import_tensorrt

        import_tensorrt()
        if device_count() == 0:
            raise DynconvError("no CUDA device is visible: the plugin benchmark needs a GPU")
        results = run(args.precision, args.runs, SHAPES)
    except DynconvError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    if args.json:
        rows = [asdict(r) | {"vs_conv": r.vs_conv, "vs_depthwise": r.vs_depthwise} for r in results]
        atomic_write_text(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
