"""``dynconv-build-plugins``: configure and build the C++/CUDA plugin library with CMake.

    dynconv-build-plugins [--tensorrt-root DIR] [--arch 86,87] [--build-dir DIR] [--cpu-reference-only]

Prints the path of the built library (``libdynconv_plugins.so``, or ``libdynconv_cpuref.so`` with
``--cpu-reference-only``). Errors are one line (DynconvError).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import DynconvError

SOURCE_DIR = Path(__file__).resolve().parent.parent / "trt_plugins_cpp"
DEFAULT_ARCHS = ("75", "86", "87", "90")
_TRT_CANDIDATES = (Path.home() / ".cache" / "trt86", Path("/opt/trt86"), Path("/usr/local/tensorrt"), Path("/usr"))


def detect_archs() -> list[str]:
    """Compute capabilities of the visible GPUs (nvidia-smi), else the default list."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30, check=True).stdout
            caps = sorted({line.strip().replace(".", "") for line in out.splitlines() if line.strip()})
            if caps and all(c.isdigit() for c in caps):
                return caps
        except (subprocess.SubprocessError, OSError):
            pass
    return list(DEFAULT_ARCHS)


def find_tensorrt(explicit: str | None = None) -> Path | None:
    """A TensorRT root with include/NvInfer.h: explicit > $TENSORRT_ROOT > known install places."""
    if explicit:
        root = Path(explicit)
        if not (root / "include" / "NvInfer.h").is_file():
            raise DynconvError(f"--tensorrt-root {explicit!r} has no include/NvInfer.h")
        return root
    candidates = [Path(os.environ["TENSORRT_ROOT"])] if os.environ.get("TENSORRT_ROOT") else []
    for root in [*candidates, *_TRT_CANDIDATES]:
        if (root / "include" / "NvInfer.h").is_file() or (root / "include" / "x86_64-linux-gnu" / "NvInfer.h").is_file():
            return root
    return None


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise DynconvError(f"{what} failed ({' '.join(cmd[:3])} ...); last output:\n{tail}")


def drop_foreign_cmake_cache(build_dir: Path, source_dir: Path = SOURCE_DIR) -> bool:
    """Remove a CMake cache that was configured for another source tree (a moved or copied checkout):
    CMake refuses to reconfigure it. Returns whether a cache was dropped."""
    cache = build_dir / "CMakeCache.txt"
    if not cache.is_file():
        return False
    prefix = "CMAKE_HOME_DIRECTORY:INTERNAL="
    home = next((line[len(prefix):].strip() for line in cache.read_text(errors="replace").splitlines()
                 if line.startswith(prefix)), None)
    if home is None or Path(home).resolve() == source_dir.resolve():
        return False
    cache.unlink()
    shutil.rmtree(build_dir / "CMakeFiles", ignore_errors=True)
    return True


def configure_and_build(build_dir: str | Path, *, tensorrt_root: str | Path | None = None,
                        archs: Sequence[str] | None = None, cpu_reference_only: bool = False,
                        targets: Sequence[str] | None = None, jobs: int | None = None,
                        defines: Mapping[str, str] | None = None) -> Path:
    """Run cmake configure + build; returns the build directory. `defines`: extra -DNAME=VALUE cache entries
    (e.g. DYNCONV_PREBUILT_DIR, DYNCONV_WARNINGS_AS_ERRORS)."""
    if shutil.which("cmake") is None:
        raise DynconvError("cmake not found on PATH: install CMake >= 3.18 (pip install cmake) to build the plugins")
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        raise DynconvError("no C++ compiler found (g++/c++): install build-essential")
    build_dir = Path(build_dir)
    drop_foreign_cmake_cache(build_dir)
    cmd = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir), f"-DPython3_EXECUTABLE={sys.executable}",
           "-DCMAKE_BUILD_TYPE=Release"]
    if cpu_reference_only:
        cmd.append("-DDYNCONV_CPU_REFERENCE_ONLY=ON")
    else:
        cmd.append("-DDYNCONV_CPU_REFERENCE_ONLY=OFF")
        if tensorrt_root:
            cmd.append(f"-DTENSORRT_ROOT={tensorrt_root}")
        if archs:
            cmd.append(f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}")
        nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else None)
        if nvcc:
            cmd.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    cmd += [f"-D{name}={value}" for name, value in (defines or {}).items()]
    _run(cmd, "CMake configure")
    build = ["cmake", "--build", str(build_dir), "-j", str(jobs or os.cpu_count() or 4)]
    for t in targets or []:
        build += ["--target", t]
    _run(build, "CMake build")
    return build_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dynconv-build-plugins", description=__doc__.splitlines()[0])
    parser.add_argument("--tensorrt-root", help="TensorRT install with include/ and lib/ (default: $TENSORRT_ROOT or auto)")
    parser.add_argument("--arch", help="CUDA compute capabilities, e.g. 86,87 (default: nvidia-smi, else 75,86,87,90)")
    parser.add_argument("--build-dir", default=None, help="build directory (default: build/plugins in the repo)")
    parser.add_argument("--cpu-reference-only", action="store_true", help="build only libdynconv_cpuref.so (g++)")
    args = parser.parse_args(argv)
    from .native import (
        CPUREF_BUILD_DIR,
        CPUREF_LIB_NAME,
        DEFAULT_BUILD_DIR,
        PLUGIN_LIB_NAME,
    )

    try:
        if args.cpu_reference_only:
            build_dir = Path(args.build_dir or CPUREF_BUILD_DIR)
            configure_and_build(build_dir, cpu_reference_only=True)
            print(build_dir / CPUREF_LIB_NAME)
            return 0
        if shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").is_file():
            raise DynconvError("nvcc not found: install the CUDA toolkit (or use --cpu-reference-only)")
        trt = find_tensorrt(args.tensorrt_root)
        if trt is None:
            raise DynconvError("TensorRT not found: pass --tensorrt-root DIR or set TENSORRT_ROOT (needs include/NvInfer.h)")
        archs = [a.strip().replace(".", "") for a in args.arch.split(",")] if args.arch else detect_archs()
        build_dir = Path(args.build_dir or DEFAULT_BUILD_DIR)
        configure_and_build(build_dir, tensorrt_root=trt, archs=archs)
        lib = build_dir / PLUGIN_LIB_NAME
        if not lib.is_file():
            raise DynconvError(f"build finished but {lib} is missing (see the CMake output in {build_dir})")
        print(lib)
        return 0
    except DynconvError as exc:
        from ..runtime._cli import EXIT_INPUT

        print(f"dynconv-build-plugins: error: {exc}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
