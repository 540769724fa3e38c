"""dynconv-export end to end: model files of every kind, reports, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import onnx
import pytest
import torch

from dynconv.export.cli import main
from dynconv.export.examples import build_example
from dynconv.plugins.involution import Involution
from parity import assert_close_scaled, custom_nodes, run_onnxruntime


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), Involution(16, 3, 2)).eval()


def export(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_example_trt_report_and_nodes(tmp_path, capsys):
    out = tmp_path / "inv.onnx"
    code, stdout, err = export(["--example", "involution", "-o", out, "--dynamic", "batch,height,width"], capsys)
    assert code == 0, err
    assert "plugin nodes: DynconvInvolution x2" in stdout
    assert "core op calls: DynconvInvolution x2" in stdout
    assert "input  input: float ['batch', 3, 'height', 'width']" in stdout
    assert f"wrote {out}" in stdout
    assert len(custom_nodes(onnx.load(out))) == 2


def test_example_reference_matches_pytorch(tmp_path, capsys):
    out = tmp_path / "inv_ref.onnx"
    code, stdout, err = export(["--example", "involution", "-o", out, "--target", "onnx"], capsys)
    assert code == 0, err
    model, x = build_example("involution")
    with torch.no_grad():
        assert_close_scaled(run_onnxruntime(onnx.load(out), [x.numpy()])[0], model(x))


@pytest.mark.parametrize("kind", ["torchscript", "exported_program", "pickle"])
def test_model_file_kinds(tmp_path, capsys, kind):
    model, x = tiny_model(), torch.randn(1, 3, 12, 10)
    path = tmp_path / f"model.{kind}"
    if kind == "torchscript":
        torch.jit.save(torch.jit.trace(model, x), path)
    elif kind == "exported_program":
        torch.export.save(torch.export.export(model, (x,)), path)
    else:
        torch.save(model, path)
    extra = ["--allow-pickle"] if kind == "pickle" else []
    out = tmp_path / "out.onnx"
    code, stdout, err = export([path, "-o", out, "--input-shape", "1x3x12x10", "--target", "onnx", *extra], capsys)
    assert code == 0, err
    with torch.no_grad():
        assert_close_scaled(run_onnxruntime(onnx.load(out), [x.numpy()])[0], model(x))
    code, stdout, err = export([path, "-o", tmp_path / "trt.onnx", "--input-shape", "1x3x12x10", *extra], capsys)
    assert code == 0, err
    assert [n.op_type for n in custom_nodes(onnx.load(tmp_path / "trt.onnx"))] == ["DynconvInvolution"]


def test_channels_last_model_with_nhwc_layout(tmp_path, capsys):
    from dynconv.plugins.dcnv3 import DCNv3

    torch.manual_seed(0)
    path, out = tmp_path / "nhwc.pt2", tmp_path / "nhwc.onnx"
    x, dim = torch.randn(2, 10, 8, 16), torch.export.Dim.DYNAMIC
    program = torch.export.export(DCNv3(16, group=2).eval(), (x,), dynamic_shapes=({0: dim, 1: dim, 2: dim},))
    torch.export.save(program, path)
    argv = [path, "-o", out, "--input-shape", "2x10x8x16", "--layout", "nhwc", "--dynamic", "batch,height,width"]
    code, stdout, err = export(argv, capsys)
    assert code == 0, err
    assert "input  input: float ['batch', 'height', 'width', 16]" in stdout
    assert "plugin nodes: DynconvDCNv3 x1" in stdout
    torch.export.save(torch.export.export(DCNv3(16, group=2).eval(), (x,)), path)
    code, stdout, err = export(argv, capsys)
    assert code == 3 and not stdout
    assert "the torch.export program fixed input 'x' axis 0 (batch) to 2" in err


def test_fp16_export(tmp_path, capsys):
    out = tmp_path / "fp16.onnx"
    code, _, err = export(["--example", "involution", "-o", out, "--fp16"], capsys)
    assert code == 0, err
    model = onnx.load(out)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(init.data_type != onnx.TensorProto.FLOAT for init in model.graph.initializer)


@pytest.mark.slow
def test_fp16_mixed_example_reference_runs_in_onnxruntime(tmp_path, capsys):
    """Issue 14: the fp16 onnx target of the mixed network was written although invalid."""
    import numpy as np

    out = tmp_path / "mixed16.onnx"
    code, _, err = export(["--example", "mixed", "-o", out, "--target", "onnx", "--fp16", "--exporter",
                           "torchscript", "--dynamic", "batch"], capsys)
    assert code == 0, err
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    model, x = build_example("mixed")
    got = run_onnxruntime(proto, [x.numpy().astype(np.float16)])[0].astype(np.float32)
    with torch.no_grad():
        assert_close_scaled(got, model(x), rel=3e-2)


@pytest.mark.parametrize("argv_tail, message", [
    (["missing.pt", "--input-shape", "1x3x8x8"], "model file not found"),
    (["{pickle}", "--input-shape", "1x3x8x8"], "--allow-pickle"),
    (["{corrupt}", "--input-shape", "1x3x8x8", "--allow-pickle"], "is not a model file dynconv can read"),
    (["{pickle}", "--input-shape", "1x3xAx8", "--allow-pickle"], "bad --input-shape"),
    (["{pickle}", "--input-shape", "1x5x8x8", "--allow-pickle"], "the model failed on"),
    (["{plain}", "--input-shape", "1x3x8x8", "--allow-pickle"], "no dynamic-convolution op"),
    (["{pickle}", "--allow-pickle"], "--input-shape is required"),
    (["{pickle}", "--input-shape", "1x3x8x8", "--allow-pickle", "--dynamic", "depth"], "bad --dynamic"),
    (["{pickle}", "--input-shape", "1x3x8x8", "--allow-pickle", "--opset", "7"], "opset 7 is not supported"),
])
def test_bad_input_one_line_error(tmp_path, capsys, argv_tail, message):
    torch.save(tiny_model(), tmp_path / "m.pt")
    torch.save(torch.nn.Conv2d(3, 3, 3), tmp_path / "plain.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file at all")
    files = {"{pickle}": tmp_path / "m.pt", "{corrupt}": tmp_path / "corrupt.pt", "{plain}": tmp_path / "plain.pt"}
    argv = [str(files.get(a, a)) for a in argv_tail]
    out = tmp_path / "out.onnx"
    code, stdout, err = export([*argv, "-o", out], capsys)
    assert code == 3  # EXIT_INPUT
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.onnx*"))


def test_console_script_runs_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dynconv.export.cli", str(tmp_path / "none.pt"), "-o",
                             str(tmp_path / "x.onnx"), "--input-shape", "1x3x8x8"], capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stderr.strip() == f"dynconv-export: error: model file not found: {tmp_path / 'none.pt'}"
