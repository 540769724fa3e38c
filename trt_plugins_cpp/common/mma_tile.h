// Tensor-core (WMMA 16x16x16, FP16 operands, FP32 accumulation) tile step shared by the implicit-GEMM
// kernels' FP16 paths, with a CPU twin (scalar FP32 sums of FP16-rounded operands) for the CPU reference.
//
// A block of 8 warps owns BM output channels x BN pixels; warp w computes the 32x32 sub-tile at
// rows (w % WARPS_M) * 32, columns (w / WARPS_M) * 32. Per K step of 16 the operands sit in shared memory:
//   A (M x K): w[k][m], i.e. column-major with ldm = LDW;   B (K x N): s[k][n], row-major with ldm = LDS;
// the FP32 results are staged row-major in stage[m][n] (ldm = LDO) for a coalesced epilogue.
// Block bodies call ex.each_warp(f(warp, acc)) for warp phases (see common/tile_gemm.h for the rest).
#pragma once

#include "common/math_common.h"
#include "common/trace.h"

#if defined(__CUDACC__)
#include <mma.h>
#endif

namespace dynconv {

#if defined(__CUDACC__)
using MmaHalf = __half;
DYNCONV_HD MmaHalf to_mma_half(float v) { return __float2half_rn(v); }
DYNCONV_HD float mma_half_to_float(MmaHalf v) { return __half2float(v); }
#else
using MmaHalf = _Float16;  // 2 bytes as on the GPU, so shared-memory layouts (and traced banks) match
inline MmaHalf to_mma_half(float v) { return static_cast<_Float16>(v); }
inline float mma_half_to_float(MmaHalf v) { return static_cast<float>(v); }
#endif

template <int BM_, int BN_>
struct MmaTile {
    static constexpr int BM = BM_, BN = BN_, BK = 16, kThreads = 256, kWarps = 8;
    static constexpr int WARPS_M = BM / 32, WARPS_N = BN / 32;
    // padded rows (ldm multiples of 8 halves / 4 floats); LDO = BN + 8 (8 banks mod 32) keeps the 8-byte
    // fragment stores of 4 rows x 4 column pairs in distinct banks (BN + 4: 2-way)
    static constexpr int LDS = BN + 8, LDW = BM + 8, LDO = BN + 8;
    static_assert(WARPS_M * WARPS_N == kWarps, "8 warps of 32x32 cover the block tile");
};

//! A warp's 32x32 FP32 accumulators on the CPU.
struct MmaAccCpu {
    float v[32][32];
};

DYNCONV_HD void mma_zero(MmaAccCpu& acc) {
    for (int i = 0; i < 32; ++i)
        for (int j = 0; j < 32; ++j) acc.v[i][j] = 0.f;
}

//! Traces a warp's 16x16 FP16 fragment load from shared memory as the GPU issues it (ldmatrix.x4): lane l
//! reads the 16 bytes at row l % 16, columns 8 * (l / 16) .. + 7 of a row-major [16][ld] block at `base`.
DYNCONV_HD void trace_fragment_load(int warp, const MmaHalf* base, int ld) {
#if !defined(__CUDA_ARCH__)
    if (!trace_sink()) return;
    for (int l = 0; l < 32; ++l) {
        trace_thread(warp * 32 + l);
        DYNCONV_TRACE_ACCESS(kShared, false, base + (l % 16) * ld + 8 * (l / 16), 16);
    }
#else
    (void)warp; (void)base; (void)ld;
#endif
}

//! Traces a 16x16 FP32 accumulator store to row-major shared memory (4 x 8-byte stores per lane: rows
//! l / 4 and l / 4 + 8, column pairs 2 * (l % 4) and 2 * (l % 4) + 8, the m16n8k16 fragment layout).
DYNCONV_HD void trace_fragment_store(int warp, const float* base, int ld) {
#if !defined(__CUDA_ARCH__)
    if (!trace_sink()) return;
    for (int h = 0; h < 4; ++h)
        for (int l = 0; l < 32; ++l) {
            trace_thread(warp * 32 + l);
            DYNCONV_TRACE_ACCESS(kShared, true, base + (l / 4 + 8 * (h & 1)) * ld + 2 * (l % 4) + 8 * (h >> 1), 8);
        }
#else
    (void)warp; (void)base; (void)ld;
#endif
}

//! One K=16 step of warp `warp`: acc[i][j] += sum_k w[k][m0 + i] * s[k][n0 + j] (exact FP16 x FP16 products
//! summed in FP32, as the tensor cores do; only the summation order differs).
template <class Cfg>
DYNCONV_HD void mma_step(int warp, const MmaHalf (&w)[Cfg::BK][Cfg::LDW], const MmaHalf (&s)[Cfg::BK][Cfg::LDS],
                         MmaAccCpu& acc) {
    const int m0 = (warp % Cfg::WARPS_M) * 32, n0 = (warp / Cfg::WARPS_M) * 32;
    for (int h = 0; h < 2; ++h) trace_fragment_load(warp, &w[0][m0 + 16 * h], Cfg::LDW);
    for (int h = 0; h < 2; ++h) trace_fragment_load(warp, &s[0][n0 + 16 * h], Cfg::LDS);
    trace_count(TraceCounter::kMma, 4);  // 2 x 2 MMAs of 16x16x16
    float a[Cfg::BK][32], b[Cfg::BK][32];
    for (int k = 0; k < Cfg::BK; ++k)
        for (int i = 0; i < 32; ++i) {
            a[k][i] = mma_half_to_float(w[k][m0 + i]);
            b[k][i] = mma_half_to_float(s[k][n0 + i]);
        }
    for (int k = 0; k < Cfg::BK; ++k)
        for (int i = 0; i < 32; ++i)
            for (int j = 0; j < 32; ++j) acc.v[i][j] += a[k][i] * b[k][j];
}

template <class Cfg>
DYNCONV_HD void mma_stage(int warp, const MmaAccCpu& acc, float (&stage)[Cfg::BM][Cfg::LDO]) {
    const int m0 = (warp % Cfg::WARPS_M) * 32, n0 = (warp / Cfg::WARPS_M) * 32;
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) trace_fragment_store(warp, &stage[m0 + 16 * i][n0 + 16 * j], Cfg::LDO);
    for (int i = 0; i < 32; ++i)
        for (int j = 0; j < 32; ++j) stage[m0 + i][n0 + j] = acc.v[i][j];
}

// ---- warp tiles of any WM x WN (multiples of 16), operands at explicit pointers ---------------------------
// A (M x K) row-major at a[m * lda + k], B (K x N) row-major at b[k * ldb + n]; lda, ldb multiples of 8 halves.

//! A warp's WM x WN FP32 accumulators on the CPU.
template <int WM, int WN>
struct MmaWarpAccCpu {
    float v[WM][WN];
};

template <int WM, int WN>
DYNCONV_HD void mma_zero(MmaWarpAccCpu<WM, WN>& acc) {
    for (int i = 0; i < WM; ++i)
        for (int j = 0; j < WN; ++j) acc.v[i][j] = 0.f;
}

//! One K=16 step of a WM x WN warp tile: acc[i][j] += sum_k a[i][k] * b[k][j] (A row-major, B row-major).
template <int WM, int WN>
DYNCONV_HD void mma_warp_step(int warp, const MmaHalf* a, int lda, const MmaHalf* b, int ldb,
                              MmaWarpAccCpu<WM, WN>& acc) {
    for (int h = 0; h < WM / 16; ++h) trace_fragment_load(warp, a + 16 * h * lda, lda);
    for (int h = 0; h < WN / 16; ++h) trace_fragment_load(warp, b + 16 * h, ldb);
    trace_count(TraceCounter::kMma, (WM / 16) * (WN / 16));
    float av[WM][16], bv[16][WN];
    for (int i = 0; i < WM; ++i)
        for (int k = 0; k < 16; ++k) av[i][k] = mma_half_to_float(a[i * lda + k]);
    for (int k = 0; k < 16; ++k)
        for (int j = 0; j < WN; ++j) bv[k][j] = mma_half_to_float(b[k * ldb + j]);
    for (int i = 0; i < WM; ++i)
        for (int k = 0; k < 16; ++k)
            for (int j = 0; j < WN; ++j) acc.v[i][j] += av[i][k] * bv[k][j];
}

//! Stores the warp's accumulators row-major at stage[i * ldo + j].
template <int WM, int WN>
DYNCONV_HD void mma_warp_stage(int warp, const MmaWarpAccCpu<WM, WN>& acc, float* stage, int ldo) {
    for (int i = 0; i < WM / 16; ++i)
        for (int j = 0; j < WN / 16; ++j) trace_fragment_store(warp, stage + 16 * i * ldo + 16 * j, ldo);
    for (int i = 0; i < WM; ++i)
        for (int j = 0; j < WN; ++j) stage[i * ldo + j] = acc.v[i][j];
}

#if defined(__CUDACC__)
//! A warp's 32x32 FP32 accumulators on the GPU: 2 x 2 WMMA fragments.
struct MmaAccGpu {
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f[2][2];
};

__device__ __forceinline__ void mma_zero(MmaAccGpu& acc) {
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) nvcuda::wmma::fill_fragment(acc.f[i][j], 0.f);
}

template <class Cfg>
__device__ __forceinline__ void mma_step(int warp, const MmaHalf (&w)[Cfg::BK][Cfg::LDW],
                                         const MmaHalf (&s)[Cfg::BK][Cfg::LDS], MmaAccGpu& acc) {
    using namespace nvcuda;
    const int m0 = (warp % Cfg::WARPS_M) * 32, n0 = (warp / Cfg::WARPS_M) * 32;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::col_major> a[2];
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &w[0][m0 + 16 * i], Cfg::LDW);
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &s[0][n0 + 16 * j], Cfg::LDS);
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc.f[i][j], a[i], b[j], acc.f[i][j]);
}

template <class Cfg>
__device__ __forceinline__ void mma_stage(int warp, const MmaAccGpu& acc, float (&stage)[Cfg::BM][Cfg::LDO]) {
    using namespace nvcuda;
    const int m0 = (warp % Cfg::WARPS_M) * 32, n0 = (warp / Cfg::WARPS_M) * 32;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&stage[m0 + 16 * i][n0 + 16 * j], acc.f[i][j], Cfg::LDO, wmma::mem_row_major);
}

//! A warp's WM x WN FP32 accumulators on the GPU: (WM/16) x (WN/16) WMMA fragments.
template <int WM, int WN>
struct MmaWarpAccGpu {
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f[WM / 16][WN / 16];
};

template <int WM, int WN>
__device__ __forceinline__ void mma_zero(MmaWarpAccGpu<WM, WN>& acc) {
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
        for (int j = 0; j < WN / 16; ++j) nvcuda::wmma::fill_fragment(acc.f[i][j], 0.f);
}

//! B fragments are loaded once per step; A fragments one at a time (fewer live registers).
template <int WM, int WN>
__device__ __forceinline__ void mma_warp_step(int, const MmaHalf* a, int lda, const MmaHalf* b, int ldb,
                                              MmaWarpAccGpu<WM, WN>& acc) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb[WN / 16];
#pragma unroll
    for (int j = 0; j < WN / 16; ++j) wmma::load_matrix_sync(fb[j], b + 16 * j, ldb);
#pragma unroll
    for (int i = 0; i < WM / 16; ++i) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
        wmma::load_matrix_sync(fa, a + 16 * i * lda, lda);
#pragma unroll
        for (int j = 0; j < WN / 16; ++j) wmma::mma_sync(acc.f[i][j], fa, fb[j], acc.f[i][j]);
    }
}

template <int WM, int WN>
__device__ __forceinline__ void mma_warp_stage(int, const MmaWarpAccGpu<WM, WN>& acc, float* stage, int ldo) {
    using namespace nvcuda;
#pragma unroll
    for (int i = 0; i < WM / 16; ++i)
#pragma unroll
        for (int j = 0; j < WN / 16; ++j)
            wmma::store_matrix_sync(stage + 16 * i * ldo + 16 * j, acc.f[i][j], ldo, wmma::mem_row_major);
}
#endif

} // namespace dynconv
