#!/usr/bin/env python3
"""Stand-ins for TensorRT libraries the slim GPU bundle drops (used by .ci/gpu-bundle).

    gpu_bundle_stubs.py OUT_DIR --drop LIB... --users LIB... [--keep LIB...]

For every dropped library, writes a shared library with the same soname that defines the symbols the
``--users`` import from it (and no ``--keep`` library defines). ``initLibNvInferPlugins`` registers
nothing and returns true (the ONNX parser and the Python bindings call it); every other function
aborts with its name, so a use that was not expected fails loudly instead of silently.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

RETURN_TRUE = {"initLibNvInferPlugins"}


def dynamic_symbols(lib: str, defined: bool) -> dict[str, tuple[str, int]]:
    """name -> (kind 'F' function / 'O' object, size) of the dynamic symbols ``lib`` defines or imports."""
    flag = "--defined-only" if defined else "--undefined-only"
    dump = subprocess.run(["nm", "-D", "-S", flag, lib], check=True, capture_output=True, text=True).stdout
    out = {}
    for line in dump.splitlines():
        parts = line.split()
        if defined and len(parts) == 4:  # address size type name
            _, size, kind, name = parts
        elif not defined and len(parts) >= 2:  # [address] U|w|v name
            size, kind, name = "0", parts[-2], parts[-1]
        else:
            continue
        name = name.split("@")[0]
        if name in {"_init", "_fini"}:
            continue
        out[name] = ("O" if kind in "BDRVbdrv" else "F", int(size, 16))
    return out


def soname(lib: str) -> str:
    dump = subprocess.run(["objdump", "-p", lib], check=True, capture_output=True, text=True).stdout
    m = re.search(r"SONAME\s+(\S+)", dump)
    return m.group(1) if m else Path(lib).name


def write_stub(out: Path, lib: str, wanted: dict[str, tuple[str, int]]) -> Path:
    name = soname(lib)
    lines = ["#include <stdio.h>", "#include <stdlib.h>"]
    for sym, (kind, size) in sorted(wanted.items()):
        if kind == "O":
            lines.append(f"char {sym}[{max(size, 1)}];")
        elif sym in RETURN_TRUE:
            lines.append(f"int {sym}(void* logger, const char* ns) {{ (void)logger; (void)ns; return 1; }}")
        else:
            lines.append(f'int {sym}(void) {{ fprintf(stderr, "{name} stand-in: {sym} called\\n"); abort(); }}')
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "stub.c"
        src.write_text("\n".join(lines) + "\n")
        target = out / name
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-s", "-o", str(target), str(src),
                        f"-Wl,-soname,{name}"], check=True)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--drop", nargs="+", required=True)
    p.add_argument("--users", nargs="+", required=True)
    p.add_argument("--keep", nargs="*", default=[])
    args = p.parse_args(argv)
    imported: set[str] = set()
    for lib in args.users:
        imported |= set(dynamic_symbols(lib, defined=False))
    provided: set[str] = set()
    for lib in args.keep:
        provided |= set(dynamic_symbols(lib, defined=True))
    for lib in args.drop:
        defined = dynamic_symbols(lib, defined=True)
        wanted = {s: v for s, v in defined.items() if s in imported and s not in provided}
        target = write_stub(Path(args.out), lib, wanted)
        print(f"{target.name}: {len(wanted)} stand-in symbols ({sum(k == 'O' for k, _ in wanted.values())} data)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
