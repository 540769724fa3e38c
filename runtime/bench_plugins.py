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
from typing import Sequence

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
    """Median GPU time (CUDA events) of one engine built from ``onnx_path`` (static shapes)."""
    from . import bench
    from .builder import BuildOptions, build
    from .engine import Engine

    plan = workdir / "m.plan"
    build(BuildOptions(Path(onnx_path), plan, plugins="auto", fp16=fp16))
    with Engine(plan, plugins="auto") as engine:
        return bench.trt_breakdown(engine, make_feeds(inputs), warmup=20, runs=runs)["gpu_ms"]


def run(directory: str | Path, precisions: Sequence[str], runs: int) -> list[Result]:
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
                base = {i["id"]: engine_gpu_ms(directory / i["onnx"], i["inputs"], fp16, workdir, runs)
                        for i in group if i["kind"] == "baseline"}
                for item in (i for i in group if i["kind"] == "plugin"):
                    plugin = engine_gpu_ms(directory / item["onnx"], item["inputs"], fp16, workdir, runs)
                    ref = eager.get((item["id"], tuple(shape), precision), {})
                    results.append(Result(item["label"], tuple(shape), precision, plugin, base["conv3x3"],
                                          base["depthwise3x3"], ref.get("eager_ms"), ref.get("eager_name"),
                                          item["id"]))
                    log.info("%s", _row(results[-1]))
    return results


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
        rows = [asdict(r) | {"vs_conv": r.vs_conv, "vs_depthwise": r.vs_depthwise} for r in results]
        atomic_write_text(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
