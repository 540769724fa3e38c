"""The generated C++ tables match the specs; the CUDA kernels compile for every default arch;
the full plugin library builds when TensorRT is present."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import dynconv.plugins as P
from dynconv.plugins import native
from dynconv.plugins.build import SOURCE_DIR, find_tensorrt
from dynconv.plugins.codegen_cpp import generate

ARCHS = ("75", "86", "87", "90")
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else None)
BUILD_DIR = native.REPO_ROOT / "build" / "test-plugins"


def test_codegen_tables_match_specs():
    tables = {t["name"]: t for t in native.op_tables()}
    specs = P.all_specs()
    assert sorted(tables) == sorted(s.name for s in specs)
    for spec in specs:
        t = tables[spec.name]
        assert (t["version"], t["torch_name"], t["n_outputs"]) == (spec.version, spec.torch_name, len(spec.outputs))
        assert t["inputs"] == [[i.name, i.optional] for i in spec.inputs]
        assert [f["name"] for f in t["fields"]] == [a.name for a in spec.onnx_attributes]
        assert "plugin_version" not in [f["name"] for f in t["fields"]]
        for f, a in zip(t["fields"], spec.onnx_attributes):
            assert f["type"] == a.type and f["required"] == a.required, a.name
            assert f["min"] == a.minimum and f["max"] == a.maximum, a.name
            if a.type == "ints":
                assert f["length"] == (a.length or 0)
            if not a.required:
                want = a.default if a.type in ("float", "str") else list(a.default) if a.type == "ints" else [a.default]
                assert f["default"] == want, a.name
            assert f["choices"] == (list(a.choices) if a.choices is not None else None), a.name


def test_codegen_is_deterministic_and_flags_optional_inputs():
    specs = P.all_specs()
    assert generate(specs) == generate(specs)
    text = generate(specs)
    for spec in specs:
        assert f'"{spec.name}"' in text
        for t in spec.optional_inputs:
            assert f'"{t.flag}"' in text


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_cuda_kernels_compile_for_all_archs(tmp_path):
    gen = tmp_path / "gen"
    from dynconv.plugins.codegen_cpp import write_header  # noqa: PLC0415
    write_header(gen / "dynconv_op_tables.h")
    sources = sorted(SOURCE_DIR.glob("*/*_kernel.cu"))
    assert sources, "no CUDA kernels found"
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    procs = []
    for src in sources:
        cmd = [NVCC, "-std=c++17", "-O2", "-Xptxas", "-v", "-c", str(src), "-o", str(tmp_path / (src.stem + ".o")),
               f"-I{SOURCE_DIR}", f"-I{gen}", *gencode]
        procs.append((src, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for src, proc in procs:
        out, _ = proc.communicate(timeout=170)
        assert proc.returncode == 0, f"{src.name} failed to compile:\n{out}"
        # a thread's arrays (accumulators, samples) must stay in registers: no stack frame, no spill
        frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", out)
        assert frames and all(v == "0" for frame in frames for v in frame), f"{src.name}: local memory used:\n{out}"
        obj = tmp_path / (src.stem + ".o")
        cuobjdump = shutil.which("cuobjdump") or str(Path(NVCC).with_name("cuobjdump"))
        if Path(cuobjdump).is_file():
            listing = subprocess.run([cuobjdump, "--list-elf", str(obj)], capture_output=True, text=True)
            assert listing.returncode == 0, listing.stderr
            for a in ARCHS:
                assert f"sm_{a}" in listing.stdout, f"{src.name}: no sm_{a} code"


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_full_plugin_library_builds():
    root = find_tensorrt()
    if root is None:
        pytest.skip("TensorRT not found (TENSORRT_ROOT or ~/.cache/trt86)")
    lib = native.build_plugin_library(BUILD_DIR, tensorrt_root=root, archs=["86"])
    assert lib.is_file()
    syms = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    for entry in ("getPluginCreators", "setLoggerFinder"):
        assert entry in syms, f"{entry} not exported"


@pytest.mark.skipif(NVCC is None, reason="nvcc not found")
def test_launch_kernel_reports_only_its_own_error(tmp_path):
    # Compiles launch_kernel with kernel arguments that need conversion; runs it. Without a GPU every CUDA call
    # fails, so only "the launch reports a failure" can be checked; with one, the launch succeeds while an
    # unrelated error is pending, leaves that error in place, and a failing launch leaves nothing behind.
    exe = tmp_path / "cuda_launch_probe"
    src = Path(__file__).with_name("cuda_launch_probe.cu")
    proc = subprocess.run([NVCC, "-std=c++17", "-arch=compute_75", "-code=compute_75", f"-I{SOURCE_DIR}", str(src),
                           "-o", str(exe)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    device, launched, pending, failed, after_failure = run.stdout.split()
    if device == "no-device":
        assert launched != "cudaSuccess" and failed != "cudaSuccess"
        return
    assert (launched, pending) == ("cudaSuccess", "cudaErrorInvalidDevice")
    assert (failed, after_failure) == ("cudaErrorInvalidConfiguration", "cudaSuccess")


def test_cache_of_another_source_tree_is_dropped(tmp_path):
    from dynconv.plugins.build import drop_foreign_cmake_cache  # noqa: PLC0415

    build = tmp_path / "build"
    (build / "CMakeFiles").mkdir(parents=True)
    cache = build / "CMakeCache.txt"
    cache.write_text(f"CMAKE_HOME_DIRECTORY:INTERNAL={SOURCE_DIR}\n")
    assert not drop_foreign_cmake_cache(build) and cache.is_file()
    cache.write_text(f"CMAKE_HOME_DIRECTORY:INTERNAL={tmp_path / 'old-checkout' / 'trt_plugins_cpp'}\n")
    assert drop_foreign_cmake_cache(build)
    assert not cache.exists() and not (build / "CMakeFiles").exists()
    assert not drop_foreign_cmake_cache(build)
