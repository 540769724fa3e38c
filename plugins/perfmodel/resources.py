"""Registers, shared memory and spills per kernel from ``ptxas -v``, and the occupancy they allow.

``python -m dynconv.plugins.perfmodel.resources`` recompiles every ``trt_plugins_cpp/*/*_kernel.cu``
for sm_90 and sm_87 with ``nvcc -Xptxas -v`` and rewrites ``resources.json`` next to this file (the model
reads that table, so it runs without nvcc).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from .hardware import Gpu

log = logging.getLogger(__name__)
TABLE = Path(__file__).with_name("resources.json")
SOURCE_DIR = Path(__file__).resolve().parents[2] / "trt_plugins_cpp"
ARCHS = ("sm_90", "sm_87")

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def kernel_key(demangled: str) -> tuple[str, str] | None:
    """(model kernel name, precision) of a demangled kernel signature; None for kernels the model skips."""
    prec = "fp16" if "__half" in demangled else "fp32"
    nums = [int(v) for v in re.findall(r"<(\d+), (\d+)", demangled)[0]] if re.search(r"<(\d+), (\d+)", demangled) else []
    tile = f"{nums[0]}x{nums[1]}" if nums else ""
    if "deform_conv_slab_kernel" in demangled:  # <tile, true>: samples the NHWC copy; false: the NCHW input
        return f"dcn_slab_{tile}" + ("" if "true>" in demangled else "_nchw"), "fp16"
    if "deform_conv_nhwc_kernel" in demangled:
        return "dcn_nhwc", prec
    if "deform_conv_mma_kernel" in demangled:
        return f"dcn_mma_{tile}", "fp16"
    if "deform_conv_kernel" in demangled:
        return f"dcn_fma_{tile}", prec
    if "drconv_mma_kernel" in demangled:
        return f"drconv_mma_{tile}", "fp16"
    if "drconv_gemm_kernel" in demangled:
        return f"drconv_fma_{tile}", prec
    m = re.search(r"(ddf|involution)_kernel<(?:__half|float), 3, (\d+)>", demangled)
    if m:  # the 3x3 strip kernels: row-sharing strips (the benchmark's) and one-row strips
        return m.group(1) + ("" if int(m.group(2)) > 1 else "_r1"), prec
    m = re.search(r"(ddf|involution)_pair_kernel<__half, 3>", demangled)
    if m:  # the FP16 strips of column pairs
        return m.group(1) + "_pair", prec
    for k in ("drconv_count", "drconv_scan", "drconv_scatter", "ddf", "involution"):
        if f"{k}_kernel" in demangled:
            return k, prec
    m = re.search(r"dcnv3_kernel<(?:__half|float), (\d+), (true|false), (\d+)>", demangled)
    if m and m.group(3) == "3":
        return f"dcnv3_v{m.group(1)}" + ("" if m.group(2) == "true" else "_scalar"), prec
    return None


def parse_ptxas(text: str) -> dict[str, dict]:
    """{"<arch>/<kernel>/<precision>": {registers, smem_bytes, spill_bytes}} from ptxas -v output."""
    demangle = shutil.which("c++filt")
    table: dict[str, dict] = {}
    current: str | None = None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            name = m.group(1)
            if demangle:
                name = subprocess.run([demangle, name], capture_output=True, text=True).stdout.strip()
            key = kernel_key(name)
            current = f"{m.group(2)}/{key[0]}/{key[1]}" if key else None
            if current:
                table[current] = {"registers": 0, "smem_bytes": 0, "spill_bytes": 0}
        elif current and (m := _SPILL.search(line)):
            table[current]["spill_bytes"] = int(m.group(1)) + int(m.group(2))
        elif current and (m := _USED.search(line)):
            table[current]["registers"] = int(m.group(1))
            smem = _SMEM.search(line)
            table[current]["smem_bytes"] = int(smem.group(1)) if smem else 0
    return table


def compile_resources(archs: Sequence[str] = ARCHS) -> dict[str, dict]:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise SystemExit("error: nvcc not found on PATH")
    table: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cu in sorted(SOURCE_DIR.glob("*/*_kernel.cu")):
            for arch in archs:
                cmd = [nvcc, f"-arch={arch}", "-std=c++17", "--expt-relaxed-constexpr", "-Xptxas", "-v",
                       f"-I{SOURCE_DIR}", "-c", str(cu), "-o", str(Path(tmp) / "k.o")]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    raise SystemExit(f"error: nvcc failed on {cu.name}: {res.stderr.strip().splitlines()[-1:]}")
                table.update(parse_ptxas(res.stderr))
                log.info("%s %s: done", cu.name, arch)
    return table


def load_table() -> dict[str, dict]:
    return json.loads(TABLE.read_text()) if TABLE.is_file() else {}


def occupancy(res: dict | None, threads: int, gpu: Gpu) -> tuple[int, float] | None:
    """(blocks per SM, resident warps / max warps) for a kernel's ptxas resources; None if unknown."""
    if not res:
        return None
    warps = threads // 32
    regs_per_warp = -(-max(res["registers"], 1) * 32 // 256) * 256
    limits = [gpu.max_blocks_per_sm, gpu.max_threads_per_sm // threads, gpu.regs_per_sm // (regs_per_warp * warps)]
    if res["smem_bytes"]:
        limits.append(gpu.smem_per_sm // (res["smem_bytes"] + 1024))  # 1 KB per block reserved by the driver
    blocks = max(0, min(limits))
    return blocks, blocks * threads / gpu.max_threads_per_sm


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynconv.plugins.perfmodel.resources", description=__doc__)
    parser.add_argument("--arch", action="append", help="sm_XY (repeatable; default sm_90 and sm_87)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    table = compile_resources(args.arch or ARCHS)
    TABLE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(table)} kernels to {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
