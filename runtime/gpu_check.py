"""The one-window GPU check, stage 2 (TensorRT, no torch): parity, compute-sanitizer, benchmark, into OUT.

    python -m dynconv.runtime.gpu_check CASES --out OUT [--steps parity sanitize bench ncu] [--fake]
    python -m dynconv.runtime.gpu_check run-plans PLAN=INPUTS.npz ...     (what compute-sanitizer runs)

``CASES`` is stage 1's directory (``python -m dynconv.export.gpu_cases CASES --bench``, written on the
CPU machine, plus ``eager_timings.json`` from ``--eager-only`` on the GPU host). Writes to OUT:

- ``summary.json``: GPU, driver, TensorRT, plugin library; every parity row (FP32 and FP16, op grid,
  compat forms, example network; engine vs onnxruntime and vs PyTorch eager; DRConv flipped share);
  the sanitizer verdict per kernel path; the benchmark rows (with the performance model's prediction
  joined where ``dynconv.plugins.perfmodel`` exists),
- ``parity.txt`` and ``bench.txt``: the same as tables, ``bench.json``: the benchmark rows alone,
- ``ncu.txt``: Nsight Compute's counters of every FP16 plugin launch at one benchmark shape next to the
  performance model's (:mod:`.gpu_ncu`; the rows are in ``summary.json``).

``--fake`` is the CPU dry run: engines answer with the stored PyTorch outputs, timings are
placeholders marked ``"fake": true``, the sanitizer step only records its command.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._cli import atomic_write_text
from .errors import DynconvError
from .gpu_parity import PRECISIONS, ParityRow, check_case, fake_engine_factory, trt_engine_factory

PROG = "python -m dynconv.runtime.gpu_check"
STEPS = ("parity", "sanitize", "bench", "ncu")
SANITIZER_ERROR_EXIT = 86
PERFMODEL = "dynconv.plugins.perfmodel"
PERFMODEL_JSON = "perfmodel.json"

log = logging.getLogger("dynconv.runtime")


# --- environment ----------------------------------------------------------------------------------

def environment(fake: bool, plugin_library: str | None) -> dict:
    """GPU, driver, TensorRT, Python and plugin library of this run (``fake`` marks the dry run)."""
    env: dict = {"fake": fake, "python": platform.python_version(), "host": platform.node()}
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi, "--query-gpu=name,driver_version,compute_cap,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True, check=False, timeout=60)
        env["nvidia_smi"] = proc.stdout.strip() or proc.stderr.strip()
    if not fake:
        import tensorrt as trt  # noqa: PLC0415

        env["tensorrt"] = trt.__version__
    if plugin_library and Path(plugin_library).is_file():
        env["plugin_library"] = plugin_library
        env["plugin_sha256"] = hashlib.sha256(Path(plugin_library).read_bytes()).hexdigest()
    return env


# --- parity ---------------------------------------------------------------------------------------

def _parity_job(root: str, case: dict, precision: str, workdir: str, fake: bool) -> list[dict]:
    """One (case, precision): build, run, compare; a failure becomes a failed row (runs in a worker)."""
    root_path, work = Path(root), Path(workdir)
    factory = fake_engine_factory(root_path, case) if fake else trt_engine_factory()
    started = time.monotonic()
    try:
        rows = check_case(root_path, case, precision, factory, work)
    except Exception as exc:  # one broken case must not hide the others  # noqa: BLE001
        log.error("%s %s: %s: %s", case["id"], precision, type(exc).__name__, exc)
        rows = [ParityRow(case["id"], case["kind"], case.get("op"), precision, -1, [], "engine", float("inf"),
                          float("inf"), 0.0, 0.0, False, note=f"{type(exc).__name__}: {exc}"[:500])]
    log.info("parity %s %s: %.1f s", case["id"], precision, time.monotonic() - started)
    return [r.to_json() for r in rows]


def _pool(jobs: int):
    """Worker processes for engine builds: spawned, so no CUDA state is inherited; 16-core GPU hosts
    build several small engines at once (TensorRT's builder is mostly single-threaded)."""
    import multiprocessing  # noqa: PLC0415
    from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def run_parity(root: Path, manifest: dict, workdir: Path, fake: bool, jobs: int = 1) -> tuple[list[ParityRow], dict]:
    """Every case at both precisions (``jobs`` at a time); returns the rows and
    {(case id, precision): plan path}."""
    tasks = [(str(root), case, precision, str(workdir), fake) for case in manifest["cases"] for precision in PRECISIONS]
    if jobs <= 1:
        results = [_parity_job(*t) for t in tasks]
    else:
        with _pool(jobs) as pool:
            results = list(pool.map(_parity_job, *zip(*tasks)))
    rows = [ParityRow(**r) for result in results for r in result]
    plans = {(c["id"], p): workdir / f"{c['id']}-{p}.plan" for _, c, p, _, _ in tasks}
    return rows, {k: v for k, v in plans.items() if v.is_file()}


def parity_table(rows: Sequence[ParityRow]) -> str:
    head = (f"{'case':<44} {'prec':<5} {'run':>3} {'against':<22} {'max_abs':>10} {'rel':>10} {'cosine':>9} "
            f"{'flipped':>8}  status")
    lines = [head]
    for r in rows:
        flipped = f"{r.flipped_fraction:.3%}" if r.flipped_fraction is not None else "-"
        lines.append(f"{r.case[:44]:<44} {r.precision:<5} {r.run:>3} {r.against:<22} {r.max_abs:>10.3e} "
                     f"{r.rel:>10.3e} {r.cosine:>9.6f} {flipped:>8}  {'ok' if r.passed else 'FAIL ' + r.note}")
    failed = sum(not r.passed for r in rows)
    lines.append(f"{len(rows) - failed}/{len(rows)} parity rows within tolerance")
    return "\n".join(lines) + "\n"


# --- compute-sanitizer ----------------------------------------------------------------------------

def sanitizer_targets(manifest: dict, plans: dict) -> list[tuple[str, str, Path, Path]]:
    """(op, precision, plan, inputs) for the first op case of every op at each precision: FP32 and
    FP16 take different kernel paths (FMA tiles vs tensor-core MMA for DCNv1/v2 and DRConv)."""
    seen, out = set(), []
    for case in manifest["cases"]:
        if case["kind"] != "op":
            continue
        for precision in PRECISIONS:
            key = (case["op"], precision)
            plan = plans.get((case["id"], precision))
            if key in seen or plan is None or not plan.is_file():
                continue
            seen.add(key)
            out.append((case["op"], precision, plan, Path(case["files"]["inputs"][0])))
    return out


def sanitizer_command(sanitizer: str, targets: Sequence[tuple[str, str, Path, Path]], root: Path) -> list[str]:
    return [sanitizer, "--tool", "memcheck", "--error-exitcode", str(SANITIZER_ERROR_EXIT), "--print-limit", "20",
            sys.executable, "-m", "dynconv.runtime.gpu_check", "run-plans",
            *[f"{plan}={root / inputs}" for _, _, plan, inputs in targets]]


def run_sanitizer(sanitizer: str | None, targets, root: Path, fake: bool, timeout_s: int = 300) -> dict:
    """One memcheck process over all targets. Refusal (no tool, unsupported driver or runtime) is
    reported, not failed; memory errors fail."""
    report = {"targets": [f"{op} {precision}" for op, precision, _, _ in targets]}
    tool = shutil.which(sanitizer) if sanitizer else None
    command = sanitizer_command(tool or sanitizer or "compute-sanitizer", targets, root)
    report["command"] = " ".join(command)
    if fake:
        return report | {"status": "not run (dry run)"}
    if not targets:
        return report | {"status": "no targets (no plan was built)"}
    if tool is None:
        return report | {"status": "refused", "reason": f"{sanitizer!r} not found on PATH"}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return report | {"status": "refused", "reason": f"timed out after {timeout_s} s"}
    text = proc.stdout + proc.stderr
    report["output_tail"] = text[-3000:]
    summary = [ln for ln in text.splitlines() if "ERROR SUMMARY" in ln]
    if proc.returncode == 0:
        status = "clean"
    elif proc.returncode == SANITIZER_ERROR_EXIT:
        status = "errors"
    elif not summary:  # the tool never got to run the application: this runtime refuses it
        status = "refused"
    else:
        status = "application failed"
    return report | {"status": status, "returncode": proc.returncode, "summary": summary}


def run_plans(pairs: Sequence[str]) -> int:
    """Load each plan and run it once on its inputs (the process compute-sanitizer watches)."""
    from .engine import Engine  # noqa: PLC0415

    for pair in pairs:
        plan, _, inputs = pair.partition("=")
        with Engine(plan, plugins="auto") as engine, np.load(inputs) as data:
            fp16 = engine.metadata.precision == "fp16"
            feeds = {s.name: data[s.name].astype(np.float16 if fp16 else np.float32) for s in engine.inputs}
            out = engine.infer(feeds)
            print(f"ran {Path(plan).name}: " + ", ".join(f"{k}{list(v.shape)}" for k, v in out.items()), flush=True)
    return 0


# --- benchmark ------------------------------------------------------------------------------------

def fake_engine_ms(onnx_path: Path, inputs: Sequence[dict], fp16: bool, workdir: Path, runs: int) -> float:
    """Dry-run placeholder: proportional to the input bytes (no meaning beyond exercising the flow)."""
    if not Path(onnx_path).is_file():
        raise FileNotFoundError(onnx_path)
    return 1e-6 * sum(int(np.prod(d["shape"])) for d in inputs) * (0.5 if fp16 else 1.0)


def perfmodel_predictions(root: Path, workdir: Path) -> list[dict] | None:
    """The performance model's rows (issue 11): ``CASES/perfmodel.json`` when the CPU machine prepared
    it (``python -m dynconv.plugins.perfmodel --json CASES/perfmodel.json``), else a run of that module
    here when it exists (once per work directory: the benchmark and ncu steps both ask); None without
    either."""
    prepared, path = root / PERFMODEL_JSON, workdir / PERFMODEL_JSON
    for done in (prepared, path):
        if done.is_file():
            return json.loads(done.read_text())
    if importlib.util.find_spec(PERFMODEL) is None:
        return None
    proc = subprocess.run([sys.executable, "-m", PERFMODEL, "--json", str(path)], capture_output=True, text=True,
                          check=False, timeout=600)
    if proc.returncode != 0 or not path.is_file():
        log.warning("performance model failed (exit %s): %s", proc.returncode, proc.stderr[-500:])
        return None
    return json.loads(path.read_text())


def _build_job(onnx_path: str, plan: str, fp16: bool, cache: str) -> str:
    """Build one static benchmark plan (in a worker); returns "" or the error."""
    from .builder import BuildOptions, build  # noqa: PLC0415

    try:
        build(BuildOptions(Path(onnx_path), Path(plan), plugins="auto", fp16=fp16, timing_cache=Path(cache)))
    except Exception as exc:  # noqa: BLE001 - reported; the timer then builds it itself and fails loudly
        return f"{type(exc).__name__}: {exc}"
    return ""


def prebuild_bench(root: Path, items: Sequence[dict], workdir: Path, jobs: int) -> dict[str, Path]:
    """Build every benchmark plan ``jobs`` at a time (timing stays serial); {onnx path: plan}."""
    plans = {str(root / i["onnx"]): workdir / "bench-plans" / f"{k:03d}.plan" for k, i in enumerate(items)}
    (workdir / "bench-plans").mkdir(parents=True, exist_ok=True)
    fp16 = {str(root / i["onnx"]): i["precision"] == "fp16" for i in items}
    cache = str(workdir / "bench-plans" / "timing.cache")
    with _pool(jobs) as pool:
        errors = list(pool.map(_build_job, list(plans), [str(p) for p in plans.values()], [fp16[o] for o in plans],
                               [cache] * len(plans)))
    for (onnx_path, _), error in zip(plans.items(), errors):
        if error:
            log.error("building %s failed: %s", onnx_path, error)
    return {o: p for o, p in plans.items() if p.is_file()}


def prebuilt_timer(plans: dict[str, Path]):
    """An EngineTimer that times the prebuilt plan of an ONNX (building it when there is none)."""
    from . import bench, bench_plugins  # noqa: PLC0415
    from .engine import Engine  # noqa: PLC0415

    def time_engine(onnx_path: Path, inputs: Sequence[dict], fp16: bool, workdir: Path, runs: int) -> float:
        plan = plans.get(str(onnx_path))
        if plan is None:
            return bench_plugins.engine_gpu_ms(onnx_path, inputs, fp16, workdir, runs)
        with Engine(plan, plugins="auto") as engine:
            return bench.trt_breakdown(engine, bench_plugins.make_feeds(inputs), warmup=20, runs=runs)["gpu_ms"]

    return time_engine


def run_bench(root: Path, workdir: Path, fake: bool, runs: int, precisions: Sequence[str],
              jobs: int = 1) -> tuple[list, dict, dict[str, Path]]:
    """Time the benchmark; returns the results, the run's facts and the plans it prebuilt ({onnx: plan})."""
    from . import bench_plugins  # noqa: PLC0415

    plans: dict[str, Path] = {}
    if fake:
        timer = fake_engine_ms
    elif jobs > 1:
        items = [i for i in bench_plugins.load_manifest(root)["bench"]["items"] if i["precision"] in precisions]
        plans = prebuild_bench(root, items, workdir, jobs)
        timer = prebuilt_timer(plans)
    else:
        timer = bench_plugins.engine_gpu_ms
    results = bench_plugins.run(root, precisions, runs, time_engine=timer)
    predictions = perfmodel_predictions(root, workdir)
    joined = bench_plugins.join_predictions(results, predictions) if predictions else 0
    info = {"runs": runs, "fake": fake, "perfmodel": PERFMODEL if predictions else None, "predictions_joined": joined,
            "eager_timings": (root / bench_plugins.EAGER_TIMINGS).is_file()}
    return results, info, plans


def run_ncu(root: Path, manifest: dict, workdir: Path, fake: bool, ncu: str | None, plans: dict[str, Path]):
    """:mod:`.gpu_ncu` on the FP16 plugin plans of one benchmark shape (built here where the benchmark
    did not prebuild them)."""
    from . import gpu_ncu  # noqa: PLC0415

    shapes = [list(s) for s in manifest["bench"]["shapes"]]
    shape = list(gpu_ncu.DEFAULT_SHAPE) if list(gpu_ncu.DEFAULT_SHAPE) in shapes else shapes[0]
    wanted = gpu_ncu.profiled_items(manifest["bench"]["items"], shape)
    plans = dict(plans)
    for k, item in enumerate(i for i in wanted if not fake and str(root / i["onnx"]) not in plans):
        plan = workdir / "ncu-plans" / f"{k:03d}.plan"
        plan.parent.mkdir(parents=True, exist_ok=True)
        error = _build_job(str(root / item["onnx"]), str(plan), True, str(plan.parent / "timing.cache"))
        if error:
            log.error("building %s for ncu failed: %s", item["onnx"], error)
        else:
            plans[str(root / item["onnx"])] = plan
    plan_targets = gpu_ncu.targets(root, wanted, plans, workdir / "ncu", shape)
    return gpu_ncu.run(ncu, plan_targets, perfmodel_predictions(root, workdir), fake, shape)


def draw_png(bench_json: Path, png: Path) -> str:
    """Draw ``png`` from a ``bench.json``; says why not when matplotlib is missing (trtpy has none:
    .ci/gpu-check draws it with the host's python3, else the CPU machine does after the run)."""
    from . import bench_plugins  # noqa: PLC0415

    data = json.loads(Path(bench_json).read_text())
    fields = {f for f in bench_plugins.Result.__dataclass_fields__}
    results = [bench_plugins.Result(**{k: v for k, v in row.items() if k in fields}) for row in data["rows"]]
    env = data.get("environment", {})
    title = (f"dynconv plugins vs conv/depthwise TensorRT engines vs PyTorch eager - "
             f"{env.get('nvidia_smi', 'GPU ?')}, TensorRT {env.get('tensorrt', '?')}"
             + (" (DRY RUN: fake timings)" if env.get("fake") else ""))
    try:
        bench_plugins.plot(results, png, title)
    except ImportError as exc:
        return f"not drawn here ({exc}): python -m dynconv.runtime.gpu_check plot {bench_json} {png}"
    return str(png)


# --- driver ---------------------------------------------------------------------------------------

def run_check(root: Path, out: Path, steps: Sequence[str], fake: bool, sanitizer: str | None, runs: int,
              precisions: Sequence[str], workdir: Path, jobs: int = 1, ncu: str | None = "ncu") -> dict:
    from . import bench_plugins  # noqa: PLC0415

    manifest = bench_plugins.load_manifest(root)
    plugin_library = os.environ.get("DYNCONV_PLUGIN_LIB")
    summary: dict = {"environment": environment(fake, plugin_library), "steps": list(steps), "seconds": {}}
    plans: dict = {}
    bench_plans: dict[str, Path] = {}
    if "parity" in steps:
        started = time.monotonic()
        rows, plans = run_parity(root, manifest, workdir, fake, jobs)
        summary["parity"] = [r.to_json() for r in rows]
        summary["parity_passed"] = all(r.passed for r in rows)
        atomic_write_text(out / "parity.txt", parity_table(rows))
        summary["seconds"]["parity"] = round(time.monotonic() - started, 1)
    if "sanitize" in steps:
        started = time.monotonic()
        summary["sanitizer"] = run_sanitizer(sanitizer, sanitizer_targets(manifest, plans), root, fake)
        summary["seconds"]["sanitize"] = round(time.monotonic() - started, 1)
    if "bench" in steps and not manifest.get("bench"):
        summary["bench"] = {"skipped": "the manifest has no benchmark models (stage 1 without --bench)"}
    elif "bench" in steps:
        started = time.monotonic()
        results, info, bench_plans = run_bench(root, workdir, fake, runs, precisions, jobs)
        rows = bench_plugins.result_rows(results)
        summary["bench"] = {"info": info, "rows": rows}
        atomic_write_text(out / "bench.json", json.dumps({"environment": summary["environment"], "info": info,
                                                          "rows": rows}, indent=1) + "\n")
        atomic_write_text(out / "bench.txt", bench_plugins.table(results) + "\n")
        summary["bench"]["png"] = draw_png(out / "bench.json", out / "bench.png")
        summary["seconds"]["bench"] = round(time.monotonic() - started, 1)
    if "ncu" in steps and manifest.get("bench"):
        from .gpu_ncu import table as ncu_table  # noqa: PLC0415

        started = time.monotonic()
        report = run_ncu(root, manifest, workdir, fake, ncu, bench_plans)
        summary["ncu"] = report.to_json()
        atomic_write_text(out / "ncu.txt", ncu_table(report))
        summary["seconds"]["ncu"] = round(time.monotonic() - started, 1)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str) + "\n")
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("cases", help="stage-1 directory (or 'run-plans' followed by PLAN=INPUTS pairs)")
    p.add_argument("pairs", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--out", help="results directory (created); default $OUT")
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    p.add_argument("--fake", action="store_true", help="CPU dry run: fake engines and timings")
    p.add_argument("--sanitizer", default="compute-sanitizer", help="compute-sanitizer executable")
    p.add_argument("--ncu", default="ncu", help="Nsight Compute CLI executable")
    p.add_argument("--runs", type=int, default=100, help="timed runs per benchmark engine")
    p.add_argument("--precision", nargs="+", choices=("fp16", "fp32"), default=["fp16", "fp32"])
    p.add_argument("--workdir", help="where plans go (default: a temporary directory)")
    p.add_argument("--jobs", type=int, default=1,
                   help="engines built at once in spawned workers (.ci/gpu-check: 6; timing stays serial)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cases == "run-plans":
        return run_plans(args.pairs)
    if args.cases == "plot":
        if len(args.pairs) != 2:
            print(f"{PROG}: error: plot takes BENCH_JSON PNG", file=sys.stderr)
            return 2
        message = draw_png(Path(args.pairs[0]), Path(args.pairs[1]))
        print(message)
        return 0 if message == args.pairs[1] else 1
    out_dir = args.out or os.environ.get("OUT")
    try:
        if not out_dir:
            raise DynconvError("give --out DIR (or set $OUT)")
        if args.runs < 1:
            raise DynconvError("--runs must be >= 1")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(args.workdir) if args.workdir else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            summary = run_check(Path(args.cases), out, args.steps, args.fake, args.sanitizer, args.runs,
                                args.precision, workdir, args.jobs, args.ncu)
    except DynconvError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    parity_ok = summary.get("parity_passed", True)
    sanitizer = summary.get("sanitizer", {}).get("status", "-")
    print(f"parity {'ok' if parity_ok else 'FAILED'}; sanitizer {sanitizer}; "
          f"bench {len(summary.get('bench', {}).get('rows', []))} rows; ncu {summary.get('ncu', {}).get('status', '-')}; "
          f"results in {out}")
    return 0 if parity_ok and sanitizer != "errors" else 1


if __name__ == "__main__":
    sys.exit(main())
