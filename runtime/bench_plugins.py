"""Plugin speed table: each core op inside a TensorRT engine vs TensorRT engines of a standard 3x3
conv and a depthwise 3x3 conv of the same shape, and vs PyTorch eager references where they exist.

    python -m dynconv.export.gpu_cases DIR --bench            # stage 1: torch (writes the models)
    python -m dynconv.runtime.bench_plugins DIR [--json out.json] [--precision fp16 fp32] [--runs 200]

This is stage 2: no torch. It needs TensorRT, a CUDA GPU, cuda-python and the plugin library; it
builds every benchmark engine from ``DIR/manifest.json``, times it (median GPU ms, CUDA events), merges
the eager CUDA-graph timings of ``DIR/eager_timings.json`` when present, prints a table and writes JSON.
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
MANIFEST = "manifest.json"  # names shared with dynconv.export.gpu_cases (which imports torch)
EAGER_TIMINGS = "eager_timings.json"
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
    case: str = ""
    predicted_ms: float | None = None  # the CPU performance model's prediction, when joined

    @property
    def vs_conv(self) -> float:
        return self.plugin_ms / self.conv3x3_ms

    @property
    def vs_depthwise(self) -> float:
        return self.plugin_ms / self.depthwise_ms


def load_manifest(directory: str | Path) -> dict:
    """``DIR/manifest.json`` written by ``python -m dynconv.export.gpu_cases DIR``."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DynconvError(f"{path} does not exist: write it with `python -m dynconv.export.gpu_cases "
                           f"{directory} --bench` (stage 1, needs torch)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DynconvError(f"{path} is not readable JSON: {exc}") from exc


def load_eager(directory: str | Path) -> dict[tuple[str, tuple[int, ...], str], dict]:
    """Eager timings by (case id, shape, precision); empty when stage 1 had no CUDA."""
    path = Path(directory) / EAGER_TIMINGS
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text()).get("timings", [])
    return {(r["id"], tuple(r["shape"]), r["precision"]): r for r in rows}


def make_feeds(inputs: Sequence[dict], seed: int = 0) -> dict[str, np.ndarray]:
    """Normal values with the mean and std stage 1 recorded for each input."""
    rng = np.random.default_rng(seed)
    return {d["name"]: (rng.standard_normal(d["shape"], dtype=np.float32) * d["std"] + d["mean"]).astype(d["dtype"])
            for d in inputs}


def engine_gpu_ms(onnx_path: Path, inputs: Sequence[dict], fp16: bool, workdir: Path, runs: int) -> float:
    """Median GPU time (CUDA events) of one engine built from ``onnx_path`` (static shapes; FP32 without
    TF32; one timing cache in ``workdir`` shared by all builds, so repeated layers are timed once)."""
    from . import bench
    from .builder import BuildOptions, build
    from .engine import Engine

    plan = workdir / "m.plan"
    build(BuildOptions(Path(onnx_path), plan, plugins="auto", fp16=fp16, timing_cache=workdir / "timing.cache"))
    with Engine(plan, plugins="auto") as engine:
        return bench.trt_breakdown(engine, make_feeds(inputs), warmup=20, runs=runs)["gpu_ms"]


EngineTimer = Callable[[Path, Sequence[dict], bool, Path, int], float]


def run(directory: str | Path, precisions: Sequence[str], runs: int,
        time_engine: EngineTimer = engine_gpu_ms) -> list[Result]:
    """Time every benchmark engine of ``directory`` with ``time_engine`` (the GPU one by default)."""
    directory = Path(directory)
    bench_section = load_manifest(directory).get("bench")
    if not bench_section:
        raise DynconvError(f"{directory / MANIFEST} has no benchmark models: rerun stage 1 with --bench")
    eager = load_eager(directory)
    items = [i for i in bench_section["items"] if i["precision"] in precisions]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for shape in bench_section["shapes"]:
            for precision in precisions:
                group = [i for i in items if i["shape"] == shape and i["precision"] == precision]
                fp16 = precision == "fp16"
                base = {i["id"]: time_engine(directory / i["onnx"], i["inputs"], fp16, workdir, runs)
                        for i in group if i["kind"] == "baseline"}
                for item in (i for i in group if i["kind"] == "plugin"):
                    plugin = time_engine(directory / item["onnx"], item["inputs"], fp16, workdir, runs)
                    ref = eager.get((item["id"], tuple(shape), precision), {})
                    results.append(Result(item["label"], tuple(shape), precision, plugin, base["conv3x3"],
                                          base["depthwise3x3"], ref.get("eager_ms"), ref.get("eager_name"),
                                          item["id"]))
                    log.info("%s", _row(results[-1]))
    return results


def join_predictions(results: Sequence[Result], predictions: Sequence[dict]) -> int:
    """Set ``predicted_ms`` from the performance model's rows (``python -m dynconv.plugins.perfmodel
    --json``: ``op`` is the first word of a benchmark label, e.g. "dcnv2"; ``predicted_us``), joined by
    (op, shape, precision); returns how many results got one."""
    table = {(p["op"], tuple(p["shape"]), p["precision"]): float(p["predicted_us"]) / 1e3 for p in predictions}
    joined = 0
    for r in results:
        value = table.get((r.op.split()[0], tuple(r.shape), r.precision))
        if value is not None:
            r.predicted_ms = value
            joined += 1
    return joined


def result_rows(results: Sequence[Result]) -> list[dict]:
    """JSON rows: the dataclass fields plus the two ratios."""
    return [asdict(r) | {"vs_conv": r.vs_conv, "vs_depthwise": r.vs_depthwise} for r in results]


def plot(results: Sequence[Result], path: str | Path, title: str) -> None:
    """Grouped bars (plugin engine, conv3x3 engine, depthwise engine, eager, model prediction) per op,
    one panel per (shape, precision), log time axis; written atomically as PNG (matplotlib, lazy)."""
    from .bench import pyplot, save_png  # noqa: PLC0415

    plt = pyplot()
    panels = sorted({(tuple(r.shape), r.precision) for r in results}, key=lambda k: (k[0], k[1]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.8 * max(len(panels), 1)), squeeze=False)
    series = [("plugin", "plugin_ms", "#4C72B0"), ("conv3x3 engine", "conv3x3_ms", "#DD8452"),
              ("depthwise engine", "depthwise_ms", "#55A868"), ("PyTorch eager", "eager_ms", "#C44E52"),
              ("model prediction", "predicted_ms", "#8172B3")]
    for ax, (shape, precision) in zip(axes[:, 0], panels):
        rows = [r for r in results if tuple(r.shape) == shape and r.precision == precision]
        width = 0.8 / len(series)
        for k, (name, attr, color) in enumerate(series):
            values = [getattr(r, attr) or 0.0 for r in rows]
            ax.bar([i + k * width for i in range(len(rows))], values, width, label=name, color=color)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
        ax.set_xticklabels([r.op.split()[0] for r in rows], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("GPU ms (median)", fontsize=8)
        ax.set_title(f"{'x'.join(map(str, shape))} {precision}", fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=len(series))
    fig.suptitle(title, fontsize=10)
    save_png(fig, path, dpi=110)


def _row(r: Result) -> str:
    eager = f"{r.eager_ms:8.3f}" if r.eager_ms is not None else "       -"
    return (f"{r.op:<52} {'x'.join(map(str, r.shape)):<14} {r.precision:<5} {r.plugin_ms:8.3f} {r.conv3x3_ms:8.3f} "
            f"{r.depthwise_ms:8.3f} {eager} {r.vs_conv:6.2f} {r.vs_depthwise:6.2f}")


def table(results: Sequence[Result]) -> str:
    head = (f"{'op':<52} {'NxCxHxW':<14} {'prec':<5} {'plugin':>8} {'conv3x3':>8} {'dw3x3':>8} {'eager':>8} "
            f"{'/conv':>6} {'/dw':>6}   (median GPU ms)")
    return "\n".join([head, *(_row(r) for r in results)])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("dir", help="stage-1 directory (python -m dynconv.export.gpu_cases DIR --bench)")
    p.add_argument("--precision", nargs="+", choices=("fp16", "fp32"), default=["fp16", "fp32"])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from .device import device_count
        from .trt_compat import import_tensorrt

        manifest = load_manifest(args.dir)
        if not manifest.get("bench"):
            raise DynconvError(f"{Path(args.dir) / MANIFEST} has no benchmark models: rerun stage 1 with --bench")
        import_tensorrt()
        if device_count() == 0:
            raise DynconvError("no CUDA device is visible: the plugin benchmark needs a GPU")
        results = run(args.dir, args.precision, args.runs)
    except DynconvError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    if args.json:
        atomic_write_text(args.json, json.dumps(result_rows(results), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
