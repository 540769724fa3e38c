"""DRConv's tensor-core GEMM (trt_plugins_cpp/drconv/drconv_mma.h) under the access tracer: the MMA work is
that of the listed pixels (partial tiles rounded up to 16-column fragments only), the hot shared-memory
accesses are conflict-free, and the FP16 result matches the FP32 path within FP16 rounding."""

from __future__ import annotations

import ctypes
from typing import Callable, Iterator

import numpy as np
import pytest

from dynconv.plugins import native
from dynconv.plugins.perfmodel import trace_op

ATTRS = dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1])


def _inputs(n: int, c: int, h: int, w: int, o: int, m: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal((n, c, h, w)).astype(np.float32), rng.standard_normal((n, m, h, w)).astype(np.float32),
            rng.standard_normal((n, m, o, c, 3, 3)).astype(np.float32)]


@pytest.fixture
def sm_count() -> Iterator[Callable[[int], None]]:
    fn = native.cpuref_library().dynconv_cpuref_set_sm_count
    fn.argtypes = [ctypes.c_int]
    fn.restype = None
    yield fn
    fn(-1)


# (C, O, SMs, tile rows BM, tile columns BN, chunk BK): O > 64 takes the 128x128 tile, 32 <= O <= 64 the
# 64x256 one; on the H200's 132 SMs this small map takes their half-width twins (SMs 0: the full tiles)
@pytest.mark.parametrize("c, o, sms, bm, bn, bk", [(8, 96, 0, 128, 128, 32), (8, 40, 0, 64, 256, 16),
                                                   (8, 96, 132, 128, 64, 32), (8, 40, 132, 64, 128, 16)])
def test_mma_work_is_the_listed_pixels_in_16_column_fragments(c, o, sms, bm, bn, bk, sm_count):
    sm_count(sms)
    n, h, w, m = 2, 13, 21, 3
    inputs = _inputs(n, c, h, w, o, m, np.random.default_rng(o))
    launches = trace_op("drconv", inputs, dict(ATTRS, region_num=m), fp16=True, picks=10**6)
    gemm = launches[-1]
    assert gemm.kernel == f"drconv_mma_{bm}x{bn}"
    assert gemm.blocks_traced == gemm.blocks_total
    # pixels per (sample, region): the first maximum of the FP16 guide wins
    regions = inputs[1].astype(np.float16).argmax(axis=1)
    counts = [int((regions[k] == r).sum()) for k in range(n) for r in range(m)]
    # each tile of bn listed pixels: its 16-column fragments with data, x the channel tiles x the K chunks
    fragments = sum(-(-min(bn, cnt - t0) // 16) for cnt in counts for t0 in range(0, cnt, bn))
    k_chunks = -(-c * 9 // bk)
    assert gemm.mma == fragments * (-(-o // bm)) * (bm // 16) * k_chunks * (bk // 16)
    assert gemm.bank_conflict_factor() == 1.0


def test_fp16_gemm_matches_the_fp32_path():
    inputs = _inputs(1, 16, 9, 11, 72, 4, np.random.default_rng(5))
    inputs = [a.astype(np.float16).astype(np.float32) for a in inputs]
    attrs = dict(ATTRS, region_num=4)
    fp32 = native.run_reference("drconv", inputs, attrs)
    fp16 = native.run_reference("drconv", inputs, attrs, fp16_io=True)
    # FP16-exact operands, FP32 sums in another order: only summation-order differences
    assert np.abs(fp16 - fp32).max() <= 1e-4 * np.abs(fp32).max()


@pytest.mark.parametrize("o", [96, 40])
def test_the_half_width_tiles_give_the_same_bits(o, sm_count):
    """Tiles of another width list the pixels in other units and cut the lists elsewhere, but every output
    pixel still sums its C*9 products in the same chunk order."""
    inputs = [a.astype(np.float16).astype(np.float32) for a in _inputs(2, 16, 13, 21, o, 3, np.random.default_rng(o))]
    attrs = dict(ATTRS, region_num=3)
    half = native.run_reference("drconv", inputs, attrs, fp16_io=True)
    sm_count(0)
    np.testing.assert_array_equal(native.run_reference("drconv", inputs, attrs, fp16_io=True), half)



def _fp32_gemm(inputs: list[np.ndarray], m: int) -> str:
    return trace_op("drconv", inputs, dict(ATTRS, region_num=m), picks=1)[-1].kernel


def test_fp16_io_below_the_mma_tiles_takes_the_wide_fma_tile_with_the_same_bits(sm_count):
    """FP16 I/O with 16 < O < 32 runs the FP32-FMA tiles; the 64x256 one sums as the 64x64 one does."""
    inputs = [a.astype(np.float16).astype(np.float32) for a in _inputs(2, 16, 13, 21, 24, 3, np.random.default_rng(3))]
    attrs = dict(ATTRS, region_num=3)
    kernels, outs = [], []
    for sms in (132, 0):
        sm_count(sms)
        kernels.append(trace_op("drconv", inputs, attrs, fp16=True, picks=1)[-1].kernel)
        outs.append(native.run_reference("drconv", inputs, attrs, fp16_io=True))
    assert kernels == ["drconv_fma_64x64", "drconv_fma_64x256"]
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("o", [24, 72])
def test_wide_fp32_tiles_give_the_narrow_tiles_bits_and_torch_values(o, sm_count):
    """The 64x256 FP32 tile (8x8 micro-tiles) and the 64x64 one (4x4) sum each output's C*9 products in
    the same order; both within 1e-4 of the PyTorch op in float64."""
    import torch

    from dynconv.plugins import get_spec

    inputs = _inputs(2, 16, 13, 21, o, 3, np.random.default_rng(o))
    attrs = dict(ATTRS, region_num=3)
    assert _fp32_gemm(inputs, 3) == "drconv_fma_64x64"  # a small map on 132 SMs
    narrow = native.run_reference("drconv", inputs, attrs)
    sm_count(0)
    assert _fp32_gemm(inputs, 3) == "drconv_fma_64x256"
    wide = native.run_reference("drconv", inputs, attrs)
    np.testing.assert_array_equal(wide, narrow)
    spec = get_spec("drconv")
    norm = spec.normalize(attrs)
    with torch.no_grad():
        ref = torch.ops.dynconv.drconv(*[torch.from_numpy(a.astype(np.float64)) for a in inputs],
                                       *[norm[a.name] for a in spec.attributes]).numpy()
    assert float(np.abs(wide - ref).max()) <= 1e-4 * max(1.0, float(np.abs(ref).max()))


@pytest.mark.parametrize("o, kernel", [
    (256, "drconv_fma_64x256"),  # 4 channel tiles x 64 list tiles of 256: two waves on 132 SMs, as with 64x64
    (64, "drconv_fma_64x64"),    # 64 tiles of 256 would leave 68 SMs idle
    (12, "drconv_fma_16x128"),
])
def test_fp32_tile_for_the_sms(o, kernel):
    assert _fp32_gemm(_inputs(1, 16, 100, 152, o, 8, np.random.default_rng(0)), 8) == kernel
