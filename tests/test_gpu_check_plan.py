"""The one-window GPU check on the CPU: the device-call plan (carry sizes <= 64 MiB, <= 8 paths, every
bundle part once, the check last), the fake-engine benchmark flow (JSON, PNG, performance-model join)
and the compute-sanitizer verdicts (clean / errors / refused)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynconv.runtime import gpu_check, gpu_plan
from dynconv.runtime.gpu_plan import CARRY_LIMIT, MAX_CARRY_PATHS, MIB, Item, pack

PART = 56 * MIB


def test_pack_fills_calls_within_limits_and_keeps_the_check_last():
    items = [Item(f"b/part-{k:02d}", PART, "part") for k in range(5)] + [Item("b/small", 3 * MIB, "x")]
    final = [Item("cases", 20 * MIB, "cases"), Item("lib.so", 4 * MIB, "lib")]
    calls = pack(items, final, budget=62 * MIB)
    assert calls[-1][:2] == final
    assert sorted(i.path for c in calls for i in c) == sorted(i.path for i in items + final)
    assert all(sum(i.size for i in c) <= 62 * MIB and len(c) <= MAX_CARRY_PATHS for c in calls)
    assert len(calls) == 6  # five parts alone, the small item rides with the check
    with pytest.raises(ValueError, match="larger than one call"):
        pack([Item("huge", 70 * MIB, "x")], final, 62 * MIB)
    with pytest.raises(ValueError, match="does not fit"):
        pack([], [Item(f"f{k}", 1, "x") for k in range(9)], 62 * MIB)


def _sparse(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)  # no disk blocks: sizes are what the plan reads
    return path


@pytest.fixture
def artifacts(tmp_path):
    """A git repository with a small tracked tree, ignored artifacts: 7 bundle parts, cases, plugin lib."""
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "a.py").write_text("x = 1\n" * 1000)
    (repo / ".gitignore").write_text("build/\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "src/a.py", ".gitignore"], cwd=repo, check=True)
    bundle = repo / "build" / "bundle"
    for k in range(7):
        _sparse(bundle / f"part-{k:02d}", PART if k < 6 else 17 * MIB)
    for name in ("SHA256SUMS", "WHOLE.sha256", "install-bundle.sh"):
        (bundle / name).write_text(name)
    cases = repo / "build" / "cases"
    _sparse(cases / "bench" / "m.onnx", 30 * MIB)
    (cases / "manifest.json").write_text(json.dumps({
        "cases": [{"kind": "op"}] * 16 + [{"kind": "compat"}] * 3 + [{"kind": "network"}],
        "bench": {"items": [{"kind": "baseline"}] * 12 + [{"kind": "plugin"}] * 36}}))
    lib = _sparse(repo / "build" / "libdynconv_plugins.so", 6 * MIB)
    return repo, bundle, cases, lib


def test_plan_carries_every_part_once_within_the_limits(artifacts):
    repo, bundle, cases, lib = artifacts
    calls, info = gpu_plan.plan(repo, bundle, cases, lib)
    tree = info["tree_bytes"]
    assert 0 < tree < MIB
    carried = [i.path for c in calls for i in c.carry]
    assert sorted(p for p in carried if "part-" in p) == [f"build/bundle/part-{k:02d}" for k in range(7)]
    assert all(c.carry_bytes + tree <= CARRY_LIMIT and len(c.carry) <= MAX_CARRY_PATHS for c in calls)
    last = calls[-1]
    assert {"build/cases", "build/libdynconv_plugins.so", "build/bundle/SHA256SUMS"} <= {i.path for i in last.carry}
    assert last.command.startswith("PYTHONUNBUFFERED=1 .ci/gpu-check build/bundle build/cases build/libdynconv")
    assert len(calls) == 7  # six full parts alone; the 17 MiB part rides with the cases and library
    assert info["counts"] == {"op": 19, "network": 1, "bench": 48, "eager": 36}
    assert calls[0].seconds > gpu_plan.START_S and info["total_s"] == pytest.approx(sum(c.seconds for c in calls))
    text = gpu_plan.render(calls, info)
    assert text.count("carries") == 7 and "NO)" not in text and "expected device time" in text


def test_plan_cli_prints_the_plan_and_refuses_missing_artifacts(artifacts, capsys):
    repo, bundle, cases, lib = artifacts
    argv = ["--repo", str(repo), "--bundle", str(bundle), "--cases", str(cases), "--plugins", str(lib)]
    assert gpu_plan.main(argv) == 0
    out = capsys.readouterr().out
    assert "call 7/7" in out and "run   PYTHONUNBUFFERED=1 .ci/gpu-check" in out
    (bundle / "SHA256SUMS").unlink()
    assert gpu_plan.main(argv) == 2
    assert "missing:" in capsys.readouterr().err


def _bench_cases(root: Path, perfmodel: bool) -> None:
    items = []
    for precision in ("fp16", "fp32"):
        for kind, cid, label in (("baseline", "conv3x3", "conv3x3"), ("baseline", "depthwise3x3", "depthwise3x3"),
                                 ("plugin", "b5-drconv", "drconv k(3, 3) s(1, 1) p(1, 1) d(1, 1) m4")):
            onnx_path = root / "bench" / f"{cid}-{precision}.onnx"
            onnx_path.parent.mkdir(parents=True, exist_ok=True)
            onnx_path.write_bytes(b"fake")
            items.append({"id": cid, "kind": kind, "label": label, "op": None, "shape": [1, 16, 8, 8],
                          "precision": precision, "onnx": str(onnx_path.relative_to(root)),
                          "inputs": [{"name": "x", "shape": [1, 16, 8, 8], "dtype": "float32", "mean": 0, "std": 1}]})
    (root / "manifest.json").write_text(json.dumps({"cases": [], "bench": {
        "shapes": [[1, 16, 8, 8]], "precisions": ["fp16", "fp32"], "items": items, "eager_timings": None}}))
    if perfmodel:
        (root / "perfmodel.json").write_text(json.dumps([
            {"op": "drconv", "shape": [1, 16, 8, 8], "precision": "fp16", "predicted_us": 12.5}]))


def test_fake_benchmark_writes_json_png_and_joins_the_performance_model(tmp_path):
    cases, out = tmp_path / "cases", tmp_path / "out"
    _bench_cases(cases, perfmodel=True)
    assert gpu_check.main([str(cases), "--out", str(out), "--fake", "--steps", "bench"]) == 0
    data = json.loads((out / "bench.json").read_text())
    assert data["environment"]["fake"] is True and data["info"]["predictions_joined"] == 1
    rows = {r["precision"]: r for r in data["rows"]}
    assert rows["fp16"]["predicted_ms"] == pytest.approx(0.0125) and rows["fp32"]["predicted_ms"] is None
    assert rows["fp16"]["plugin_ms"] > 0 and rows["fp16"]["vs_conv"] > 0
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bench"]["png"] == str(out / "bench.png") and "parity" not in summary
    assert "ncu" not in summary


def test_fake_check_records_the_ncu_command_without_running_it(tmp_path):
    cases, out = tmp_path / "cases", tmp_path / "out"
    _bench_cases(cases, perfmodel=True)
    assert gpu_check.main([str(cases), "--out", str(out), "--fake", "--steps", "bench", "ncu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ncu"]["status"] == "not run (dry run)" and summary["ncu"]["shape"] == [1, 16, 8, 8]
    assert "l1tex__data_pipe_lsu_wavefronts.sum" in summary["ncu"]["command"]
    assert (out / "ncu.txt").read_text().startswith("ncu at 1x16x8x8 FP16: not run (dry run)")


def _tool(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("body, status", [
    ('echo "========= ERROR SUMMARY: 0 errors"; exit 0', "clean"),
    ('echo "========= Invalid __global__ write"; echo "========= ERROR SUMMARY: 1 error"; exit 86', "errors"),
    ('echo "========= Error: Device not supported" >&2; exit 1', "refused"),
    ('echo "========= ERROR SUMMARY: 0 errors"; exit 1', "application failed"),
])
def test_sanitizer_verdicts(tmp_path, body, status):
    plan = tmp_path / "a.plan"
    plan.write_bytes(b"p")
    targets = [("DynconvDRConv", "fp16", plan, Path("inputs_0.npz"))]
    report = gpu_check.run_sanitizer(_tool(tmp_path, "sanitizer", body), targets, tmp_path, fake=False)
    assert report["status"] == status
    assert "--tool memcheck" in report["command"] and f"{plan}={tmp_path / 'inputs_0.npz'}" in report["command"]


def test_sanitizer_missing_or_dry_run_is_reported_not_failed(tmp_path):
    targets = [("DynconvDDF", "fp32", tmp_path / "a.plan", Path("i.npz"))]
    assert gpu_check.run_sanitizer("no-such-sanitizer-tool", targets, tmp_path, fake=False)["status"] == "refused"
    assert gpu_check.run_sanitizer("compute-sanitizer", targets, tmp_path, fake=True)["status"].startswith("not run")


def test_gpu_check_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dynconv.runtime.gpu_check", str(tmp_path), "--out",
                           str(tmp_path / "o"), "--fake"], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "manifest.json does not exist" in proc.stderr


def test_performance_model_runs_once_per_work_directory(tmp_path, monkeypatch):
    cases, work = tmp_path / "cases", tmp_path / "work"
    cases.mkdir()
    work.mkdir()
    rows = [{"op": "ddf", "shape": [1, 16, 8, 8], "precision": "fp16", "predicted_us": 1.0}]
    (work / gpu_check.PERFMODEL_JSON).write_text(json.dumps(rows))  # what an earlier step's run left
    monkeypatch.setattr(gpu_check.subprocess, "run", lambda *a, **k: pytest.fail("the model ran again"))
    assert gpu_check.perfmodel_predictions(cases, work) == rows
