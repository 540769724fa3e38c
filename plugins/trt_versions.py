"""``python -m dynconv.plugins.trt_versions``: TensorRT stand-in SDKs (headers + a stub ``libnvinfer``) for
compiling and linking the plugin library against TensorRT versions that are not installed.

    python -m dynconv.plugins.trt_versions --out DIR [--git TENSORRT_CLONE] [--headers VERSION=INCLUDE_DIR ...]
                                           [VERSION ...]

For each VERSION (default: all of ``VERSIONS``) it writes ``DIR/<VERSION>/include`` (``git archive <tag> include``
of an NVIDIA/TensorRT clone, or a copy of a given include directory) and ``DIR/<VERSION>/lib/libnvinfer.so``: a
stand-in exporting every ``extern "C"`` function that version's ``NvInfer*.h`` declare, each aborting when called.
A root is good for ``-DTENSORRT_ROOT`` of a compile-and-link check, never for running anything. Prints one line
``VERSION ROOT`` per prepared version. Headers are never committed: they come from the clone or the given dirs.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import DynconvError

#: Version -> tag of github.com/NVIDIA/TensorRT, for the deployments the plugins target.
VERSIONS: dict[str, str] = {
    "8.5.3": "8.5.3",   # JetPack 5.1
    "8.6.0": "v8.6.0",  # first with IPluginRegistry::loadLibrary (the CPU tests run the real 8.6 library)
    "10.3": "v10.3.0",  # JetPack 6.1 / 6.2
    "10.16": "v10.16",  # JetPack 7.2
    "11.1": "v11.1",    # current servers
}
#: Where a clone of NVIDIA/TensorRT may be found when --git is not given ($DYNCONV_TRT_GIT first).
GIT_CANDIDATES = (Path("/work/.mirror/NVIDIA+TensorRT/repo"),)
ENV_GIT = "DYNCONV_TRT_GIT"
ENV_HEADERS = "DYNCONV_TRT_HEADERS"  # "8.5.3=/x/include,10.3=/y/include"

# Headers of other libraries (libnvinfer_plugin, the safety runtime, ...): their functions are not libnvinfer's.
_NOT_LIBNVINFER = ("NvInferPlugin", "NvInferSafe", "NvInferConsistency", "NvOnnx", "NvCaffe", "NvUff", "NvUtils")
_EXTERN_C_FUNCTION = re.compile(r'extern\s+"C"\s+(?:TENSORRTAPI|TRT_DEPRECATED_API)\s+[^;{}()]*?\b(\w+)\s*\(')
_VERSION_DEFINE = re.compile(r"#define\s+(?:NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(?:_ENTERPRISE)?\s+(\d+)")


def find_git() -> Path | None:
    """A local NVIDIA/TensorRT clone: $DYNCONV_TRT_GIT, else a known mirror; None when there is none."""
    env = os.environ.get(ENV_GIT)
    for cand in ([Path(env)] if env else []) + list(GIT_CANDIDATES):
        if (cand / "HEAD").is_file() or (cand / ".git").exists():
            return cand
    return None


def parse_header_dirs(items: Sequence[str]) -> dict[str, Path]:
    """{version: include dir} from "VERSION=DIR" items; DynconvError for malformed items or unknown versions."""
    dirs: dict[str, Path] = {}
    for item in items:
        version, sep, path = item.partition("=")
        if not sep or not path:
            raise DynconvError(f"--headers {item!r}: expected VERSION=INCLUDE_DIR")
        if version not in VERSIONS:
            raise DynconvError(f"--headers {item!r}: unknown version {version!r} (known: {', '.join(VERSIONS)})")
        if not (Path(path) / "NvInfer.h").is_file():
            raise DynconvError(f"--headers {item!r}: {path} has no NvInfer.h")
        dirs[version] = Path(path)
    return dirs


def header_version(include: Path) -> tuple[int, int]:
    """(major, minor) of NvInferVersion.h in `include`."""
    found = dict(_VERSION_DEFINE.findall((include / "NvInferVersion.h").read_text()))
    return int(found["MAJOR"]), int(found["MINOR"])


def libnvinfer_functions(include: Path) -> list[str]:
    """Names of the extern "C" functions that libnvinfer exports according to the headers in `include`."""
    names: set[str] = set()
    for header in sorted(include.glob("NvInfer*.h")):
        if not header.name.startswith(_NOT_LIBNVINFER):
            names.update(_EXTERN_C_FUNCTION.findall(header.read_text()))
    return sorted(names)


def write_stub_library(include: Path, lib_dir: Path) -> Path:
    """lib_dir/libnvinfer.so (soname libnvinfer.so.<major>) exporting the headers' extern "C" functions."""
    major, _ = header_version(include)
    names = libnvinfer_functions(include)
    if "getPluginRegistry" not in names:
        raise DynconvError(f"{include}: no extern \"C\" getPluginRegistry found; not a TensorRT include directory?")
    soname = f"libnvinfer.so.{major}"
    lib_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "nvinfer_stub.c"
        body = "".join(f'void {n}(void) {{ stub_called("{n}"); }}\n' for n in names)
        src.write_text("#include <stdio.h>\n#include <stdlib.h>\n"
                       "static void stub_called(const char* name) {\n"
                       f'    fprintf(stderr, "{soname} stand-in (link checks only): %s called\\n", name);\n'
                       "    abort();\n}\n" + body)
        out = lib_dir / "libnvinfer.so"
        proc = subprocess.run(["cc", "-shared", "-fPIC", "-o", str(out), str(src), f"-Wl,-soname,{soname}"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DynconvError(f"cannot build the stand-in {soname}: {proc.stderr.strip()[-500:]}")
    return out


def extract_headers(git_dir: Path, tag: str, include: Path) -> None:
    """include/ of `tag` from the clone `git_dir` (git archive), written into `include`."""
    proc = subprocess.run(["git", "-C", str(git_dir), "archive", "--format=tar", tag, "include"],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise DynconvError(f"git archive {tag} include in {git_dir} failed: {proc.stderr.decode().strip()[-300:]}")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)
        shutil.rmtree(include, ignore_errors=True)
        shutil.copytree(Path(tmp) / "include", include)


def prepare(out: Path, versions: Sequence[str], *, git_dir: Path | None = None,
            header_dirs: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """Prepared roots {version: out/version} with include/ and lib/libnvinfer.so. A version's headers come from
    header_dirs, else the clone; DynconvError when neither has them."""
    header_dirs = dict(header_dirs or {})
    roots: dict[str, Path] = {}
    for version in versions:
        if version not in VERSIONS:
            raise DynconvError(f"unknown TensorRT version {version!r} (known: {', '.join(VERSIONS)})")
        root = out / version
        include = root / "include"
        if version in header_dirs:
            shutil.rmtree(include, ignore_errors=True)
            shutil.copytree(header_dirs[version], include)
        elif git_dir is not None:
            extract_headers(git_dir, VERSIONS[version], include)
        else:
            raise DynconvError(f"no headers for TensorRT {version}: pass --git TENSORRT_CLONE or "
                               f"--headers {version}=INCLUDE_DIR")
        write_stub_library(include, root / "lib")
        roots[version] = root
    return roots


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynconv.plugins.trt_versions", description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="*", help=f"versions to prepare (default: {' '.join(VERSIONS)})")
    parser.add_argument("--out", required=True, help="output directory (one root per version)")
    parser.add_argument("--git", help=f"NVIDIA/TensorRT clone to take headers from (default: ${ENV_GIT} or a known mirror)")
    parser.add_argument("--headers", action="append", default=[], metavar="VERSION=INCLUDE_DIR",
                        help="take a version's headers from this include directory instead (repeatable)")
    args = parser.parse_args(argv)
    try:
        git_dir = Path(args.git) if args.git else find_git()
        if args.git and not (git_dir / "HEAD").is_file() and not (git_dir / ".git").exists():
            raise DynconvError(f"--git {args.git}: not a git repository")
        roots = prepare(Path(args.out), args.versions or list(VERSIONS), git_dir=git_dir,
                        header_dirs=parse_header_dirs(args.headers))
    except DynconvError as exc:
        print(f"trt_versions: error: {exc}", file=sys.stderr)
        return 1
    for version, root in roots.items():
        print(version, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
