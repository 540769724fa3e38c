"""Roofline lower bounds: per launch from the traced counters, and for the yardstick convolutions.

A launch's predicted time is the largest of its throughput terms (DRAM bytes, the L1TEX data path's global
sectors plus shared-memory wavefronts, FP32 FMAs, tensor-core MMAs), each at the GPU's peak: a lower bound
that names its limiter.
"""

from __future__ import annotations

from dataclasses import dataclass

from .counters import LaunchCounters
from .hardware import Gpu


@dataclass(frozen=True)
class Bound:
    terms: dict[str, float]  #: seconds per throughput term

    @property
    def seconds(self) -> float:
        return max(self.terms.values(), default=0.0)

    @property
    def limiter(self) -> str:
        return max(self.terms, key=self.terms.get) if self.terms else "-"


def sm_fill(blocks: int, gpu: Gpu) -> float:
    """Share of the GPU's SM throughput a launch of ``blocks`` equal blocks gets: the busiest SM runs
    ``ceil(blocks / SMs)`` of them, so the launch lasts as if ``blocks / ceil(blocks / SMs)`` SMs
    shared all the work (49 blocks on 132 SMs: 0.37; 150 blocks: 0.57; 392 blocks: 0.99)."""
    if blocks <= 0:
        return 1.0
    return blocks / (-(-blocks // gpu.sms) * gpu.sms)


def predict_launch(lc: LaunchCounters, gpu: Gpu, dram_bytes: float) -> Bound:
    """Bound of one launch; `dram_bytes`: its compulsory DRAM traffic (the traced footprint has no cross-block
    reuse). The per-SM terms (L1TEX data path, FMA, MMA) run on the SMs the grid fills (:func:`sm_fill`);
    DRAM bandwidth is shared by the whole chip. Global sectors and shared-memory wavefronts take turns on
    one data path (``l1tex``, see :mod:`.hardware`): its time is the sum of both (:func:`l1tex_split`)."""
    fill = sm_fill(lc.blocks_total, gpu)
    global_clk, shared_clk = l1tex_split(lc, gpu)
    return Bound({
        "dram": dram_bytes / gpu.dram_bytes_per_s,
        "l1tex": (global_clk + shared_clk) / (gpu.per_s(1.0) * fill),
        "fma": lc.total("fma") / (gpu.per_s(gpu.fp32_fma_per_clk) * fill),
        "mma": lc.total("mma") * 4096 / (gpu.per_s(gpu.fp16_mma_fma_per_clk * gpu.mma_sync_fraction) * fill),
    })


def l1tex_split(lc: LaunchCounters, gpu: Gpu) -> tuple[float, float]:
    """SM clocks of the L1TEX data path a launch spends on global sectors and on shared-memory wavefronts
    (summed over its SMs)."""
    return (lc.space_total("global") / gpu.l1_sectors_per_clk,
            lc.space_total("shared") / gpu.smem_wavefronts_per_clk)


def yardstick_bound(kind: str, shape: tuple[int, int, int, int], fp16: bool, gpu: Gpu) -> Bound:
    """A standard (dense, Cout = C) or depthwise 3x3 stride-1 convolution of `shape` at the GPU's peaks.

    The conv engine uses tensor cores at their full (wgmma) peak, FP16 or TF32 (TensorRT's FP32 default,
    half the FP16 rate); depthwise runs on the FMA pipes (packed half2 in FP16: twice the FP32 rate)."""
    n, c, h, w = shape
    elem = 2 if fp16 else 4
    act = n * c * h * w
    if kind == "conv":
        weights, macs = c * c * 9, act * c * 9
        rate = gpu.per_s(gpu.fp16_mma_fma_per_clk) * (1.0 if fp16 else 0.5)
    else:
        weights, macs = c * 9, act * 9
        rate = gpu.per_s(gpu.fp32_fma_per_clk) * (2.0 if fp16 else 1.0)
    return Bound({"dram": elem * (2 * act + weights) / gpu.dram_bytes_per_s, "math": macs / rate})


def op_floor(compulsory_bytes: float, macs: float, tensor: bool, gpu: Gpu) -> Bound:
    """The op's own floor: its compulsory bytes, and its multiply-adds at the full peak of the pipe its
    arithmetic needs (tensor cores for FP16 GEMMs; FP32 FMA otherwise: the FP32 paths keep FP32 products
    for the 1e-4 tolerance, which TF32 would not meet)."""
    rate = gpu.per_s(gpu.fp16_mma_fma_per_clk) if tensor else gpu.per_s(gpu.fp32_fma_per_clk)
    return Bound({"bytes": compulsory_bytes / gpu.dram_bytes_per_s, "work": macs / rate})


def design_floor(op: Bound, macs: float, tensor: bool, gather_sectors: int | None, gpu: Gpu) -> Bound:
    """The floor of the kernels' design class, above the op's own floor: tensor-core work at the share of the
    peak that warp-level ``mma.sync`` reaches (``wgmma``, sm_90a only, would be needed beyond it), and the
    bilinear gather's fewest L1 sectors (:func:`cases.min_gather_sectors`) at the L1 sector rate."""
    terms = dict(op.terms)
    if tensor:
        terms["mma.sync work"] = macs / gpu.per_s(gpu.fp16_mma_fma_per_clk * gpu.mma_sync_fraction)
    if gather_sectors:
        terms["gather sectors"] = gather_sectors / gpu.per_s(gpu.l1_sectors_per_clk)
    return Bound(terms)

