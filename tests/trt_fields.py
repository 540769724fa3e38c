"""Shared scaffolding of the trtpy creator tests (test_trt_plugin_fields, test_cpp_deform_conv_compat,
test_cpp_dcnv3_compat): locating trtpy and the plugin library, the script preamble that loads the library and
builds PluginFieldCollections, and running a script body under TensorRT's own Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dynconv.plugins import native
from dynconv.plugins.build import find_tensorrt

TRT_DIR = Path.home() / ".cache" / "trt86"
TRTPY = shutil.which("trtpy") or (str(TRT_DIR / "bin" / "trtpy") if (TRT_DIR / "bin" / "trtpy").is_file() else None)
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else None)

# Run under trtpy before a test's script body: loads the library (argv[1]), parses the cases (argv[2]) and
# defines fc(fields) -> PluginFieldCollection. `fields` is a dict {name: value} or a list of [name, value] or
# [name, type, value] entries; type is "int", "ints", "float", "str" or "float64"; without it a float (or a
# list starting with one) is FLOAT32, anything else INT32.
PREAMBLE = r'''
import ctypes, json, sys
import numpy as np
import tensorrt as trt
lib, cases = sys.argv[1], json.loads(sys.argv[2])
ctypes.CDLL(lib)
reg = trt.get_plugin_registry()
T = {"int": trt.PluginFieldType.INT32, "ints": trt.PluginFieldType.INT32,
     "float": trt.PluginFieldType.FLOAT32, "str": trt.PluginFieldType.CHAR}
KEEP = []  # trt.PluginField does not own its array: keep every array alive for the whole run
def fc(fields):
    out = []
    for entry in (fields.items() if isinstance(fields, dict) else fields):
        if len(entry) == 3:
            name, typ, val = entry
        else:
            name, val = entry
            vals = val if isinstance(val, list) else [val]
            typ = "float" if vals and isinstance(vals[0], float) else "ints"
        if typ == "str": data = np.frombuffer(val.encode(), dtype=np.int8)
        elif typ == "float64": data = np.array([val], dtype=np.float64); typ = None
        elif typ == "float": data = np.array(val if isinstance(val, list) else [val], dtype=np.float32)
        else: data = np.array(val if isinstance(val, list) else [val], dtype=np.int32)
        t = T[typ] if typ else trt.PluginFieldType.FLOAT64
        KEEP.append(data)
        out.append(trt.PluginField(name, data, t))
    return trt.PluginFieldCollection(out)
'''


def plugin_library() -> Path:
    """libdynconv_plugins.so for the trtpy tests ($DYNCONV env override, else built once); skips without
    trtpy, TensorRT headers or nvcc."""
    if TRTPY is None:
        pytest.skip("trtpy (TensorRT 8.6 Python) not found")
    env_lib = os.environ.get(native.ENV_VAR)
    if env_lib:
        return Path(env_lib)
    root = find_tensorrt()
    if root is None or NVCC is None:
        pytest.skip("TensorRT headers or nvcc missing: cannot build libdynconv_plugins.so")
    return native.build_plugin_library(native.REPO_ROOT / "build" / "test-plugins", tensorrt_root=root, archs=["86"])


def run_script(body: str, lib: Path, cases) -> subprocess.CompletedProcess:
    """Run PREAMBLE + `body` under trtpy with the library and the JSON-encoded cases."""
    return subprocess.run([TRTPY, "-c", PREAMBLE + body, str(lib), json.dumps(cases)], capture_output=True,
                          text=True, timeout=300)


def report(proc: subprocess.CompletedProcess):
    """The object the script printed last as a line "JSON<json>"."""
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")][-1][4:])
