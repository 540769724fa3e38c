"""Deploy without torch: pyproject's base dependencies are the deploy side's, and in an environment
where the export extra (torch, onnxscript, onnx-graphsurgeon) cannot be imported, dynconv-check,
dynconv-serve and dynconv-triton-repo work (see torch_free_env for how that environment is made)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_runtime_models import conv_relu, write_fake_plan
from torch_free_env import ROOT, TorchFreeEnv, export_only_import_names, pyproject, requirement_name

EXPORT_DISTS = {"torch", "onnxscript", "onnx-graphsurgeon"}


@pytest.fixture(scope="module")
def deploy_env(tmp_path_factory) -> TorchFreeEnv:
    return TorchFreeEnv(tmp_path_factory.mktemp("deploy") / "venv")


def _extra(name: str) -> set[str]:
    return {requirement_name(r) for r in pyproject()["project"]["optional-dependencies"][name]}


def test_base_dependencies_are_the_deploy_side():
    base = {requirement_name(r) for r in pyproject()["project"]["dependencies"]}
    assert not base & EXPORT_DISTS, base
    assert {"numpy", "onnx", "onnxruntime", "polygraphy", "fastapi", "uvicorn", "prometheus-client"} <= base
    assert EXPORT_DISTS <= _extra("export")
    dev = pyproject()["project"]["optional-dependencies"]["dev"]
    assert any(r.replace(" ", "").startswith("dynconv[") and "export" in r for r in dev), dev  # tests export too


def _module_level_imports(path: Path) -> set[str]:
    """Top-level names of absolute imports executed when ``path`` is imported (not inside functions
    or ``if TYPE_CHECKING``)."""
    names = set()

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                names.update(a.name.partition(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return names


def test_runtime_module_imports_are_base_dependencies():
    """Every third-party package a runtime module imports at load time is a base dependency."""
    base = {requirement_name(r) for r in pyproject()["project"]["dependencies"]}
    dists = importlib.metadata.packages_distributions()
    stdlib = set(__import__("sys").stdlib_module_names) | {"__future__"}
    offenders = {}
    for path in sorted((ROOT / "runtime").glob("*.py")):
        for name in _module_level_imports(path) - stdlib - {"dynconv"}:
            provided = {d.lower().replace("_", "-") for d in dists.get(name, [name])}
            if not provided & base:
                offenders[f"{path.name}: {name}"] = sorted(provided)
    assert not offenders, f"module-level imports outside the base dependencies: {offenders}"


def test_environment_blocks_the_export_extra(deploy_env):
    assert {"torch", "onnxscript", "onnx_graphsurgeon"} <= export_only_import_names()
    for module in ("torch", "onnxscript", "onnx_graphsurgeon"):
        proc = deploy_env.python(f"import {module}")
        assert proc.returncode != 0 and "without dynconv[export]" in proc.stderr, (module, proc.stderr[-500:])


def test_every_runtime_module_imports_without_torch(deploy_env):
    code = ("import importlib, pkgutil, sys\nimport dynconv.runtime as r\n"
            "for m in pkgutil.iter_modules(r.__path__):\n    importlib.import_module('dynconv.runtime.' + m.name)\n"
            "assert 'torch' not in sys.modules\nprint('imported', len(list(pkgutil.iter_modules(r.__path__))))\n")
    proc = deploy_env.python(code)
    assert proc.returncode == 0 and proc.stdout.startswith("imported"), proc.stderr[-2000:]


def test_check_without_torch(deploy_env, tmp_path):
    ref, cand = conv_relu(tmp_path / "ref.onnx"), conv_relu(tmp_path / "cand.onnx", bias_shift=0.05)
    proc = deploy_env.tool("dynconv-check", str(ref), "--candidate", str(ref), "--shapes", "x:1x3x8x8",
                           "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0 and proc.stdout.rstrip().splitlines()[-1].startswith("PASS"), proc.stdout + proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["max_abs"] == 0.0
    proc = deploy_env.tool("dynconv-check", str(ref), "--candidate", str(cand), "--shapes", "x:1x3x8x8")
    assert proc.returncode == 1 and "OVER TOLERANCE" in proc.stdout, proc.stdout + proc.stderr
    # the PyTorch reference needs the export extra: one line naming it, no traceback
    proc = deploy_env.tool("dynconv-check", str(ref), "--example", "mixed", "--shapes", "x:1x3x8x8")
    assert proc.returncode not in (0, 1) and "torch" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(port: int) -> bool:
    """True when the server answers 200 on KServe v2's readiness endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def test_serve_without_torch(deploy_env, tmp_path):
    model = conv_relu(tmp_path / "m.onnx")
    port = _free_port()
    proc = subprocess.Popen(deploy_env.tool_argv("dynconv-serve", str(model), "--host", "127.0.0.1",
                                                 "--port", str(port)),
                            env=deploy_env.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, deadline = False, time.monotonic() + 60
        while not ready and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            ready = _ready(port)
        assert ready, f"dynconv-serve never became ready (rc={proc.poll()}): " + (
            proc.stderr.read()[-2000:] if proc.poll() is not None else "still starting after 60 s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_triton_repo_without_torch(deploy_env, tmp_path):
    plan = write_fake_plan(tmp_path)
    proc = deploy_env.tool("dynconv-triton-repo", str(plan), "-o", str(tmp_path / "repo"), "--name", "net")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "repo" / "net" / "config.pbtxt").is_file()
    assert (tmp_path / "repo" / "net" / "1" / "model.plan").read_bytes() == plan.read_bytes()
