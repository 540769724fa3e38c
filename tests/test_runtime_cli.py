"""check / bench / build CLIs: pass and fail paths, exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_runtime_models import conv_relu

from dynconv.runtime import bench_cli, build_cli, check_cli
from dynconv.runtime.compare import encode_npz


def _one_line_error(capsys, prog: str, fragment: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{prog}: error: "), err
    assert fragment in err[0], err
    assert "Traceback" not in err[0]


def test_check_candidate_pass(tmp_path, capsys):
    ref = conv_relu(tmp_path / "ref.onnx")
    cand = conv_relu(tmp_path / "cand.onnx")
    out = tmp_path / "res.json"
    rc = check_cli.main([str(ref), "--candidate", str(cand), "--shapes", "x:2x3x9x7", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "PASS" in text and "candidate" in text and "x[2, 3, 9, 7]" in text
    res = json.loads(out.read_text())
    assert res["passed"] and res["results"][0]["max_abs"] == 0.0 and res["results"][0]["cosine"] == pytest.approx(1)


def test_check_candidate_fail_exit_1(tmp_path, capsys):
    ref = conv_relu(tmp_path / "ref.onnx")
    cand = conv_relu(tmp_path / "cand.onnx", bias_shift=0.01)  # small but real difference
    rc = check_cli.main([str(ref), "--candidate", str(cand), "--shapes", "x:1x3x8x8"])
    text = capsys.readouterr().out
    assert rc == 1 and "FAIL" in text and "OVER TOLERANCE" in text
    # the same difference passes a looser tolerance
    assert check_cli.main([str(ref), "--candidate", str(cand), "--shapes", "x:1x3x8x8", "--atol-scale", "0.5"]) == 0


def test_check_with_npz_inputs(tmp_path, capsys):
    ref = conv_relu(tmp_path / "ref.onnx")
    feeds = tmp_path / "in.npz"
    feeds.write_bytes(encode_npz({"x": np.ones((1, 3, 5, 5), np.float32)}))
    assert check_cli.main([str(ref), "--candidate", str(ref), "--inputs", str(feeds)]) == 0
    assert "x[1, 3, 5, 5]" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--candidate", "MISSING"], "does not exist"),
        ([], "nothing to check"),
        (["--candidate", "REF", "--shapes", "x:1xbadx3"], "bad shape"),
        (["--candidate", "REF"], "dynamic dims"),
        (["--candidate", "REF", "--inputs", "BADNPZ"], "not a valid .npz"),
        (["--candidate", "REF", "--inputs", "WRONGNPZ"], "unknown input"),
        (["--candidate", "REF", "--shapes", "x:1x3x8x8", "--atol-scale", "-1"], "--atol-scale"),
        (["--engine", "MISSING"], "does not exist"),
    ],
)
def test_check_errors_are_one_line(tmp_path, capsys, extra, fragment):
    ref = conv_relu(tmp_path / "ref.onnx")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    (tmp_path / "wrong.npz").write_bytes(encode_npz({"q": np.zeros((1, 3, 4, 4), np.float32)}))
    subst = {"MISSING": str(tmp_path / "nope.onnx"), "REF": str(ref), "BADNPZ": str(tmp_path / "bad.npz"),
             "WRONGNPZ": str(tmp_path / "wrong.npz")}
    rc = check_cli.main([str(ref), *[subst.get(a, a) for a in extra]])
    assert rc == 3
    _one_line_error(capsys, "dynconv-check", fragment)


def test_check_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        check_cli.main(["--no-such-flag"])
    assert exc.value.code == 2
    _one_line_error(capsys, "dynconv-check", "")


def test_bench_writes_json_and_png(tmp_path, capsys):
    ref = conv_relu(tmp_path / "ref.onnx")
    js, png = tmp_path / "out" / "b.json", tmp_path / "chart.png"
    js.parent.mkdir()
    rc = bench_cli.main([str(ref), "--shapes", "x:2x3x16x16", "--runs", "5", "--warmup", "1",
                         "--no-ort-cuda", "--json", str(js), "--png", str(png)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "ort-cpu" in text and "median ms" in text
    data = json.loads(js.read_text())
    row = data["rows"][0]
    assert row["backend"] == "ort-cpu" and row["runs"] == 5 and row["batch"] == 2
    assert 0 < row["median_ms"] <= row["p99_ms"] and row["throughput"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_bench_errors(tmp_path, capsys):
    ref = conv_relu(tmp_path / "ref.onnx")
    assert bench_cli.main([str(ref), "--runs", "0"]) == 3
    _one_line_error(capsys, "dynconv-bench", "--runs")
    assert bench_cli.main([str(ref), "--runs", "2"]) == 3
    _one_line_error(capsys, "dynconv-bench", "dynamic dims")
    assert bench_cli.main([str(tmp_path / "x.onnx")]) == 3
    _one_line_error(capsys, "dynconv-bench", "does not exist")


def _has_trt_and_gpu() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    from dynconv.runtime.device import device_count

    return device_count() > 0


def test_build_cli_error_paths(tmp_path, capsys):
    onnx_path = conv_relu(tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    cases = [
        ([str(tmp_path / "missing.onnx"), "-o", str(plan)], "does not exist"),
        ([str(onnx_path), "-o", str(plan), "--shapes", "x:1x3,2x3"], "bad --shapes"),
        ([str(onnx_path), "-o", str(plan), "--workspace", "0"], "--workspace"),
        ([str(onnx_path), "-o", str(plan), "--tactic-sources=-CUBLAS,,"], "--tactic-sources"),
        ([str(onnx_path), "-o", str(onnx_path)], "-o must differ"),
    ]
    for argv, fragment in cases:
        assert build_cli.main(argv) == 3
        _one_line_error(capsys, "dynconv-build", fragment)
    if not _has_trt_and_gpu():
        # no TensorRT or no GPU here: one clear line, and no plan or metadata left behind
        assert build_cli.main([str(onnx_path), "-o", str(plan), "--shapes", "x:1x3x8x8,2x3x16x16,4x3x32x32"]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("TensorRT is not installed" in err or "no CUDA device" in err), err
    assert not plan.exists() and not (tmp_path / "m.plan.json").exists()


def test_console_script_entry_points_exist():
    """The pyproject scripts resolve to callables (subprocess: real import path, no torch needed)."""
    code = ("import importlib\n"
            "for m in ('build_cli','check_cli','bench_cli','serve_cli','triton_cli'):\n"
            "    assert callable(importlib.import_module('dynconv.runtime.' + m).main)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
