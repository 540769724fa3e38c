"""libdynconv_plugins.so compiles without warnings (-Wall -Wextra -Werror; TensorRT's own deprecations aside) and
links (-Wl,--no-undefined) against the headers of every TensorRT version in trt_versions.VERSIONS, with a stand-in
libnvinfer generated from each version's headers. The CUDA kernels and the op code include no TensorRT header:
they are built once and linked into every version's library (-DDYNCONV_PREBUILT_DIR). Nothing here runs TensorRT: the real 8.6
library is exercised by test_trt_plugin_registration and the trtpy tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from dynconv.plugins import native, trt_versions
from dynconv.plugins.build import configure_and_build, find_tensorrt

NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else None)
BUILD_DIR = native.REPO_ROOT / "build" / "test-trt-versions"
SHARED_BUILD_DIR = native.REPO_ROOT / "build" / "test-plugins"  # trt_fields.plugin_library, test_cpp_build
#: Entry points that IPluginRegistry::loadLibrary looks up, per major.minor (8.5 has no loadLibrary).
ENTRY_POINTS = {(8, 5): set(), (8, 6): {"setLoggerFinder", "getPluginCreators"}}
ENTRY_POINTS_10 = {"setLoggerFinder", "getPluginCreators", "getCreators"}


def _header_source() -> tuple[Path | None, dict[str, Path]]:
    """(TensorRT clone, {version: include dir from $DYNCONV_TRT_HEADERS})."""
    items = [i for i in os.environ.get(trt_versions.ENV_HEADERS, "").split(",") if i]
    return trt_versions.find_git(), trt_versions.parse_header_dirs(items)


@pytest.fixture(scope="module")
def sdk_roots() -> dict[str, Path]:
    if NVCC is None or shutil.which("cmake") is None:
        pytest.skip("nvcc or cmake not found: cannot build the plugin library")
    git_dir, header_dirs = _header_source()
    if git_dir is None and set(header_dirs) != set(trt_versions.VERSIONS):
        pytest.skip(f"TensorRT headers not available: set ${trt_versions.ENV_GIT} to an NVIDIA/TensorRT clone "
                    f"or ${trt_versions.ENV_HEADERS}=VERSION=INCLUDE_DIR,... for {', '.join(trt_versions.VERSIONS)}")
    return trt_versions.prepare(BUILD_DIR / "sdk", list(trt_versions.VERSIONS), git_dir=git_dir,
                                header_dirs=header_dirs)


@pytest.fixture(scope="module")
def prebuilt() -> Path:
    """Build dir with libdynconv_kernels.a and libdynconv_ops.a, built once for the whole matrix: the build dir that
    the other plugin tests share (sm_86), so the matrix adds no kernel compile when they ran first. Neither target
    has a TensorRT include directory, so a kernel or op file that included a TensorRT header (and could then differ
    per version) would fail to build here unless TensorRT sits on the compiler's default include path."""
    build = configure_and_build(SHARED_BUILD_DIR, tensorrt_root=find_tensorrt(), archs=["86"],
                                targets=["dynconv_kernels", "dynconv_ops"], jobs=2)
    for part in ("kernels", "ops"):
        assert (build / f"libdynconv_{part}.a").is_file()
    return build


def _exports(lib: Path) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.split("\n") if line.strip()}


def _needed(lib: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    return [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


@pytest.mark.parametrize("version", list(trt_versions.VERSIONS))
def test_plugin_library_builds_against(version, sdk_roots, prebuilt):
    root = sdk_roots[version]
    major, minor = trt_versions.header_version(root / "include")
    build = configure_and_build(BUILD_DIR / version, tensorrt_root=root, targets=["dynconv_plugins"], jobs=2,
                                defines={"DYNCONV_PREBUILT_DIR": str(prebuilt),
                                         "DYNCONV_WARNINGS_AS_ERRORS": "ON"})
    lib = build / native.PLUGIN_LIB_NAME
    assert lib.is_file()
    assert f"libnvinfer.so.{major}" in _needed(lib)
    want = ENTRY_POINTS_10 if major >= 10 else ENTRY_POINTS[(major, minor)]
    entry = {"setLoggerFinder", "getPluginCreators", "getCreators"} & _exports(lib)
    assert entry == want, f"TensorRT {version}: exported entry points {sorted(entry)}, expected {sorted(want)}"


def test_stub_library_declares_what_plugins_import(sdk_roots):
    # The stand-in exports exactly the extern "C" functions of the headers, so a link against it fails for any
    # libnvinfer function that the version does not have.
    root = sdk_roots["8.5.3"]
    names = set(trt_versions.libnvinfer_functions(root / "include"))
    assert {"getPluginRegistry", "getLogger"} <= names
    assert _exports(root / "lib" / "libnvinfer.so") >= names


def test_bad_header_arguments_are_one_line_errors(tmp_path, capsys):
    assert trt_versions.main(["--out", str(tmp_path), "--headers", "9.9=/nowhere"]) == 1
    assert trt_versions.main(["--out", str(tmp_path), "--headers", "8.5.3"]) == 1
    assert trt_versions.main(["--out", str(tmp_path), "--headers", f"8.5.3={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("trt_versions: error: ") for line in err)
