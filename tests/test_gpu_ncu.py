"""The ncu step of the GPU check on the CPU: every traced launch maps to a CUDA kernel of the sources,
ncu's raw CSV parses into launches joined with the model's, and a missing, refusing or metric-picky ncu
is reported, not failed (fake ncu executables stand in for the tool)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dynconv.runtime import gpu_ncu
from dynconv.runtime.gpu_ncu import METRICS, MINIMAL_METRICS, Target

REPO = Path(__file__).resolve().parents[1]


def _cuda_kernels() -> set[str]:
    text = "\n".join(p.read_text() for p in REPO.glob("trt_plugins_cpp/*/*.cu"))
    return set(re.findall(r"__global__\s+(?:void\s+)?(?:__launch_bounds__\([^)]*\)\s*)?(?:void\s+)?(\w+)\s*\(", text))


@pytest.mark.parametrize("fp16", [True, False])
def test_every_traced_launch_names_a_cuda_kernel_of_the_sources(fp16):
    from dynconv.plugins.perfmodel import trace_op
    from dynconv.plugins.perfmodel.cases import BENCH_OPS

    kernels = _cuda_kernels()
    assert {"deform_conv_slab_kernel", "drconv_mma_kernel", "ddf_pair_kernel", "dcnv3_kernel"} <= kernels
    labels = set()
    for bench in BENCH_OPS:
        for shape in [(1, 64, 12, 20), (2, 16, 9, 9)]:
            inputs, attrs = bench.make(shape, np.random.default_rng(0))
            labels |= {lc.kernel for lc in trace_op(bench.op, inputs, attrs, fp16=fp16, picks=1)}
    assert labels and all(gpu_ncu.cuda_function(k) in kernels for k in labels), \
        {k: gpu_ncu.cuda_function(k) for k in labels}


def test_kernel_names_in_any_print_style():
    for name in ("deform_conv_slab_kernel", "void dynconv::deform_conv_slab_kernel<dynconv::DcSlabTile<256, 128, 64, 64>,"
                 " true, __half>(dynconv::DeformConvParams, int)", "deform_conv_slab_kernel(int, float *)"):
        assert gpu_ncu.function_base(name) == "deform_conv_slab_kernel"


def _csv(launches: list[tuple[str, dict]], metrics=tuple(METRICS)) -> str:
    cols = ["ID", "Process ID", "Process Name", "Kernel Name", "Block Size", "Grid Size"] + [METRICS[m] for m in metrics]
    quote = lambda values: ",".join(f'"{v}"' for v in values)  # noqa: E731
    lines = ["==PROF== Connected to process 4242", "ran a.plan: out[1, 256, 100, 152]", quote(cols),
             quote(["", "", "", "", "", ""] + ["unit"] * len(metrics))]
    for k, (name, values) in enumerate(launches):
        lines.append(quote([k, 4242, "python3", name, "(256, 1, 1)", "(119, 1, 1)"] +
                           [f"{values.get(m, 1):,}" for m in metrics]))
    return "\n".join(lines) + "\n==PROF== Disconnected from process 4242\n"


MODEL = [{"op": "dcnv2", "shape": [1, 256, 100, 152], "precision": "fp16", "launches": [
    {"kernel": "dcn_nhwc", "global_sectors": 100.0, "shared_wavefronts": 50.0, "predicted_us": 1.0},
    {"kernel": "dcn_slab_256x128", "global_sectors": 4000.0, "shared_wavefronts": 7000.0, "predicted_us": 47.7}]},
    {"op": "ddf", "shape": [1, 256, 100, 152], "precision": "fp16", "launches": [
        {"kernel": "ddf_pair", "global_sectors": 800.0, "shared_wavefronts": 0.0, "predicted_us": 4.0}]}]
DCN = [("deform_conv_nhwc_kernel", {"time_ns": 5000}), ("deform_conv_slab_kernel", {"time_ns": 61000,
                                                                                   "global_ld_sectors": 3800})]


def _targets(tmp_path: Path, ops=("dcnv2", "dcnv1", "ddf")) -> list[Target]:
    return [Target(op, f"{op} k3", tmp_path / f"{op}.plan", tmp_path / f"{op}.npz") for op in ops]


def test_raw_csv_parses_and_joins_each_plan_with_the_model(tmp_path):
    launches = gpu_ncu.parse_csv(_csv(DCN + DCN + [("ddf_pair_kernel", {"time_ns": 4100})]), list(METRICS))
    assert [l["function"] for l in launches] == ["deform_conv_nhwc_kernel", "deform_conv_slab_kernel"] * 2 + ["ddf_pair_kernel"]
    assert launches[1]["time_ns"] == 61000 and launches[1]["global_ld_sectors"] == 3800
    rows = gpu_ncu.assign_launches(_targets(tmp_path), launches, gpu_ncu.model_launches(MODEL, [1, 256, 100, 152]))
    assert [(r["op"], r["function"]) for r in rows] == [
        ("dcnv2", "deform_conv_nhwc_kernel"), ("dcnv2", "deform_conv_slab_kernel"),
        ("dcnv1", "deform_conv_nhwc_kernel"), ("dcnv1", "deform_conv_slab_kernel"), ("ddf", "ddf_pair_kernel")]
    assert rows[1]["model"]["kernel"] == "dcn_slab_256x128" and rows[2]["model"] is None  # no dcnv1 model row
    assert rows[4]["model"]["predicted_us"] == 4.0
    text = gpu_ncu.table(gpu_ncu.NcuReport("measured", "ncu ...", [1, 256, 100, 152], list(METRICS), rows))
    assert "deform_conv_slab_kernel" in text and "61" in text and "47.7" in text


def _tool(tmp_path: Path, body: str) -> str:
    path = tmp_path / "ncu"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_measured_run_through_a_stand_in_ncu(tmp_path):
    (tmp_path / "out.csv").write_text(_csv(DCN))
    report = gpu_ncu.run(_tool(tmp_path, f'cat "{tmp_path / "out.csv"}"'), _targets(tmp_path, ("dcnv2",)), MODEL,
                         fake=False)
    assert report.status == "measured" and len(report.rows) == 2 and report.metrics == list(METRICS)
    assert "--kernel-name regex:^(deform_conv|dcnv3|ddf|involution|drconv)" in report.command
    assert f"{tmp_path / 'dcnv2.plan'}={tmp_path / 'dcnv2.npz'}" in report.command
    json.dumps(report.to_json())


def test_a_rejected_metric_name_retries_with_the_minimal_list(tmp_path):
    (tmp_path / "out.csv").write_text(_csv(DCN, MINIMAL_METRICS))
    body = (f'case "$*" in *dram__bytes*) echo "==ERROR== Failed to find metric dram__bytes.sum" >&2; exit 1;; '
            f'*) cat "{tmp_path / "out.csv"}";; esac')
    report = gpu_ncu.run(_tool(tmp_path, body), _targets(tmp_path, ("dcnv2",)), MODEL, fake=False)
    assert report.status == "measured" and report.metrics == list(MINIMAL_METRICS)
    assert report.rows[1]["time_ns"] == 61000 and "l1tex_wavefronts" not in report.rows[1]
    assert report.reason.startswith("the full metric list was refused (==ERROR== Failed to find metric")


@pytest.mark.parametrize("body, reason", [
    ('echo "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU Performance Counters"'
     ' >&2; exit 1', "ERR_NVGPUCTRPERM"),
    ("exit 0", "no launch"),
])
def test_a_refusing_ncu_is_reported_not_failed(tmp_path, body, reason):
    report = gpu_ncu.run(_tool(tmp_path, body), _targets(tmp_path, ("ddf",)), MODEL, fake=False)
    assert report.status == "refused" and reason in report.reason and not report.rows
    assert gpu_ncu.table(report).startswith("ncu at 1x256x100x152 FP16: refused")


def test_missing_tool_no_targets_and_dry_run(tmp_path):
    assert gpu_ncu.run("no-such-ncu-tool", _targets(tmp_path), MODEL, fake=False).status == "refused"
    assert gpu_ncu.run("ncu", [], MODEL, fake=False).status == "no targets"
    assert gpu_ncu.run("ncu", _targets(tmp_path), MODEL, fake=True).status == "not run (dry run)"


def test_targets_take_the_fp16_plugin_plans_of_the_shape_with_their_inputs(tmp_path):
    shape = [1, 16, 8, 8]
    inputs = [{"name": "x", "shape": shape, "dtype": "float16", "mean": 0.5, "std": 2.0}]
    items = [{"kind": "plugin", "label": "ddf k3", "precision": p, "shape": s, "onnx": f"{p}-{k}.onnx", "inputs": inputs}
             for k, (p, s) in enumerate([("fp16", shape), ("fp32", shape), ("fp16", [2, 16, 8, 8])])]
    items.append({"kind": "baseline", "label": "conv3x3", "precision": "fp16", "shape": shape, "onnx": "c.onnx",
                  "inputs": inputs})
    plans = {str(tmp_path / i["onnx"]): tmp_path / f"{i['onnx']}.plan" for i in items}
    got = gpu_ncu.targets(tmp_path, items, plans, tmp_path / "ncu", shape)
    assert [(t.op, t.plan.name) for t in got] == [("ddf", "fp16-0.onnx.plan")]
    with np.load(got[0].inputs) as data:
        assert data["x"].dtype == np.float16 and data["x"].shape == tuple(shape)
