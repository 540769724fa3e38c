"""Plan of the device calls of the one-window GPU check (.ci/gpu-check-plan), and its CPU dry run.

    python -m dynconv.runtime.gpu_plan --bundle DIR --cases DIR --plugins LIB [--dry-run OUT]

The device tool carries the working tree plus at most 8 ignored paths, 64 MiB in all, per call; a
warm machine keeps what earlier calls carried, but goes back after 30 s idle, so the calls must follow
each other at once. The plan packs the slim TensorRT bundle's parts (.ci/gpu-bundle), the stage-1
cases and the sm_90 plugin library into calls (first-fit decreasing; the check runs in the last),
prints each call's carry list, carried MiB and expected device seconds, and with ``--dry-run`` runs
the last call's check on this CPU with fake engines (``dynconv.runtime.gpu_check --fake``).

The seconds are estimates (no GPU numbers exist yet): the constants below say what each assumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
CARRY_LIMIT = 64 * MIB
MAX_CARRY_PATHS = 8
# Estimates (seconds), to be replaced by the first lent session's measurements:
START_S = 90.0             # "a minute or more" to start a machine (device README)
CALL_S = 5.0               # per call: dispatch, copy-back, shell start
TRANSFER_MIB_S = 25.0      # carried MiB per second into the machine
INSTALL_MIB_S = 25.0       # xz -d + tar of the bundle, per packed MiB
EAGER_S = 45.0             # python3: eager references timed in CUDA graphs (36 timings x 100 replays)
BUILD_OP_S = 3.0           # one single-op parity engine (tiny shapes, 1 profile)
BUILD_NETWORK_S = 25.0     # one example-network engine
BUILD_BENCH_S = 6.0        # one static benchmark engine (timing cache shared)
TIME_BENCH_S = 1.0         # timing one benchmark engine (warmup + 100 runs, 3 modes)
SANITIZER_S = 60.0         # one memcheck process over ~10 plans (TensorRT's own kernels checked too)
NCU_S = 45.0               # one ncu process: ~12 plugin launches x a few replay passes, plus engine loads
TRT_IMPORT_S = 5.0         # trtpy start + import tensorrt + plugin library
JOBS = 6                   # engines built at once by .ci/gpu-check (16-core host); timing stays serial
WORKER_START_S = 8.0       # spawning the build workers (each imports tensorrt)


@dataclass
class Item:
    path: str   # relative to the repository root (an ignored path: it travels only when carried)
    size: int
    what: str


@dataclass
class Call:
    carry: list[Item] = field(default_factory=list)
    command: str = ""
    seconds: float = 0.0

    @property
    def carry_bytes(self) -> int:
        return sum(i.size for i in self.carry)


def tree_bytes(repo: Path) -> int:
    """Bytes of what travels on every call: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / name.decode()).stat().st_size for name in listed
               if name and (repo / name.decode()).is_file())


def path_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def pack(items: Sequence[Item], final: Sequence[Item], budget: int) -> list[list[Item]]:
    """Items into calls of at most ``budget`` bytes and MAX_CARRY_PATHS paths; ``final`` items go in the
    last call (which runs the check), and big items fill the earlier calls first."""
    final_size = sum(i.size for i in final)
    if final_size > budget or len(final) > MAX_CARRY_PATHS:
        raise ValueError(f"the check's own carry ({final_size / MIB:.1f} MiB, {len(final)} paths) does not fit "
                         f"one call ({budget / MIB:.1f} MiB, {MAX_CARRY_PATHS} paths)")
    calls: list[list[Item]] = [list(final)]
    for item in sorted(items, key=lambda i: -i.size):
        if item.size > budget:
            raise ValueError(f"{item.path} ({item.size / MIB:.1f} MiB) is larger than one call's carry "
                             f"({budget / MIB:.1f} MiB): split it smaller (PART_MB)")
        for call in calls:
            if sum(i.size for i in call) + item.size <= budget and len(call) < MAX_CARRY_PATHS:
                call.append(item)
                break
        else:
            calls.insert(len(calls) - 1, [item])
    return calls


def manifest_counts(cases: Path) -> dict:
    manifest = json.loads((cases / "manifest.json").read_text())
    kinds = [c["kind"] for c in manifest["cases"]]
    bench = manifest.get("bench") or {"items": []}
    return {"op": kinds.count("op") + kinds.count("compat"), "network": kinds.count("network"),
            "bench": len(bench["items"]), "eager": sum(i["kind"] == "plugin" for i in bench["items"])}


def parallel_s(work_s: float, longest_s: float) -> float:
    """Wall time of ``work_s`` seconds of builds spread over JOBS workers (no job is split)."""
    return WORKER_START_S + max(work_s / JOBS, longest_s) if work_s else 0.0


def check_seconds(counts: dict, bundle_packed: int) -> dict[str, float]:
    parity_work = 2 * (counts["op"] * BUILD_OP_S + counts["network"] * BUILD_NETWORK_S)  # FP32 + FP16
    longest = BUILD_NETWORK_S if counts["network"] else BUILD_OP_S
    return {
        "install bundle": bundle_packed / MIB / INSTALL_MIB_S,
        "eager timings (python3)": EAGER_S if counts["eager"] else 0.0,
        "parity engines": TRT_IMPORT_S + parallel_s(parity_work, longest),
        "compute-sanitizer": SANITIZER_S,
        "ncu counters": NCU_S if counts["bench"] else 0.0,
        "benchmark": parallel_s(counts["bench"] * BUILD_BENCH_S, BUILD_BENCH_S) + counts["bench"] * TIME_BENCH_S,
    }


def plan(repo: Path, bundle: Path, cases: Path, plugins: Path, out_var: str = "$OUT") -> tuple[list[Call], dict]:
    rel = lambda p: str(p.resolve().relative_to(repo.resolve()))  # noqa: E731
    parts = sorted(bundle.glob("part-*"))
    if not parts:
        raise ValueError(f"{bundle} has no part-NN files: run .ci/gpu-bundle {bundle}")
    meta = [bundle / n for n in ("SHA256SUMS", "WHOLE.sha256", "install-bundle.sh")]
    missing = [str(p) for p in [*meta, cases / "manifest.json", plugins] if not p.is_file()]
    if missing:
        raise ValueError(f"missing: {', '.join(missing)}")
    tree = tree_bytes(repo)
    budget = CARRY_LIMIT - tree
    items = [Item(rel(p), p.stat().st_size, "TensorRT bundle part") for p in parts]
    final = [Item(rel(cases), path_bytes(cases), "stage-1 cases"), Item(rel(plugins), plugins.stat().st_size,
                                                                        "plugin library (sm_90)")]
    final += [Item(rel(p), p.stat().st_size, "bundle checksums / installer") for p in meta]
    groups = pack(items, final, budget)
    packed = sum(i.size for i in items)
    counts = manifest_counts(cases)
    stages = check_seconds(counts, packed)
    calls = []
    for k, group in enumerate(groups):
        last = k == len(groups) - 1
        call = Call(carry=group)
        if last:
            call.command = (f"PYTHONUNBUFFERED=1 .ci/gpu-check {rel(bundle)} {rel(cases)} {rel(plugins)} "
                            f"2>&1 | tee {out_var}/gpu-check.log")
        else:
            call.command = f"ls -l {rel(bundle)}  # parts stay on the warm machine; next call at once (<30 s idle)"
        call.seconds = CALL_S + (call.carry_bytes + tree) / MIB / TRANSFER_MIB_S + (START_S if k == 0 else 0.0)
        if last:
            call.seconds += sum(stages.values())
        calls.append(call)
    info = {"tree_bytes": tree, "budget_bytes": budget, "bundle_packed_bytes": packed, "parts": len(parts),
            "counts": counts, "check_stages_s": stages, "total_s": sum(c.seconds for c in calls)}
    return calls, info


def render(calls: Sequence[Call], info: dict) -> str:
    lines = [(f"working tree travelling on every call: {info['tree_bytes'] / MIB:.2f} MiB; carry budget per call "
              f"{info['budget_bytes'] / MIB:.2f} MiB; TensorRT bundle {info['bundle_packed_bytes'] / MIB:.1f} MiB "
              f"in {info['parts']} parts")]
    for k, call in enumerate(calls, 1):
        total = (call.carry_bytes + info["tree_bytes"]) / MIB
        lines.append(f"call {k}/{len(calls)}: carries {total:.1f} MiB (<= 64: {'yes' if total <= 64 else 'NO'}), "
                     f"~{call.seconds:.0f} s")
        lines += [f"    carry {i.path}  ({i.size / MIB:.1f} MiB, {i.what})" for i in call.carry]
        lines.append(f"    run   {call.command}")
    lines.append("check stages in the last call: " + ", ".join(f"{k} ~{v:.0f} s"
                                                              for k, v in info["check_stages_s"].items()))
    lines.append(f"expected device time: ~{info['total_s']:.0f} s ({info['total_s'] / 60:.1f} min; budget 10 min, "
                 f"rerun room in the session's 15) - estimates, see dynconv.runtime.gpu_plan's constants")
    return "\n".join(lines) + "\n"


def dry_run(cases: Path, out: Path) -> int:
    """The last call's check on this CPU with fake engines; returns its exit status."""
    proc = subprocess.run([sys.executable, "-m", "dynconv.runtime.gpu_check", str(cases), "--out", str(out),
                           "--fake"], capture_output=True, text=True, check=False, timeout=1800)
    sys.stdout.write(proc.stdout[-3000:])
    sys.stderr.write(proc.stderr[-3000:] if proc.returncode else "")
    return proc.returncode


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dynconv.runtime.gpu_plan", description=__doc__.splitlines()[0])
    p.add_argument("--repo", default=".", help="repository root (default: .)")
    p.add_argument("--bundle", required=True, help="directory of .ci/gpu-bundle's parts")
    p.add_argument("--cases", required=True, help="stage-1 directory (python -m dynconv.export.gpu_cases DIR --bench)")
    p.add_argument("--plugins", required=True, help="libdynconv_plugins.so built for sm_90")
    p.add_argument("--dry-run", metavar="OUT", help="also run the check on this CPU with fake engines into OUT")
    p.add_argument("--json", metavar="FILE", help="write the plan as JSON")
    args = p.parse_args(argv)
    repo = Path(args.repo)
    try:
        calls, info = plan(repo, Path(args.bundle), Path(args.cases), Path(args.plugins))
    except (ValueError, OSError, subprocess.CalledProcessError) as exc:
        print(f"gpu-check-plan: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(calls, info))
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "calls": [
            {"carry": [vars(i) for i in c.carry], "carry_bytes": c.carry_bytes, "command": c.command,
             "seconds": c.seconds} for c in calls]}, indent=1) + "\n")
    if args.dry_run:
        rc = dry_run(Path(args.cases), Path(args.dry_run))
        print(f"dry run of the last call: {'ok' if rc == 0 else f'FAILED (exit {rc})'}")
        return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
