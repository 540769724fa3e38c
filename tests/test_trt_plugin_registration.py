"""Both ways of loading libdynconv_plugins.so register its creators with the real TensorRT 8.6 library (the CPU
bundle, ~/.cache/trt86): a plain dlopen (LD_PRELOAD, trtexec --plugins, Triton's TensorRT backend) and
IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, plans that carry the plugin library), which must return a
handle that deregisterLibrary releases, after which the library loads again. Each route runs in a fresh process
(registration is process-global) through tests/trt_registry_probe.cpp, built against the library's own headers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import dynconv.plugins as P
import pytest
from dynconv.plugins.build import find_tensorrt
from trt_fields import NVCC, plugin_library

PROBE_SRC = Path(__file__).with_name("trt_registry_probe.cpp")


def _trt_root() -> Path:
    root = find_tensorrt()
    if root is None or not list((root / "lib").glob("libnvinfer.so*")):
        pytest.skip("TensorRT 8.6 bundle (headers and libnvinfer) not found: ~/.cache/trt86 or $TENSORRT_ROOT")
    return root


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None or NVCC is None:
        pytest.skip("no C++ compiler or CUDA toolkit (the TensorRT headers include cuda_runtime_api.h)")
    root = _trt_root()
    exe = tmp_path_factory.mktemp("probe") / "trt_registry_probe"
    cuda_include = next((d for d in (Path(NVCC).resolve().parent.parent / "include", Path("/usr/local/cuda/include"))
                         if (d / "cuda_runtime_api.h").is_file()), None)
    if cuda_include is None:
        pytest.skip("cuda_runtime_api.h not found next to nvcc or in /usr/local/cuda/include")
    cmd = [cxx, "-std=c++17", "-Wall", "-Wextra", "-isystem", str(root / "include"), "-isystem", str(cuda_include),
           str(PROBE_SRC), "-o", str(exe), f"-L{root / 'lib'}", "-lnvinfer", "-ldl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return exe


@cache
def _run(probe: Path, lib: Path, route: str) -> dict:
    env = dict(os.environ, LD_LIBRARY_PATH=str(_trt_root() / "lib"))
    proc = subprocess.run([str(probe), str(lib), route], capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    assert proc.returncode == 0, f"route {route}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def route(probe):
    lib = plugin_library()
    return lambda name: _run(probe, lib, name)


def spec_creators() -> set[str]:
    return {f"{spec.name}/{spec.version}" for spec in P.all_specs()}


def test_dlopen_registers_every_creator(route):
    assert spec_creators() <= set(route("dlopen")["after_dlopen"])


def test_load_library_returns_handle_and_registers_each_creator_once(route):
    out = route("load")
    assert out["handle"], "IPluginRegistry::loadLibrary returned null"
    # Same creators as the dlopen route, none registered twice (a duplicate is listed as "name/version xN").
    assert out["after_load"] == route("dlopen")["after_dlopen"]


def test_deregister_library_removes_creators_and_the_library_loads_again(route):
    out = route("load")
    assert out["after_deregister"] == []
    assert out["reload_handle"], "loadLibrary after deregisterLibrary returned null"
    assert out["after_reload"] == out["after_load"]


def test_load_library_after_dlopen_takes_the_creators_over(route):
    # Already registered at dlopen time by the static objects: loadLibrary must still succeed, every creator
    # registered once, and deregisterLibrary then removes them (the dlopen handle keeps the code loaded).
    out = route("dlopen+load")
    assert out["handle"], "loadLibrary of an already dlopen'ed library returned null"
    assert out["after_load"] == out["after_dlopen"]
    assert out["after_deregister"] == []
