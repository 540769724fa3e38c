"""Throughput figures of the GPUs the model predicts for (per SM per clock unless stated).

Assumptions, stated once here: L1 and shared memory are one SRAM behind one data path (the L1TEX data
stage) that returns 128 B per clock per SM: 4 sectors of global loads and stores, or one shared-memory
wavefront, and both kinds share it; ``mma_sync_fraction`` is the share of the tensor-core peak that warp-level
``mma.sync`` (what WMMA compiles to) reaches on the part: Hopper's peak needs ``wgmma``, which the
yardstick conv engines use and these kernels do not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    arch: str              #: sm_XY of the ptxas resource table
    sms: int
    clock_hz: float
    dram_bytes_per_s: float
    fp32_fma_per_clk: int  #: FP32 FMA lanes per SM
    fp16_mma_fma_per_clk: int  #: dense FP16 tensor-core FMAs per SM (FP32 accumulation)
    mma_sync_fraction: float
    l1_sectors_per_clk: int = 4
    smem_wavefronts_per_clk: int = 1
    regs_per_sm: int = 65536
    smem_per_sm: int = 228 * 1024
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32

    def per_s(self, per_sm_clk: float) -> float:
        return per_sm_clk * self.sms * self.clock_hz


H200 = Gpu("H200", "sm_90", sms=132, clock_hz=1.98e9, dram_bytes_per_s=4.8e12, fp32_fma_per_clk=128,
           fp16_mma_fma_per_clk=2048, mma_sync_fraction=0.6)
ORIN = Gpu("Jetson AGX Orin", "sm_87", sms=16, clock_hz=1.3e9, dram_bytes_per_s=204.8e9, fp32_fma_per_clk=128,
           fp16_mma_fma_per_clk=1024, mma_sync_fraction=1.0, smem_per_sm=164 * 1024, max_threads_per_sm=1536,
           max_blocks_per_sm=16)
GPUS = {"h200": H200, "orin": ORIN}
