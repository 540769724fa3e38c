"""python -m dynconv.plugins.perfmodel [--json FILE]: the kernel performance table (see the package doc)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from ..errors import DynconvError
from .cases import BENCH_OPS, BENCH_SHAPES
from .report import build_rows, format_table, rows_json


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) <= 0 or dims[1] % 16:
        raise argparse.ArgumentTypeError(f"{text!r} is not NxCxHxW with positive sizes and C a multiple of 16")
    return dims  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dynconv.plugins.perfmodel",
                                description="Predicted kernel times from the CPU executor's memory-access counters.")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--shapes", nargs="+", type=_shape, default=BENCH_SHAPES, metavar="NxCxHxW")
    p.add_argument("--precision", nargs="+", choices=["fp16", "fp32"], default=["fp16", "fp32"])
    p.add_argument("--ops", nargs="+", choices=[b.label for b in BENCH_OPS])
    p.add_argument("--picks", type=int, default=2, help="blocks traced per launch (counters scale by the block count)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if args.picks < 1:
        p.error("--picks must be >= 1")
    if args.json and not args.json.parent.is_dir():
        p.error(f"--json: directory {str(args.json.parent)!r} does not exist")
    try:
        rows = build_rows(args.shapes, args.precision, args.ops, args.picks)
    except DynconvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows_json(rows), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
