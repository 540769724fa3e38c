"""dynconv-check on polygraphy: runners, data loaders, RunResults JSON shared with ``polygraphy run``,
the scale-relative max-error rule and the FP16 cosine floor, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from polygraphy.comparator import IterationResult, RunResults
from test_runtime_models import conv_relu, write_fake_plan
from torch_free_env import TorchFreeEnv

from dynconv.runtime import check_cli
from dynconv.runtime.backends import OrtBackend
from dynconv.runtime.data_loaders import load_feeds, synthetic_feeds
from dynconv.runtime.polygraphy_compare import FP16_MIN_COSINE, ScaledMaxErrorCompareFunc, compare_runs
from dynconv.runtime.trt_runner import BackendRunner


def _one_line_error(capsys, fragment: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dynconv-check: error: ") and fragment in err[0], err


# --- interoperability with the polygraphy CLI (run where torch cannot be imported: faster, and the
# --- deploy side must not need it) -------------------------------------------------------------------

@pytest.fixture(scope="module")
def deploy_env(tmp_path_factory) -> TorchFreeEnv:
    return TorchFreeEnv(tmp_path_factory.mktemp("pg") / "venv")


@pytest.fixture(scope="module")
def exported_ref(tmp_path_factory):
    """Reference-flavour export of one DCNv2 op (static shapes): a real dynconv export."""
    from dynconv.export import ExportOptions, export_model
    from dynconv.export.op_models import deform_conv_case

    model, example = deform_conv_case().model(1, 4, 5, 5)
    proto = export_model(model, example, ExportOptions(target="onnx", exporter="torchscript"))
    path = tmp_path_factory.mktemp("exported") / "model_ref.onnx"
    onnx.save(proto, path)
    return path


def test_polygraphy_run_and_dynconv_check_share_inputs_and_results(deploy_env, exported_ref, tmp_path, capsys):
    pg_out, pg_in = tmp_path / "polygraphy_out.json", tmp_path / "polygraphy_in.json"
    proc = deploy_env.tool("polygraphy", "run", str(exported_ref), "--onnxrt", "--save-inputs", str(pg_in),
                           "--save-outputs", str(pg_out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # polygraphy's default data loader and dynconv-check's feed the same arrays: exact agreement
    assert check_cli.main([str(exported_ref), "--load-outputs", str(pg_out)]) == 0
    out = capsys.readouterr().out
    assert "Accuracy Summary" in out and " 0.000e+00 " in out and out.rstrip().endswith(")")
    assert check_cli.main([str(exported_ref), "--load-inputs", str(pg_in), "--load-outputs", str(pg_out)]) == 0
    capsys.readouterr()

    # and polygraphy reads what dynconv-check writes
    ours_in, ours_out = tmp_path / "in.json", tmp_path / "out.json"
    cand = conv_relu(tmp_path / "cand.onnx")
    ref = conv_relu(tmp_path / "ref.onnx")
    assert check_cli.main([str(ref), "--candidate", str(cand), "--shapes", "x:2x3x6x5", "--iterations", "2",
                           "--save-inputs", str(ours_in), "--save-outputs", str(ours_out)]) == 0
    proc = deploy_env.tool("polygraphy", "run", str(ref), "--onnxrt", "--load-inputs", str(ours_in),
                           "--load-outputs", str(ours_out), "--atol", "0", "--rtol", "0")
    assert proc.returncode == 0 and "Passed: 2/2 iterations" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
    loaded = RunResults.load(str(ours_out))
    assert list(loaded.keys()) == ["reference", "candidate"] and len(loaded["candidate"]) == 2
    # dynconv-check reads its own file back: the loaded runs get the file name where names clash
    assert check_cli.main([str(ref), "--load-inputs", str(ours_in), "--load-outputs", str(ours_out)]) == 0
    out = capsys.readouterr().out
    assert f"reference[{ours_out}] vs. reference" in out and "candidate vs. reference" in out


def test_pytorch_model_runs_as_a_polygraphy_runner(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    ref = conv_relu(tmp_path / "ref.onnx", dynamic=False)  # x [2, 3, 8, 8]
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(ref)).graph.initializer}
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(weights["w"]))
        net[0].bias.copy_(torch.tensor(weights["b"]))
    torch.jit.trace(net, torch.zeros(2, 3, 8, 8)).save(str(tmp_path / "net.pt"))
    argv = [str(ref), "--torch-model", str(tmp_path / "net.pt"), "--iterations", "2"]
    assert check_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "torch-eager vs. reference" in out and out.rstrip().splitlines()[-1].startswith("PASS")


# --- data loaders -------------------------------------------------------------------------------------

def test_iterations_save_and_load_inputs(tmp_path, capsys):
    ref = conv_relu(tmp_path / "ref.onnx")
    saved, report = tmp_path / "in.json", tmp_path / "r.json"
    argv = [str(ref), "--candidate", str(ref), "--shapes", "x:1x3x5x4", "--iterations", "3", "--seed", "7"]
    assert check_cli.main([*argv, "--save-inputs", str(saved), "--json", str(report)]) == 0
    assert "x[1, 3, 5, 4] (3 iterations)" in capsys.readouterr().out
    assert json.loads(report.read_text())["iterations"] == 3
    feeds = load_feeds(saved)
    expected = synthetic_feeds(OrtBackend(ref).inputs, {"x": (1, 3, 5, 4)}, seed=7, iterations=3)
    assert len(feeds) == 3 and all(np.array_equal(a["x"], b["x"]) for a, b in zip(feeds, expected, strict=True))
    assert not np.array_equal(feeds[0]["x"], feeds[1]["x"])
    assert check_cli.main([str(ref), "--candidate", str(ref), "--load-inputs", str(saved)]) == 0
    assert "(3 iterations)" in capsys.readouterr().out


def test_data_loader_script(tmp_path, capsys):
    ref = conv_relu(tmp_path / "ref.onnx")
    script = tmp_path / "loader.py"
    script.write_text("import numpy as np\n\n"
                      "def load_data():\n"
                      "    for i in range(2):\n"
                      "        yield {'x': np.full((2, 3, 4, 4), i, np.float32)}\n\n"
                      "def broken():\n"
                      "    raise RuntimeError('no data here')\n")
    assert check_cli.main([str(ref), "--candidate", str(ref), "--data-loader-script", str(script)]) == 0
    assert "x[2, 3, 4, 4] (2 iterations)" in capsys.readouterr().out
    assert check_cli.main([str(ref), "--candidate", str(ref), "--data-loader-script", f"{script}:broken"]) not in (0, 1)
    _one_line_error(capsys, "no data here")


# --- comparison rules ---------------------------------------------------------------------------------

def _runs(reference: np.ndarray, candidate: np.ndarray) -> RunResults:
    return RunResults([("reference", [IterationResult({"y": reference}, runner_name="reference")]),
                       ("cand", [IterationResult({"y": candidate}, runner_name="cand")])])


def _check(reference, candidate, tol, min_cosine=None):
    (row,) = compare_runs(_runs(np.asarray(reference), np.asarray(candidate)), "reference",
                          error_func=ScaledMaxErrorCompareFunc(tol), min_cosine=min_cosine)
    return row


def test_scale_relative_max_error_rule():
    ref = np.array([[4.0, -2.0], [1.0, 0.0]], np.float32)
    assert _check(ref, ref, 1e-4).status == "ok"
    at_bound = ref + np.array([[0, 0], [0, 0.25]], np.float32)  # 0.25 = 1/16 of max|ref| = 4
    row = _check(at_bound, ref, 1 / 16)
    assert row.passed and row.max_abs == pytest.approx(0.25) and row.rel == pytest.approx(1 / 16)
    assert _check(ref, at_bound + np.float32(0.01), 1 / 16).status == "OVER TOLERANCE"
    assert _check(np.zeros(3, np.float32), np.zeros(3, np.float32), 1e-4).passed
    assert not _check(np.zeros(3, np.float32), np.array([0, 1e-9, 0], np.float32), 1e-4).passed
    with_nan = ref.copy()
    with_nan[0, 0] = np.nan
    assert _check(ref, with_nan, 1.0).status == "OVER TOLERANCE"
    assert _check(ref, ref[:1], 1.0).status == "SHAPE MISMATCH"


def test_fp16_cosine_floor():
    rng = np.random.default_rng(0)
    ref = np.zeros(4096, np.float32)
    ref[0] = 100.0
    noisy = ref + rng.uniform(-0.9, 0.9, ref.shape).astype(np.float32)  # max err 0.9 <= 1e-2 x 100
    loose = _check(noisy, ref, 1e-2)
    assert loose.passed and loose.cosine < FP16_MIN_COSINE  # FP32 rule: cosine is reported only
    assert _check(noisy, ref, 1e-2, FP16_MIN_COSINE).status == "LOW COSINE"
    assert _check(ref * np.float32(1 + 1e-4), ref, 1e-2, FP16_MIN_COSINE).passed


# --- runners and errors -------------------------------------------------------------------------------

def test_backend_runner_lifecycle(tmp_path):
    closed = []

    class Tracked(OrtBackend):
        def close(self):
            closed.append(True)

    runner = BackendRunner(lambda: Tracked(conv_relu(tmp_path / "m.onnx")), name="tracked")
    with runner:
        meta = runner.get_input_metadata(use_numpy_dtypes=False)
        assert list(meta.keys()) == ["x"] and tuple(meta["x"].shape) == (None, 3, None, None)
        out = runner.infer({"x": np.ones((1, 3, 4, 4), np.float32)})
        assert list(out) == ["y"] and out["y"].shape == (1, 4, 4, 4)
    assert closed == [True]


def test_engine_on_a_machine_without_tensorrt_is_one_line(tmp_path, capsys):
    ref = conv_relu(tmp_path / "ref.onnx")
    plan = write_fake_plan(tmp_path)
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    assert check_cli.main([str(ref), "--engine", str(plan), "--json", str(tmp_path / "r.json")]) not in (0, 1)
    _one_line_error(capsys, "TensorRT")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--load-outputs", "GARBAGE"], "not a polygraphy RunResults JSON"),
        (["--load-outputs", "OTHER_OUTPUTS"], "has outputs"),
        (["--load-outputs", "TWO_ITERATIONS"], "iteration(s)"),
        (["--candidate", "REF", "--load-inputs", "GARBAGE", "--shapes", "x:1x3x4x4"], "not both"),
        (["--candidate", "REF", "--load-inputs", "GARBAGE"], "not a polygraphy inputs JSON"),
        (["--candidate", "REF", "--shapes", "x:1x3x4x4", "--iterations", "0"], "--iterations"),
        (["--candidate", "REF", "--shapes", "x:1x3x4x4", "--val-range", "1", "0"], "--val-range"),
        (["--candidate", "REF", "--shapes", "x:1x3x4x4", "--save-outputs", "OUT"], "different files"),
        (["--candidate", "REF", "--data-loader-script", "SCRIPT_NOPE"], "nope"),
    ],
)
def test_polygraphy_option_errors_are_one_line(tmp_path, capsys, extra, fragment):
    ref = conv_relu(tmp_path / "ref.onnx")
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "loader.py").write_text("def load_data():\n    return []\n")
    other = RunResults([("other", [IterationResult({"z": np.zeros((1, 4, 4, 4), np.float32)})])])
    other.save(str(tmp_path / "other.json"))
    two = RunResults([("two", [IterationResult({"y": np.zeros((1, 4, 4, 4), np.float32)})] * 2)])
    two.save(str(tmp_path / "two.json"))
    subst = {"GARBAGE": str(tmp_path / "garbage.json"), "OTHER_OUTPUTS": str(tmp_path / "other.json"),
             "TWO_ITERATIONS": str(tmp_path / "two.json"), "REF": str(ref), "OUT": str(tmp_path / "r.json"),
             "SCRIPT_NOPE": f"{tmp_path / 'loader.py'}:nope"}
    argv = [str(ref), "--shapes", "x:1x3x4x4"] if "--load-outputs" in extra else [str(ref)]
    rc = check_cli.main([*argv, *[subst.get(a, a) for a in extra], "--json", str(tmp_path / "r.json")])
    assert rc not in (0, 1)
    _one_line_error(capsys, fragment)
    assert not (tmp_path / "r.json").exists()


def test_check_does_not_import_torch_even_when_installed(tmp_path):
    """polygraphy imports torch whenever it is installed unless dynconv hides it (_polygraphy)."""
    pytest.importorskip("torch")
    ref = conv_relu(tmp_path / "ref.onnx")
    code = ("import sys\nfrom dynconv.runtime import check_cli\n"
            f"rc = check_cli.main([{str(ref)!r}, '--candidate', {str(ref)!r}, '--shapes', 'x:1x3x4x4',"
            f" '--save-outputs', {str(tmp_path / 'o.json')!r}])\n"
            "assert rc == 0, rc\nassert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
