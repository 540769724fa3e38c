"""A deploy environment for tests: a venv that sees this interpreter's packages (its site dirs are
added by a ``.pth`` file, so nothing is downloaded and it takes a second) but in which the packages
of the ``export`` extra (torch, onnxscript, onnx-graphsurgeon) cannot be imported: the same ``.pth``
installs an import blocker first.

What it proves: the deploy side (``dynconv.runtime``, its CLIs, polygraphy) runs with only the base
dependencies importable. What it cannot prove, and ``test_deploy_without_torch`` checks instead from
pyproject.toml: that ``pip install dynconv`` pulls in no torch."""

from __future__ import annotations

import importlib.metadata
import os
import re
import site
import subprocess
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_BLOCKER = '''"""Installed by tests/torch_free_env.py: the export extra's packages are absent here."""
import site
import sys

BLOCKED = frozenset({blocked!r})


class _ExportExtraBlocker:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (deploy environment without dynconv[export])",
                                      name=name)
        return None


sys.meta_path.insert(0, _ExportExtraBlocker())
for _dir in {site_dirs!r}:  # the packages of the interpreter that made this venv (with their .pth files)
    site.addsitedir(_dir)
'''

# runs a console script the way its generated wrapper would: from the installed entry point metadata
_RUN_ENTRY_POINT = ("import sys\nfrom importlib.metadata import entry_points\n"
                    "(ep,) = entry_points(group='console_scripts', name=sys.argv[1])\n"
                    "sys.argv = sys.argv[1:]\nsys.exit(ep.load()())\n")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_name(req: str) -> str:
    """The normalized distribution name of a requirement (``onnx_graphsurgeon>=0.5`` -> ``onnx-graphsurgeon``)."""
    return re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def export_only_import_names() -> set[str]:
    """Top-level import names provided by the export extra's distributions (e.g. torch, onnxscript)."""
    meta = pyproject()["project"]
    export = {requirement_name(r) for r in meta["optional-dependencies"]["export"]}
    base = {requirement_name(r) for r in meta["dependencies"]}
    names = set()
    for module, dists in importlib.metadata.packages_distributions().items():
        normalized = {d.lower().replace("_", "-") for d in dists}
        if normalized & (export - base) and module.isidentifier():
            names.add(module)
    return names


class TorchFreeEnv:
    """The venv at ``path``: ``python(...)`` runs code there, ``tool(name, ...)`` a console script."""

    def __init__(self, path: Path) -> None:
        self.path = path
        venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(path)
        self.exe = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        purelib = Path(subprocess.check_output(
            [str(self.exe), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
        purelib.mkdir(parents=True, exist_ok=True)
        (purelib / "_dynconv_no_export.py").write_text(
            _BLOCKER.format(blocked=sorted(export_only_import_names()), site_dirs=_site_dirs()))
        (purelib / "_dynconv_no_export.pth").write_text("import _dynconv_no_export\n")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONPATH"] = str(ROOT / "tests")  # the tests' onnx.helper model builders
        return env

    def python(self, code: str, *args: str, timeout: float = 120, cwd: Path | None = None):
        return subprocess.run([str(self.exe), "-c", code, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env(), cwd=cwd)

    def tool_argv(self, name: str, *args: str) -> list[str]:
        return [str(self.exe), "-c", _RUN_ENTRY_POINT, name, *args]

    def tool(self, name: str, *args: str, timeout: float = 120, cwd: Path | None = None):
        return subprocess.run(self.tool_argv(name, *args), capture_output=True, text=True, timeout=timeout,
                              env=self.env(), cwd=cwd)


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        dirs.append(site.getusersitepackages())
    return dirs
