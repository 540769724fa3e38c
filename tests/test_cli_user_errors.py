"""What a new user runs into (issue 14): files named for what they are, outputs that never overwrite
the input or create folders, pickles only with consent, one exit-code scheme, umask-respecting files."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from dynconv.export import ExportOptions, export_model
from dynconv.export.cli import main as export_main
from dynconv.plugins.errors import DynconvError
from dynconv.plugins.involution import Involution
from dynconv.runtime import _cli, bench_cli, build_cli, check_cli
from parity import custom_nodes


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), Involution(16, 3, 2)).eval()


def one_line(capsys, prog: str, fragment: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{prog}: error: ") and fragment in err[0], err
    return err[0]


def small_onnx(path) -> str:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


def _not_a_model(tmp_path, kind: str) -> str:
    path = tmp_path / {"empty": "m.pt", "random": "m.pt", "corrupt_pt2": "m.pt2", "zip": "m.zip", "onnx": "m.onnx"}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(bytes(range(7, 250)))
    elif kind == "corrupt_pt2":
        program = torch.export.export(torch.nn.ReLU(), (torch.randn(2, 3),))
        torch.export.save(program, path)
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    else:
        small_onnx(path)
    return str(path)


@pytest.mark.parametrize("kind, fragment", [
    ("empty", "is empty (0 bytes)"),
    ("random", "is not a model file dynconv can read"),
    ("corrupt_pt2", "corrupt or truncated zip archive"),
    ("zip", "is a zip archive but not a PyTorch model"),
    ("onnx", "is already an ONNX model"),
])
def test_non_model_files_are_named_for_what_they_are(tmp_path, capsys, kind, fragment):
    model = _not_a_model(tmp_path, kind)
    out = tmp_path / "out.onnx"
    assert export_main([model, "-o", str(out), "--input-shape", "1x3x8x8", "--allow-pickle"]) == _cli.EXIT_INPUT
    line = one_line(capsys, "dynconv-export", fragment)
    assert "pickle" not in line.split(fragment)[0]
    assert not out.exists()


@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_export_refuses_to_overwrite_its_input(tmp_path, capsys, monkeypatch, how):
    model = tmp_path / "model.pt"
    torch.save(tiny_model(), model)
    before = model.read_bytes()
    monkeypatch.chdir(tmp_path)
    output = {"same": str(model), "relative": "./sub/../model.pt", "symlink": "link.pt", "hardlink": "hard.pt"}[how]
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        os.symlink(model, tmp_path / "link.pt")
    elif how == "hardlink":
        os.link(model, tmp_path / "hard.pt")
    code = export_main([str(model), "-o", output, "--input-shape", "1x3x8x8", "--allow-pickle"])
    assert code == _cli.EXIT_INPUT
    one_line(capsys, "dynconv-export", "is the input file")
    assert model.read_bytes() == before


def test_build_refuses_a_hardlink_of_its_input(tmp_path, capsys):
    onnx_path = small_onnx(tmp_path / "m.onnx")
    os.link(onnx_path, tmp_path / "m.plan")
    assert build_cli.main([onnx_path, "-o", str(tmp_path / "m.plan")]) == _cli.EXIT_INPUT
    one_line(capsys, "dynconv-build", "-o must differ")


@pytest.mark.parametrize("case, fragment", [
    ("parent_is_file", "is not a directory"),
    ("is_directory", "is a directory"),
    ("missing_dir", "does not exist (dynconv does not create it)"),
    ("unwritable", "is not writable"),
])
def test_output_path_errors_are_user_errors(tmp_path, capsys, case, fragment):
    if case == "unwritable" and os.geteuid() == 0:
        pytest.skip("running as root: every directory is writable")
    (tmp_path / "file").write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    output = {"parent_is_file": tmp_path / "file" / "x.onnx", "is_directory": tmp_path,
              "missing_dir": tmp_path / "no" / "x.onnx", "unwritable": locked / "x.onnx"}[case]
    assert export_main(["--example", "involution", "-o", str(output)]) == _cli.EXIT_INPUT
    one_line(capsys, "dynconv-export", fragment)
    assert not (tmp_path / "no").exists()


def test_json_and_png_never_create_directories(tmp_path, capsys):
    ref = small_onnx(tmp_path / "ref.onnx")
    for flag in ("--json", "--png"):
        target = tmp_path / "new" / "dir" / "out"
        argv = [ref, "--shapes", "x:1x3x8x8", "--runs", "1", "--warmup", "0", "--no-ort-cuda", flag, str(target)]
        assert bench_cli.main(argv) == _cli.EXIT_INPUT
        one_line(capsys, "dynconv-bench", "does not exist (dynconv does not create it)")
    assert check_cli.main([ref, "--candidate", ref, "--shapes", "x:1x3x8x8", "--json",
                           str(tmp_path / "new" / "r.json")]) == _cli.EXIT_INPUT
    one_line(capsys, "dynconv-check", "does not exist")
    assert not (tmp_path / "new").exists()
    with pytest.raises(DynconvError, match="does not exist"):
        _cli.atomic_write_text("/no-such-dynconv-dir/x.json", "{}")
    assert not os.path.exists("/no-such-dynconv-dir")


def test_zero_sized_shapes_are_refused(tmp_path, capsys):
    ref = small_onnx(tmp_path / "ref.onnx")
    assert check_cli.main([ref, "--candidate", ref, "--shapes", "x:0x3x8x8"]) == _cli.EXIT_INPUT
    one_line(capsys, "dynconv-check", "every dim must be >= 1")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _cli.atomic_write_bytes(tmp_path / "f.bin", b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == mode


def test_check_needs_allow_pickle_and_loads_every_kind(tmp_path, capsys):
    model, x = tiny_model(), torch.randn(1, 3, 8, 8)
    ref = tmp_path / "ref.onnx"
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter="torchscript"))
    onnx.save(proto, ref)
    torch.save(model, tmp_path / "m.pt")
    torch.jit.save(torch.jit.trace(model, x), tmp_path / "traced.pt")
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "m.pt2")
    base = [str(ref), "--shapes", "input:1x3x8x8", "--torch-model"]
    assert check_cli.main([*base, str(tmp_path / "m.pt")]) == _cli.EXIT_INPUT
    one_line(capsys, "dynconv-check", "pass --allow-pickle".replace("pass", "Pass"))
    for name, extra in (("m.pt", ["--allow-pickle"]), ("traced.pt", []), ("m.pt2", [])):
        assert check_cli.main([*base, str(tmp_path / name), *extra]) == _cli.EXIT_OK, capsys.readouterr()
        captured = capsys.readouterr()
        assert "PASS" in captured.out and captured.err == "", captured.err


def test_traced_model_failure_names_the_cause(tmp_path, capsys):
    model = tiny_model()
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 8, 8)), tmp_path / "traced.pt")
    assert export_main([str(tmp_path / "traced.pt"), "-o", str(tmp_path / "o.onnx"),
                        "--input-shape", "1x5x8x8"]) == _cli.EXIT_INPUT
    line = one_line(capsys, "dynconv-export", "given input shape 1x5x8x8")
    assert "to have 3 channels, but got 5 channels" in line


def test_exported_program_failure_gives_expected_and_given_shapes(tmp_path, capsys):
    torch.export.save(torch.export.export(tiny_model(), (torch.randn(2, 3, 8, 8),)), tmp_path / "m.pt2")
    assert export_main([str(tmp_path / "m.pt2"), "-o", str(tmp_path / "o.onnx"),
                        "--input-shape", "1x5x8x8"]) == _cli.EXIT_INPUT
    one_line(capsys, "dynconv-export", "expected input shape 2x3x8x8, given 1x5x8x8")


class MainScriptNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inv = Involution(16, 3, 1)

    def forward(self, x):
        return self.inv(x)


def test_pickled_class_from_main_explains_importability(tmp_path, capsys, monkeypatch):
    main_module = sys.modules["__main__"]
    monkeypatch.setattr(MainScriptNet, "__module__", "__main__")
    monkeypatch.setattr(main_module, "MainScriptNet", MainScriptNet, raising=False)
    torch.save(MainScriptNet(), tmp_path / "m.pt")
    monkeypatch.delattr(main_module, "MainScriptNet")
    assert export_main([str(tmp_path / "m.pt"), "-o", str(tmp_path / "o.onnx"), "--input-shape", "1x16x8x8",
                        "--allow-pickle"]) == _cli.EXIT_INPUT
    line = one_line(capsys, "dynconv-export", "pickles class MainScriptNet from the saving script's __main__")
    assert "must be importable" in line and "TorchScript" in line


_BLOCK_TORCH = ("import sys\n"
                "class Block:\n"
                "    def find_spec(self, name, path=None, target=None):\n"
                "        if name == 'torch' or name.startswith('torch.'):\n"
                "            raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
                "sys.meta_path.insert(0, Block())\n"
                "from dynconv.export.cli import main\n"
                "sys.exit(main(sys.argv[1:]))\n")


def test_export_help_and_errors_without_torch(tmp_path):
    help_run = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, "--help"], capture_output=True, text=True,
                              timeout=120)
    assert help_run.returncode == 0, help_run.stderr
    assert "usage: dynconv-export" in help_run.stdout and "--allow-pickle" in help_run.stdout
    run = subprocess.run([sys.executable, "-c", _BLOCK_TORCH, "m.pt", "-o", str(tmp_path / "o.onnx")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == _cli.EXIT_INPUT
    assert run.stderr.strip().splitlines() == [
        "dynconv-export: error: " + __import__("dynconv.export.cli", fromlist=["TORCH_MISSING"]).TORCH_MISSING]


@pytest.mark.parametrize("module, install", [
    ("uvicorn", 'pip install "dynconv[serve]"'),
    ("fastapi", 'pip install "dynconv[serve]"'),
    ("matplotlib", 'pip install "dynconv[bench]"'),
    ("tensorrt", 'pip install "dynconv[tensorrt]"'),
    ("onnx_graphsurgeon", "pip install onnx-graphsurgeon"),
])
def test_missing_dependency_names_the_extra(capsys, module, install):
    def body(args):
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)

    assert _cli.run_main("dynconv-x", body, _cli.make_parser("dynconv-x", ""), []) == _cli.EXIT_INPUT
    assert one_line(capsys, "dynconv-x", install).endswith(f"missing dependency {module}: {install}")


def test_exit_codes_are_shared(tmp_path, capsys, monkeypatch):
    import dynconv.export.cli as export_cli
    from dynconv.plugins import build as plugin_build

    with pytest.raises(SystemExit) as usage:
        export_main(["--no-such-flag"])
    assert usage.value.code == _cli.EXIT_USAGE
    with pytest.raises(SystemExit) as usage:
        check_cli.main(["--no-such-flag"])
    assert usage.value.code == _cli.EXIT_USAGE
    capsys.readouterr()

    def broken(args):
        raise ValueError("a bug")

    monkeypatch.setattr(export_cli, "run", broken)
    assert export_main(["--example", "involution", "-o", str(tmp_path / "x.onnx")]) == _cli.EXIT_INTERNAL
    one_line(capsys, "dynconv-export", "internal error: ValueError: a bug (rerun with --debug")
    assert _cli.run_main("dynconv-x", broken, _cli.make_parser("dynconv-x", ""), []) == _cli.EXIT_INTERNAL
    one_line(capsys, "dynconv-x", "internal error: ValueError: a bug")
    monkeypatch.setattr(plugin_build, "find_tensorrt", lambda root: None)
    monkeypatch.setattr(plugin_build.shutil, "which", lambda name: "/usr/bin/nvcc")
    assert plugin_build.main(["--tensorrt-root", str(tmp_path / "none")]) == _cli.EXIT_INPUT
    one_line(capsys, "dynconv-build-plugins", "TensorRT not found")


def test_export_model_maps_authors_modules_by_default():
    from test_official_modules import DCNv3_pytorch

    torch.manual_seed(0)
    x = torch.randn(1, 6, 5, 16)
    model = torch.nn.Sequential(torch.nn.Identity(), DCNv3_pytorch(16, group=2)).eval()
    with pytest.raises(DynconvError, match=r"unmapped module classes .*DCNv3_pytorch .*mapping is off"):
        export_model(model, (x,), ExportOptions(target="trt", exporter="torchscript", map_modules=False))
    proto = export_model(model, (x,), ExportOptions(target="trt", exporter="torchscript"))
    assert [n.op_type for n in custom_nodes(proto)] == ["DynconvDCNv3"]


def _torchvision_ops():
    try:
        import torchvision.ops
    except Exception as exc:  # noqa: BLE001 - absent, or built for another torch
        pytest.skip(f"torchvision is not importable here ({type(exc).__name__}: {exc}); pip install torchvision")
    return torchvision.ops


class TorchvisionNet(torch.nn.Module):
    def __init__(self, ops) -> None:
        super().__init__()
        self.offset = torch.nn.Conv2d(8, 18, 3, padding=1)
        self.dcn = ops.DeformConv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.dcn(x, self.offset(x))


def test_torchvision_ops_in_saved_models(tmp_path, capsys):
    ops = _torchvision_ops()
    model, x = TorchvisionNet(ops).eval(), torch.randn(2, 8, 6, 6)
    torch.jit.save(torch.jit.trace(model, x), tmp_path / "traced.pt")
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "m.pt2")
    # a fresh process: loading must import torchvision's ops itself
    code = ("import sys\nfrom dynconv.export.loading import load_model\n"
            "load_model(sys.argv[1])\nprint(type(load_model(sys.argv[2])).__name__)\n")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "traced.pt"), str(tmp_path / "m.pt2")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ExportedProgram", run.stderr[-2000:]

    from dynconv.export.loading import load_model

    program = load_model(tmp_path / "m.pt2")
    assert "torchvision" not in str(program.graph) and "dynconv.deform_conv2d" in str(program.graph)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), atol=1e-4, rtol=0)
    out = tmp_path / "tv.onnx"
    assert export_main([str(tmp_path / "traced.pt"), "-o", str(out), "--input-shape", "2x8x6x6"]) == _cli.EXIT_INPUT
    one_line(capsys, "dynconv-export", "calls torchvision::deform_conv2d")
    assert export_main([str(tmp_path / "m.pt2"), "-o", str(out), "--input-shape", "2x8x6x6"]) == _cli.EXIT_OK
    assert "plugin nodes: DynconvDeformConv2d x1" in capsys.readouterr().out
    assert [n.op_type for n in custom_nodes(onnx.load(out))] == ["DynconvDeformConv2d"]
