"""Nsight Compute counters of the plugin kernels at one benchmark shape, next to the performance model's.

The CPU performance model (``dynconv.plugins.perfmodel``) predicts each kernel launch from traced
counters; this step measures the same counters on the GPU so the model's error is known (issue 11).
Every FP16 plugin benchmark plan of one shape runs once (``gpu_check run-plans``) under ``ncu``, which
records per launch of a dynconv kernel: duration, global load/store sectors, shared-memory wavefronts and
bank conflicts, the L1TEX data path's wavefronts (global and shared together: the model's ``l1tex``
term) and DRAM bytes. Each measured launch is joined to the model's traced launch of the same op and
CUDA kernel (``perfmodel.json`` rows, ``launches``), in launch order.

A host where ``ncu`` is missing or refuses to profile (no counter permission, unsupported driver) is
reported, not failed.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("dynconv.runtime")

#: our name -> ncu metric (per launch)
METRICS = {
    "time_ns": "gpu__time_duration.sum",
    "global_ld_sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "global_st_sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
    "shared_ld_wavefronts": "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
    "shared_st_wavefronts": "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum",
    "shared_ld_conflicts": "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
    "shared_st_conflicts": "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
    "l1tex_wavefronts": "l1tex__data_pipe_lsu_wavefronts.sum",
    "dram_bytes": "dram__bytes.sum",
}
#: retried alone when ncu rejects a metric name of the full list (names differ across ncu versions)
MINIMAL_METRICS = ("time_ns", "global_ld_sectors", "global_st_sectors", "shared_ld_wavefronts", "shared_st_wavefronts")
KERNEL_FILTER = r"regex:^(deform_conv|dcnv3|ddf|involution|drconv)"
DEFAULT_SHAPE = (1, 256, 100, 152)
NCU_TIMEOUT_S = 300

#: the model's launch labels (trace_api.cpp) -> the CUDA kernel functions they trace; longest prefix first
_MODEL_TO_CUDA = (
    ("dcn_slab", "deform_conv_slab_kernel"), ("dcn_fma", "deform_conv_kernel"), ("dcn_nhwc", "deform_conv_nhwc_kernel"),
    ("dcn_wt", "deform_conv_nhwc_kernel"), ("dcnv3", "dcnv3_kernel"), ("drconv_mma", "drconv_mma_kernel"),
    ("drconv_fma", "drconv_gemm_kernel"), ("drconv_count", "drconv_count_kernel"), ("drconv_scan", "drconv_scan_kernel"),
    ("drconv_scatter", "drconv_scatter_kernel"), ("ddf_pair", "ddf_pair_kernel"), ("ddf_any", "ddf_any_kernel"),
    ("ddf", "ddf_kernel"), ("involution_pair", "involution_pair_kernel"), ("involution_any", "involution_any_kernel"),
    ("involution", "involution_kernel"),
)


def cuda_function(model_kernel: str) -> str | None:
    """The CUDA kernel function a model launch label traces (``dcn_slab_256x128`` -> ``deform_conv_slab_kernel``)."""
    for prefix, function in _MODEL_TO_CUDA:
        if model_kernel == prefix or model_kernel.startswith(prefix + "_"):
            return function
    return None


def function_base(kernel_name: str) -> str:
    """The bare function name of an ncu kernel name, whatever its print style
    (``void dynconv::deform_conv_slab_kernel<...>(...)`` -> ``deform_conv_slab_kernel``)."""
    head = re.split(r"[<(]", kernel_name, maxsplit=1)[0].strip()
    return head.split()[-1].split("::")[-1] if head else kernel_name


@dataclass
class Target:
    op: str       #: the performance model's op label (first word of the benchmark label, e.g. "dcnv2")
    label: str    #: the benchmark label
    plan: Path
    inputs: Path  #: .npz of the plan's inputs


def profiled_items(items: Sequence[dict], shape: Sequence[int]) -> list[dict]:
    """The benchmark items ncu profiles: the FP16 plugin models of ``shape``."""
    return [i for i in items if i["kind"] == "plugin" and i["precision"] == "fp16" and list(i["shape"]) == list(shape)]


def targets(root: Path, items: Sequence[dict], plans: dict[str, Path], workdir: Path,
            shape: Sequence[int] = DEFAULT_SHAPE) -> list[Target]:
    """The :func:`profiled_items` that have a plan, each with an inputs file written to ``workdir``
    (random normals with the recorded mean and std, as the benchmark feeds them)."""
    from .bench_plugins import make_feeds  # noqa: PLC0415

    out = []
    workdir.mkdir(parents=True, exist_ok=True)
    for k, item in enumerate(profiled_items(items, shape)):
        plan = plans.get(str(root / item["onnx"]))
        if plan is None:
            continue
        inputs = workdir / f"ncu-inputs-{k:03d}.npz"
        np.savez(inputs, **make_feeds(item["inputs"]))
        out.append(Target(item["label"].split()[0], item["label"], Path(plan), inputs))
    return out


def command(ncu: str, plan_targets: Sequence[Target], metrics: Sequence[str]) -> list[str]:
    """ncu over one process that runs every target's plan once (TensorRT's own kernels filtered out)."""
    return [ncu, "--csv", "--page", "raw", "--kernel-name-base", "function", "--kernel-name", KERNEL_FILTER,
            "--metrics", ",".join(METRICS[m] for m in metrics), "--target-processes", "all",
            sys.executable, "-m", "dynconv.runtime.gpu_check", "run-plans",
            *[f"{t.plan}={t.inputs}" for t in plan_targets]]


def parse_csv(text: str, metrics: Sequence[str]) -> list[dict]:
    """Launches (in order) from ``ncu --csv --page raw``: ``function`` and a float per collected metric
    (None where ncu printed "n/a"). Lines before the header (the profiled program's own output, ncu's
    ``==PROF==`` messages) are skipped, as is the units row."""
    lines = text.splitlines()
    start = next((k for k, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        return []
    launches = []
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        if not (row.get("ID") or "").strip().isdigit():
            continue  # the units row
        launch: dict = {"function": function_base(row.get("Kernel Name", ""))}
        for name in metrics:
            launch[name] = _number(row.get(METRICS[name]))
        launches.append(launch)
    return launches


def _number(text: str | None) -> float | None:
    try:
        return float((text or "").replace(",", ""))
    except ValueError:
        return None


#: benchmark op label -> the prefix of its CUDA kernel functions (others: the label itself)
_FAMILY = {"dcnv1": "deform_conv", "dcnv2": "deform_conv"}


def assign_launches(plan_targets: Sequence[Target], launches: Sequence[dict], model: dict[str, list[dict]]) -> list[dict]:
    """Attribute the measured launches to the targets and join each with the model's launch of the same
    CUDA function. The plans run in order and each op's launches are distinct functions of its family,
    so a target takes the consecutive launches of its family until one repeats (the next plan's)."""
    rows, k = [], 0
    for target in plan_targets:
        family, seen = _FAMILY.get(target.op, target.op), set()
        while k < len(launches) and launches[k]["function"].startswith(family) and launches[k]["function"] not in seen:
            launch = launches[k]
            seen.add(launch["function"])
            peers = [m for m in model.get(target.op, []) if cuda_function(m["kernel"]) == launch["function"]]
            rows.append({"op": target.op, "label": target.label, **launch, "model": peers[0] if peers else None})
            k += 1
    if k < len(launches):
        log.warning("ncu: %d launches matched no benchmark plan (%s ...)", len(launches) - k, launches[k]["function"])
    return rows


@dataclass
class NcuReport:
    status: str                 #: "measured", "refused", "not run (dry run)" or "no targets"
    command: str
    shape: list[int]
    metrics: list[str]
    rows: list[dict]
    reason: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def model_launches(predictions: Sequence[dict] | None, shape: Sequence[int]) -> dict[str, list[dict]]:
    """The model's FP16 launches per op at ``shape`` (rows of ``perfmodel.json``)."""
    return {p["op"]: p.get("launches", []) for p in predictions or []
            if p["precision"] == "fp16" and list(p["shape"]) == list(shape)}


def run(ncu: str | None, plan_targets: Sequence[Target], predictions: Sequence[dict] | None, fake: bool,
        shape: Sequence[int] = DEFAULT_SHAPE, timeout_s: int = NCU_TIMEOUT_S) -> NcuReport:
    """Profile the targets; a missing or refusing ncu is a status, not an exception."""
    tool = shutil.which(ncu) if ncu else None
    metrics = list(METRICS)
    report = NcuReport("", " ".join(command(tool or ncu or "ncu", plan_targets, metrics)), list(shape), metrics, [])
    if fake:
        report.status = "not run (dry run)"
        return report
    if not plan_targets:
        report.status = "no targets"
        report.reason = f"no FP16 plugin benchmark plan at {'x'.join(map(str, shape))}"
        return report
    if tool is None:
        report.status, report.reason = "refused", f"{ncu!r} not found on PATH"
        return report
    for metrics in (list(METRICS), list(MINIMAL_METRICS)):
        argv = command(tool, plan_targets, metrics)
        report.metrics, report.command = metrics, " ".join(argv)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            report.status, report.reason = "refused", f"timed out after {timeout_s} s"
            return report
        launches = parse_csv(proc.stdout, metrics)
        if launches:
            report.status = "measured"
            if report.reason:
                report.reason = f"the full metric list was refused ({report.reason}); measured the minimal one"
            report.rows = assign_launches(plan_targets, launches, model_launches(predictions, shape))
            return report
        report.reason = _first_error(proc.stdout + proc.stderr) or f"ncu exited {proc.returncode} with no launch"
        log.warning("ncu (%d metrics): %s", len(metrics), report.reason)
    report.status = "refused"
    return report


def _first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if "ERR" in ln or "rror" in ln]
    return lines[0][:300] if lines else ""


def table(report: NcuReport) -> str:
    """Measured next to predicted, per launch: time, global sectors, shared wavefronts, bank conflicts, and
    the L1TEX data path (measured wavefronts vs the model's sectors / 4 + shared wavefronts)."""
    head = (f"ncu at {'x'.join(map(str, report.shape))} FP16: {report.status}"
            + (f" ({report.reason})" if report.reason else ""))
    if not report.rows:
        return head + "\n"
    lines = [head, f"{'op':<10} {'kernel':<26} {'us':>8} {'model us':>9} {'glob sect':>11} {'model':>11} "
                   f"{'smem wf':>11} {'model':>11} {'conflicts':>10} {'l1tex wf':>11} {'model':>11}"]
    for r in report.rows:
        m = r.get("model") or {}
        sectors = _sum(r.get("global_ld_sectors"), r.get("global_st_sectors"))
        shared = _sum(r.get("shared_ld_wavefronts"), r.get("shared_st_wavefronts"))
        conflicts = _sum(r.get("shared_ld_conflicts"), r.get("shared_st_conflicts"))
        l1tex_model = m["global_sectors"] / 4 + m["shared_wavefronts"] if m else None
        lines.append(f"{r['op']:<10} {r['function'][:26]:<26} {_fmt(r.get('time_ns'), 1e-3)} "
                     f"{_fmt(m.get('predicted_us'), 1.0, 9)} {_fmt(sectors)} {_fmt(m.get('global_sectors'))} "
                     f"{_fmt(shared)} {_fmt(m.get('shared_wavefronts'))} {_fmt(conflicts, 1.0, 10)} "
                     f"{_fmt(r.get('l1tex_wavefronts'))} {_fmt(l1tex_model)}")
    return "\n".join(lines) + "\n"


def _sum(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _fmt(value: float | None, scale: float = 1.0, width: int = 11) -> str:
    if value is None:
        return f"{'-':>{width}}"
    v = value * scale
    return f"{v:>{width}.3g}" if abs(v) < 1e4 else f"{v:>{width}.4g}"
