"""Rows of the performance table: per benchmark shape, precision and op, the traced counters and the
predicted (roofline) time next to the yardstick convolution's bound."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from .cases import BENCH_OPS, BENCH_SHAPES, BenchOp, compulsory_bytes, min_gather_sectors, needed_samples
from .counters import LaunchCounters, trace_op
from .hardware import H200, ORIN
from .resources import load_table, occupancy
from .roofline import design_floor, l1tex_split, op_floor, predict_launch, yardstick_bound

log = logging.getLogger(__name__)


@dataclass
class Row:
    op: str
    kernel: str                 #: the launches, '+'-joined (the dominant one first)
    precision: str
    shape: list[int]
    bank_conflict_factor: float  #: worst hot shared-memory site: wavefronts per ideal wavefront
    sector_efficiency: float     #: ideal / touched sectors, global accesses other than the bilinear gather
    sample_redundancy: float | None  #: bilinear samples computed / distinct samples needed
    occupancy_sm90: float | None
    occupancy_sm87: float | None
    registers: int | None
    spill_bytes: int | None
    predicted_us: float          #: H200 roofline bound of the op's launches
    limiter: str
    l1tex_shared_share: float    #: share of the dominant launch's L1TEX data-path time spent on shared memory
    predicted_orin_us: float
    yardstick: str
    bound_us: float              #: the yardstick's H200 bound
    ratio: float
    target: float
    floor_ratio: float           #: the op's own floor (compulsory bytes, needed work) over the yardstick bound
    floor_limiter: str
    design_floor_ratio: float    #: the floor of the kernels' design class (mma.sync share, gather sectors) / yardstick
    design_floor_limiter: str
    note: str
    launches: list[dict]         #: per launch (:func:`launch_counters`), for measured counters to sit next to


def _dram_split(launches: list[LaunchCounters], shape, total: int, elem: int) -> list[float]:
    """Compulsory DRAM bytes per launch: DRConv's listing passes move the guide and int pixel lists, DCN's
    NHWC copy moves the input twice (the FMA tiles' weight transpose the weights), the GEMM the rest;
    single-launch ops take everything."""
    if len(launches) == 1:
        return [float(total)]
    n, c, h, w = shape
    if launches[0].kernel == "dcn_nhwc":  # DCN's NHWC copy of the input (read and written once), then the GEMM
        return [float(2 * elem * n * c * h * w), float(total)]
    if launches[0].kernel == "dcn_wt":  # DCN's weight transpose (the benchmark's C x C x 3 x 3), the NHWC copy
        return [float(2 * elem * c * c * 9), float(2 * elem * n * c * h * w), float(total)]  # of the input, the tile
    ints = 4 * n * h * w
    split = {"drconv_count": ints, "drconv_scan": 0, "drconv_scatter": 2 * ints}
    out = [float(split.get(lc.kernel.split("_")[0] + "_" + lc.kernel.split("_")[1], 0)) for lc in launches]
    out[-1] = float(total + ints)  # the GEMM reads the pixel lists too
    return out


def build_row(bench: BenchOp, shape: tuple[int, int, int, int], fp16: bool, picks: int, res: dict) -> Row:
    rng = np.random.default_rng(11)
    inputs, attrs = bench.make(shape, rng)
    launches = trace_op(bench.op, inputs, attrs, fp16=fp16, picks=picks)
    elem = 2 if fp16 else 4
    total = compulsory_bytes(inputs, shape[0] * shape[1] * shape[2] * shape[3], elem)
    dram = _dram_split(launches, shape, total, elem)
    bounds = [predict_launch(lc, H200, b) for lc, b in zip(launches, dram, strict=True)]
    orin = sum(predict_launch(lc, ORIN, b).seconds for lc, b in zip(launches, dram, strict=True))
    main = max(range(len(launches)), key=lambda k: bounds[k].seconds)
    lc = launches[main]
    global_clk, shared_clk = l1tex_split(lc, H200)
    prec = "fp16" if fp16 else "fp32"
    r90 = res.get(f"sm_90/{lc.kernel}/{prec}")
    r87 = res.get(f"sm_87/{lc.kernel}/{prec}")
    # ptxas reports static shared memory only; the traced layout also counts dynamic shared memory
    r90, r87 = ({**r, "smem_bytes": max(r["smem_bytes"], lc.smem_bytes)} if r else None for r in (r90, r87))
    occ90, occ87 = occupancy(r90, lc.threads, H200), occupancy(r87, lc.threads, ORIN)
    needed = needed_samples(bench.label, shape, lc.kernel)
    samples = sum(l.total("samples") for l in launches)
    plain = [(s, l.scale) for l in launches for s in l.sites if s.space == "global" and not s.gather]
    units = sum(s.units * k for s, k in plain)
    yard = yardstick_bound(bench.yardstick, shape, fp16, H200)
    tensor = lc.mma > 0
    floor = op_floor(total, bench.macs(shape), tensor, H200)
    predicted = sum(b.seconds for b in bounds)
    floor_ratio = floor.seconds / yard.seconds
    design = design_floor(floor, bench.macs(shape), tensor, min_gather_sectors(bench.label, inputs, attrs, fp16), H200)
    design_ratio = design.seconds / yard.seconds
    if floor_ratio > bench.target:
        note = f"target out of reach: the op's own {floor.limiter} floor is {floor_ratio:.2f}x the yardstick"
    elif design_ratio > bench.target and predicted / yard.seconds > bench.target:
        note = (f"target out of reach for this kernel class: its {design.limiter} floor is {design_ratio:.2f}x "
                f"the yardstick")
    elif predicted / yard.seconds > bench.target:
        note = f"kernel above target, limited by {bounds[main].limiter}"
    else:
        note = "within target"
    return Row(launches=[launch_counters(l, b) for l, b in zip(launches, bounds)], op=bench.label, kernel="+".join([lc.kernel] + [l.kernel for k, l in enumerate(launches) if k != main]),
               precision=prec, shape=list(shape), bank_conflict_factor=max(l.bank_conflict_factor() for l in launches),
               sector_efficiency=sum(s.ideal * k for s, k in plain) / units if units else 1.0,
               sample_redundancy=samples / needed if needed else None,
               occupancy_sm90=occ90[1] if occ90 else None, occupancy_sm87=occ87[1] if occ87 else None,
               registers=r90["registers"] if r90 else None, spill_bytes=r90["spill_bytes"] if r90 else None,
               predicted_us=predicted * 1e6, limiter=bounds[main].limiter,
               l1tex_shared_share=shared_clk / (global_clk + shared_clk) if global_clk + shared_clk else 0.0,
               predicted_orin_us=orin * 1e6,
               yardstick=bench.yardstick, bound_us=yard.seconds * 1e6, ratio=predicted / yard.seconds,
               target=bench.target, floor_ratio=floor_ratio, floor_limiter=floor.limiter,
               design_floor_ratio=design_ratio, design_floor_limiter=design.limiter, note=note)


def launch_counters(lc: LaunchCounters, bound) -> dict:
    """One launch's traced totals (scaled to its grid) and H200 bound, as ``ncu`` measures them per launch."""
    return {"kernel": lc.kernel, "blocks": lc.blocks_total, "global_sectors": lc.space_total("global"),
            "shared_wavefronts": lc.space_total("shared"), "bank_conflict_factor": lc.bank_conflict_factor(),
            "mma": lc.total("mma"), "predicted_us": bound.seconds * 1e6, "limiter": bound.limiter}


def build_rows(shapes: Sequence[tuple[int, int, int, int]] = BENCH_SHAPES, precisions: Sequence[str] = ("fp16", "fp32"),
               ops: Sequence[str] | None = None, picks: int = 2) -> list[Row]:
    res = load_table()
    rows = []
    for shape in shapes:
        for prec in precisions:
            for bench in BENCH_OPS:
                if ops and bench.label not in ops:
                    continue
                log.info("tracing %s %s %s", bench.label, prec, shape)
                rows.append(build_row(bench, shape, prec == "fp16", picks, res))
    return rows


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(rows: Sequence[Row]) -> str:
    """One text table per (shape, precision)."""
    head = (f"{'op':<14}{'kernel':<34}{'conflict':>9}{'sect.eff':>9}{'redund':>8}{'occ90':>7}{'regs':>6}"
            f"{'pred us':>10}{'limiter':>8}{'smem%':>6}{'bound us':>10}{'ratio':>7}{'target':>7}{'floor':>7}{'dfloor':>7}"
            f"{'orin us':>10}")
    out: list[str] = []
    for key in dict.fromkeys((tuple(r.shape), r.precision) for r in rows):
        out += ["", f"shape {key[0]} {key[1]} (H200 roofline; yardstick: standard / depthwise 3x3 conv)", head]
        for r in rows:
            if (tuple(r.shape), r.precision) != key:
                continue
            out.append(f"{r.op:<14}{r.kernel[:33]:<34}{r.bank_conflict_factor:>9.2f}{r.sector_efficiency:>9.2f}"
                       f"{_fmt(r.sample_redundancy, '.2f'):>8}{_fmt(r.occupancy_sm90, '.2f'):>7}{_fmt(r.registers, 'd'):>6}"
                       f"{r.predicted_us:>10.1f}{r.limiter:>8}{100 * r.l1tex_shared_share:>6.0f}{r.bound_us:>10.1f}{r.ratio:>7.2f}{r.target:>7.1f}"
                       f"{r.floor_ratio:>7.2f}{r.design_floor_ratio:>7.2f}{r.predicted_orin_us:>10.0f}  {r.note}")
    return "\n".join(out[1:])


def rows_json(rows: Sequence[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
