// DRConv's tensor-core GEMM pass (FP16 operands, FP32 accumulation): block tile BM output channels x BN
// listed pixels of one (sample, region), warp tiles of 64 x 64 (16 WMMA 16x16x16 accumulators), so a
// warp's 8 fragment loads per 16 reduction steps feed 16 MMAs (32x32 warp tiles: 4 loads for 4 MMAs).
//
// Operands per K chunk of BK steps, both with the reduction index contiguous (rows of LDK = BK + 8 halves:
// the 8 rows of a 16-byte access phase, and of an ldmatrix phase, fall in distinct banks):
//   a[m][k] = filter o0+m of the tile's region at k0+k (matrix A, row-major);
//   b[n][k] = input sample of column n (listed pixel) at k0+k (matrix B, column-major);
// both filled with 16-byte shared stores (8 consecutive k per thread), A with 16-byte global loads where
// the reduction length allows (K % 8 == 0), B gathered per listed pixel (lanes over consecutive columns;
// 3-wide windows read each window row as two aligned element pairs: 2 loads for 3 taps).
// Two operand buffers: the fill of chunk s+1 and the MMAs of chunk s share one barrier interval.
// Fragments of 16 columns past the tile's pixel count are skipped (partial tiles cost what they hold).
// The epilogue stages each 16x16 accumulator through a per-warp buffer (aliasing the operands) and
// writes it to the listed pixels. Each thread keeps its B columns' window origins in registers (the
// executor's per-thread state) for the whole K loop.
#pragma once

#include "common/mma_tile.h"
#include "common/trace.h"
#include "drconv/drconv_lists.h"
#include "drconv/drconv_math.h"

#if !defined(__CUDACC__)
#include <vector>
#endif

namespace dynconv {

template <int BM_, int BN_, int BK_>
struct DrMmaTile {
    static constexpr int BM = BM_, BN = BN_, BK = BK_, WM = 64, WN = 64;
    static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN, kWarps = WARPS_M * WARPS_N, kThreads = 32 * kWarps;
    static constexpr int LDK = BK + 8;                  // halves per operand row
    static constexpr int G = BK / 8;                    // 8-wide groups of k per row
    static constexpr int kCols = (BN + kThreads - 1) / kThreads;  // B columns per thread
    static constexpr int LDST = 24;                     // floats per row of a warp's 16x16 staging buffer
    static_assert(BM % WM == 0 && BN % WN == 0 && BK % 16 == 0 && (BK == 16 || BK == 32), "tile shape");
    static_assert((BM * G) % kThreads == 0 && (BN * G) % kThreads == 0 && BN % 32 == 0, "fill work splits evenly");
};

// WMMA fragment pointers must be 32-byte aligned: row blocks of 16 x LDK halves are multiples of 32 bytes
template <class Cfg>
struct DrMmaOperands {
    alignas(32) MmaHalf a[Cfg::BM][Cfg::LDK];
    alignas(32) MmaHalf b[Cfg::BN][Cfg::LDK];
};

template <class Cfg>
struct DrMmaSmem {
    union {
        DrMmaOperands<Cfg> op[2];                       // double-buffered K chunks
        float stage[Cfg::kWarps][16][Cfg::LDST];        // epilogue: one 16x16 accumulator per warp
    };
    int pix[Cfg::BN];                                   // pixel i*Wo + j of each column (-1: none)
    int y0[Cfg::BN], x0[Cfg::BN];                       // top-left input position of each column's window
    int n, region, first, len;                          // the tile: sample, region, first list slot, pixel count
    static_assert(sizeof(float[Cfg::kWarps][16][Cfg::LDST]) <= sizeof(DrMmaOperands<Cfg>[2]), "staging fits");
};

//! A thread's B columns (t + kThreads*q) and their window origins, loaded once per block.
template <class Cfg>
struct DrMmaCols {
    int pix[Cfg::kCols], y0[Cfg::kCols], x0[Cfg::kCols];
};

//! 8 FP16 operands: one 16-byte shared store.
struct alignas(16) DrHalf8 {
    MmaHalf v[8];
};

//! Columns holding data, rounded up to whole 16-column fragments (the MMAs skip the rest).
DYNCONV_HD int dr_mma_cols(int len) { return (len + 15) / 16 * 16; }

// ---- 16-byte accesses (one traced access of the vector's bytes; element-wise on the CPU) ------------------

template <typename T>
DYNCONV_HD DrHalf8 dr_load8(const T* p, int count, bool vec, const char* file, int line) {
    DrHalf8 r;
#if defined(__CUDA_ARCH__)
    (void)file; (void)line;
    if (vec && sizeof(T) == 2) {
        if (count > 0) *reinterpret_cast<uint4*>(r.v) = *reinterpret_cast<const uint4*>(p);
        else *reinterpret_cast<uint4*>(r.v) = make_uint4(0u, 0u, 0u, 0u);
        return r;
    }
    for (int j = 0; j < 8; ++j) r.v[j] = to_mma_half(j < count ? to_float(p[j]) : 0.f);
#else
    if (vec) trace_access(file, line, TraceSpace::kGlobal, false, p, 8 * int(sizeof(T)), count > 0);
    for (int j = 0; j < 8; ++j) {
        if (!vec) trace_access(file, line, TraceSpace::kGlobal, false, p + j, int(sizeof(T)), j < count);
        r.v[j] = to_mma_half(j < count ? to_float(p[j]) : 0.f);
    }
#endif
    return r;
}

DYNCONV_HD void dr_store8(MmaHalf* dst, const DrHalf8& v, const char* file, int line) {
#if defined(__CUDA_ARCH__)
    (void)file; (void)line;
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(v.v);
#else
    trace_access(file, line, TraceSpace::kShared, true, dst, 16);
    for (int j = 0; j < 8; ++j) dst[j] = v.v[j];
#endif
}

#define DR_LOAD8(p, count, vec) ::dynconv::dr_load8((p), (count), (vec), __FILE__, __LINE__)
#define DR_STORE8(dst, v) ::dynconv::dr_store8((dst), (v), __FILE__, __LINE__)

// ---- thread phases -----------------------------------------------------------------------------------

//! Columns c = t, t + kThreads, ... < BN: list slot -> pixel and window origin (sm.pix/y0/x0).
template <class Cfg>
DYNCONV_HD void dr_mma_load_pixels(const DrconvParams& p, const int* list, int t, DrMmaSmem<Cfg>& sm) {
    for (int c = t; c < Cfg::BN; c += Cfg::kThreads) {
        const int q = DYNCONV_LDG_IF(c < sm.len, list + sm.first + c, -1);
        DYNCONV_STS(&sm.pix[c], q);
        DYNCONV_STS(&sm.y0[c], q < 0 ? 0 : (q / p.Wo) * p.sh - p.ph);
        DYNCONV_STS(&sm.x0[c], q < 0 ? 0 : (q % p.Wo) * p.sw - p.pw);
    }
}

template <class Cfg>
DYNCONV_HD void dr_mma_load_cols(int t, const DrMmaSmem<Cfg>& sm, DrMmaCols<Cfg>& cols) {
    DYNCONV_UNROLL
    for (int q = 0; q < Cfg::kCols; ++q) {
        const int c = t + q * Cfg::kThreads;
        cols.pix[q] = c < Cfg::BN ? DYNCONV_LDS(&sm.pix[c]) : -1;
        cols.y0[q] = c < Cfg::BN ? DYNCONV_LDS(&sm.y0[c]) : 0;
        cols.x0[q] = c < Cfg::BN ? DYNCONV_LDS(&sm.x0[c]) : 0;
    }
}

//! A: filters o0 .. o0+BM-1 of the tile's region at k0 .. k0+BK-1. Work item e: 8 consecutive k of one
//! row; the 8 lanes of a store phase take 8 consecutive rows (distinct banks), a warp covers 32 / G rows.
template <class Cfg, typename T>
DYNCONV_HD void dr_mma_fill_a(const DrconvParams& p, const T* filters, int o0, int k0, bool vec, int t,
                              const DrMmaSmem<Cfg>& sm, DrMmaOperands<Cfg>& op) {
    const int K = p.C * p.kh * p.kw;
    const T* f = filters + (static_cast<long long>(sm.n) * p.m + sm.region) * p.O * static_cast<long long>(K);
    for (int e = t; e < Cfg::BM * Cfg::G; e += Cfg::kThreads) {
        const int l = e % 32, ph = l / 8, g = ph % Cfg::G;
        const int m = (e / 32) * (32 / Cfg::G) + (ph / Cfg::G) * 8 + l % 8;
        const int k = k0 + 8 * g, left = K - k;
        const int count = o0 + m < p.O ? (left < 0 ? 0 : left < 8 ? left : 8) : 0;
        DR_STORE8(&op.a[m][8 * g], DR_LOAD8(f + static_cast<long long>(o0 + m) * K + k, count, vec));
    }
}

//! An aligned pair of input elements (one 4-byte load of FP16 data), zeros where !ok.
template <typename T>
DYNCONV_HD void dr_load2(const T* p, bool ok, float& e0, float& e1, const char* file, int line) {
#if defined(__CUDA_ARCH__)
    (void)file; (void)line;
    if (sizeof(T) == 2 && ok) {
        const __half2 v = *reinterpret_cast<const __half2*>(p);
        e0 = __low2float(v);
        e1 = __high2float(v);
        return;
    }
#else
    trace_access(file, line, TraceSpace::kGlobal, false, p, 2 * int(sizeof(T)), ok);
#endif
    e0 = ok ? to_float(p[0]) : 0.f;
    e1 = ok ? to_float(p[1]) : 0.f;
}

#define DR_LOAD2(p, ok, e0, e1) ::dynconv::dr_load2((p), (ok), (e0), (e1), __FILE__, __LINE__)

//! B values of one column at k0 .. k0+BK-1, one element per tap (any window).
template <class Cfg, typename T>
DYNCONV_HD void dr_gather_taps(const DrconvParams& p, const T* xn, long long plane, int k0, int pix, int y0, int x0,
                               DrHalf8 (&h)[Cfg::G]) {
    const int taps = p.kh * p.kw, K = p.C * taps;
    int c = k0 / taps, tap = k0 - c * taps;
    int u = tap / p.kw, v = tap - u * p.kw;
    DYNCONV_UNROLL
    for (int j = 0; j < Cfg::BK; ++j) {
        const int y = y0 + u * p.dh, xx = x0 + v * p.dw;
        const bool inside = pix >= 0 && k0 + j < K && y >= 0 && y < p.H && xx >= 0 && xx < p.W;
        h[j / 8].v[j % 8] = to_mma_half(to_float(DYNCONV_LDG_IF(inside, xn + c * plane + y * p.W + xx, T())));
        if (++v == p.kw) { v = 0; if (++u == p.kh) { u = 0; ++c; } }
    }
}

//! Windows 3 wide, dilation 1, W even: the 3 taps of a window row (a "run", 3 consecutive k) come from two
//! aligned element pairs (4-byte loads) instead of three 2-byte loads; which element of which pair is a
//! tap depends only on the parity of the column's x0. R0 = k0 % 3: the chunk starts R0 taps into a run,
//! so the runs' positions in the chunk are compile-time constants (the values stay in registers).
template <class Cfg, int R0, typename T>
DYNCONV_HD void dr_gather_runs(const DrconvParams& p, const T* xn, long long plane, int k0, int pix, int y0, int x0,
                               DrHalf8 (&h)[Cfg::G]) {
    constexpr int kRuns = (Cfg::BK + R0 + 2) / 3;
    const int run0 = (k0 - R0) / 3;  // K = C * kh * 3: runs never straddle a channel
    int c = run0 / p.kh, u = run0 - c * p.kh;
    DYNCONV_UNROLL
    for (int ri = 0; ri < kRuns; ++ri) {
        const int first = 3 * ri - R0 < 0 ? 0 : 3 * ri - R0, last = 3 * ri + 2 - R0 < Cfg::BK ? 3 * ri + 2 - R0 : Cfg::BK - 1;
        const int len = last - first + 1, y = y0 + u * p.dh, xs = x0 + first + R0 - 3 * ri, a = xs & ~1, odd = xs & 1;
        const bool row = pix >= 0 && c < p.C && y >= 0 && y < p.H;
        const T* r = xn + c * plane + static_cast<long long>(y) * p.W + a;
        float e[4] = {0.f, 0.f, 0.f, 0.f};  // elements a .. a+3 of the row (a even: pairs inside or outside [0, W))
        DR_LOAD2(r, row && a >= 0 && a < p.W, e[0], e[1]);
        if (len > 1) DR_LOAD2(r + 2, row && a + 2 >= 0 && a + 2 < p.W, e[2], e[3]);
        DYNCONV_UNROLL
        for (int j = 0; j < len; ++j) h[(first + j) / 8].v[(first + j) % 8] = to_mma_half(odd ? e[j + 1] : e[j]);
        if (++u == p.kh) { u = 0; ++c; }
    }
}

//! The pair loads apply: 3-wide windows at dilation 1 on rows of even width, 4-byte aligned FP16 pairs.
template <typename T>
DYNCONV_HD bool dr_pair_runs(const DrconvParams& p, const T* x) {
    return p.kw == 3 && p.dw == 1 && p.W % 2 == 0 && reinterpret_cast<unsigned long long>(x) % (2 * sizeof(T)) == 0;
}

//! B: the input samples of the thread's columns at k0 .. k0+BK-1 (the lanes of a warp take 32 consecutive
//! columns, the same k; 16-byte shared stores of 8 k). Columns past `cols` are not read by the MMAs.
template <class Cfg, typename T>
DYNCONV_HD void dr_mma_fill_b(const DrconvParams& p, const T* x, int k0, bool runs, int cols, int t,
                              const DrMmaSmem<Cfg>& sm, const DrMmaCols<Cfg>& cd, DrMmaOperands<Cfg>& op) {
    const long long plane = static_cast<long long>(p.H) * p.W;
    const T* xn = x + static_cast<long long>(sm.n) * p.C * plane;
    DYNCONV_UNROLL
    for (int q = 0; q < Cfg::kCols; ++q) {
        const int n = t + q * Cfg::kThreads;
        if (n >= cols || n >= Cfg::BN) continue;  // trailing items only: the lanes' access slots stay aligned
        DrHalf8 h[Cfg::G];
        const int pix = cd.pix[q], y0 = cd.y0[q], x0 = cd.x0[q];
        if (!runs) dr_gather_taps<Cfg, T>(p, xn, plane, k0, pix, y0, x0, h);
        else if (k0 % 3 == 0) dr_gather_runs<Cfg, 0, T>(p, xn, plane, k0, pix, y0, x0, h);
        else if (k0 % 3 == 1) dr_gather_runs<Cfg, 1, T>(p, xn, plane, k0, pix, y0, x0, h);
        else dr_gather_runs<Cfg, 2, T>(p, xn, plane, k0, pix, y0, x0, h);
        DYNCONV_UNROLL
        for (int g = 0; g < Cfg::G; ++g) DR_STORE8(&op.b[n][8 * g], h[g]);
    }
}

template <class Cfg, typename T>
DYNCONV_HD void dr_mma_fill(const DrconvParams& p, const T* x, const T* filters, int o0, int k0, bool vec, bool runs,
                            int cols, int t, const DrMmaSmem<Cfg>& sm, const DrMmaCols<Cfg>& cd, DrMmaOperands<Cfg>& op) {
    dr_mma_fill_a<Cfg, T>(p, filters, o0, k0, vec, t, sm, op);
    dr_mma_fill_b<Cfg, T>(p, x, k0, runs, cols, t, sm, cd, op);
}

// ---- warp phases: CPU twin -----------------------------------------------------------------------------

//! A warp's 64x64 FP32 accumulators on the CPU.
struct DrMmaAccCpu {
    float v[64][64];
};

DYNCONV_HD void dr_mma_zero(DrMmaAccCpu& acc) {
    for (auto& row : acc.v)
        for (float& e : row) e = 0.f;
}

//! Fragments of 16 columns of warp `warp` that hold data (0..4).
template <class Cfg>
DYNCONV_HD int dr_warp_fragments(int warp, int cols) {
    const int n0 = (warp / Cfg::WARPS_M) * Cfg::WN, left = (cols - n0) / 16;
    return left < 0 ? 0 : left < 4 ? left : 4;
}

//! One K chunk: acc[i][j] += sum_k a[m0+i][k] * b[n0+j][k] (exact FP16 products summed in FP32).
template <class Cfg>
inline void dr_mma_step(int warp, const DrMmaOperands<Cfg>& op, int cols, DrMmaAccCpu& acc) {
    const int m0 = (warp % Cfg::WARPS_M) * Cfg::WM, n0 = (warp / Cfg::WARPS_M) * Cfg::WN;
    const int nf = dr_warp_fragments<Cfg>(warp, cols);
    if (nf == 0) return;
    for (int kk = 0; kk < Cfg::BK; kk += 16) {
        for (int i = 0; i < 4; ++i) trace_fragment_load(warp, &op.a[m0 + 16 * i][kk], Cfg::LDK);
        for (int j = 0; j < nf; ++j) trace_fragment_load(warp, &op.b[n0 + 16 * j][kk], Cfg::LDK);
    }
    trace_count(TraceCounter::kMma, (Cfg::BK / 16) * 4 * nf);
    float b[64][Cfg::BK];
    for (int j = 0; j < 16 * nf; ++j)
        for (int k = 0; k < Cfg::BK; ++k) b[j][k] = mma_half_to_float(op.b[n0 + j][k]);
    for (int i = 0; i < 64; ++i) {
        float a[Cfg::BK];
        for (int k = 0; k < Cfg::BK; ++k) a[k] = mma_half_to_float(op.a[m0 + i][k]);
        for (int j = 0; j < 16 * nf; ++j) {
            float s = acc.v[i][j];
            for (int k = 0; k < Cfg::BK; ++k) s += a[k] * b[j][k];
            acc.v[i][j] = s;
        }
    }
}

#if !defined(__CUDACC__)
//! CPU executor of the block body: per-thread column state, per-warp accumulators (common/cpu_exec.h).
template <class Cfg>
struct DrMmaExecCpu {
    std::vector<DrMmaCols<Cfg>> cols = std::vector<DrMmaCols<Cfg>>(Cfg::kThreads);
    std::vector<DrMmaAccCpu> acc = std::vector<DrMmaAccCpu>(Cfg::kWarps);
    template <class F>
    void each(F&& f) {
        trace_phase();
        for (int t = 0; t < Cfg::kThreads; ++t) {
            trace_thread(t);
            f(t, cols[t]);
        }
    }
    template <class F>
    void each_warp(F&& f) {
        trace_phase();
        for (int w = 0; w < Cfg::kWarps; ++w) {
            trace_thread(w * 32);
            f(w, acc[w]);
        }
    }
    void sync() {}
};
#endif

//! Row of the staging buffer lane `lane` reads in read r (0..7): rows a and a + 2 (a = 0, 1, 4, 5, ...) per
//! read, 16 columns each: with LDST = 24 the two rows' 16 words fall in distinct banks.
DYNCONV_HD int dr_stage_row(int r, int lane) { return (r / 2) * 4 + r % 2 + 2 * (lane / 16); }

//! Lane `lane`'s part of writing one staged 16x16 accumulator (rows m, columns n of the tile) to the output.
template <class Cfg, typename T>
DYNCONV_HD void dr_mma_write_fragment(const DrconvParams& p, T* out, int o0, int m, int n, int lane,
                                      const DrMmaSmem<Cfg>& sm, const float (&st)[16][Cfg::LDST]) {
    const long long hw = static_cast<long long>(p.Ho) * p.Wo;
    const int col = lane % 16, q = DYNCONV_LDS(&sm.pix[n + col]);
    for (int r = 0; r < 8; ++r) {
        const int row = dr_stage_row(r, lane), o = o0 + m + row;
        const float v = DYNCONV_LDS(&st[row][col]);
        if (q >= 0 && o < p.O) DYNCONV_STG(out + (static_cast<long long>(sm.n) * p.O + o) * hw + q, from_float<T>(v));
    }
}

inline void dr_mma_epilogue_cpu_fragment(int warp, const DrMmaAccCpu& acc, int i, int j, float (&st)[16][24]) {
    trace_fragment_store(warp, &st[0][0], 24);
    for (int r = 0; r < 16; ++r)
        for (int c = 0; c < 16; ++c) st[r][c] = acc.v[16 * i + r][16 * j + c];
}

template <class Cfg, typename T>
inline void dr_mma_epilogue(const DrconvParams& p, T* out, int o0, int cols, int warp, DrMmaSmem<Cfg>& sm,
                            const DrMmaAccCpu& acc) {
    static_assert(Cfg::LDST == 24, "CPU staging layout");
    const int m0 = (warp % Cfg::WARPS_M) * Cfg::WM, n0 = (warp / Cfg::WARPS_M) * Cfg::WN;
    const int nf = dr_warp_fragments<Cfg>(warp, cols);
    for (int j = 0; j < nf; ++j)
        for (int i = 0; i < 4; ++i) {
            dr_mma_epilogue_cpu_fragment(warp, acc, i, j, sm.stage[warp]);
            for (int lane = 0; lane < 32; ++lane) {
                trace_thread(warp * 32 + lane);
                dr_mma_write_fragment<Cfg, T>(p, out, o0, m0 + 16 * i, n0 + 16 * j, lane, sm, sm.stage[warp]);
            }
        }
}

// ---- warp phases: GPU ------------------------------------------------------------------------------------

#if defined(__CUDACC__)
struct DrMmaAccGpu {
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> f[4][4];
};

__device__ __forceinline__ void dr_mma_zero(DrMmaAccGpu& acc) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) nvcuda::wmma::fill_fragment(acc.f[i][j], 0.f);
}

template <class Cfg>
__device__ __forceinline__ void dr_mma_step(int warp, const DrMmaOperands<Cfg>& op, int cols, DrMmaAccGpu& acc) {
    using namespace nvcuda;
    const int m0 = (warp % Cfg::WARPS_M) * Cfg::WM, n0 = (warp / Cfg::WARPS_M) * Cfg::WN;
    const int nf = dr_warp_fragments<Cfg>(warp, cols);
#pragma unroll
    for (int kk = 0; kk < Cfg::BK; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) wmma::load_matrix_sync(a[i], &op.a[m0 + 16 * i][kk], Cfg::LDK);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            if (j >= nf) break;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
            wmma::load_matrix_sync(b, &op.b[n0 + 16 * j][kk], Cfg::LDK);
#pragma unroll
            for (int i = 0; i < 4; ++i) wmma::mma_sync(acc.f[i][j], a[i], b, acc.f[i][j]);
        }
    }
}

template <class Cfg, typename T>
__device__ __forceinline__ void dr_mma_epilogue(const DrconvParams& p, T* out, int o0, int cols, int warp,
                                                DrMmaSmem<Cfg>& sm, const DrMmaAccGpu& acc) {
    const int m0 = (warp % Cfg::WARPS_M) * Cfg::WM, n0 = (warp / Cfg::WARPS_M) * Cfg::WN;
    const int nf = dr_warp_fragments<Cfg>(warp, cols), lane = int(threadIdx.x) & 31;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        if (j >= nf) break;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            nvcuda::wmma::store_matrix_sync(&sm.stage[warp][0][0], acc.f[i][j], Cfg::LDST, nvcuda::wmma::mem_row_major);
            __syncwarp();
            dr_mma_write_fragment<Cfg, T>(p, out, o0, m0 + 16 * i, n0 + 16 * j, lane, sm, sm.stage[warp]);
            __syncwarp();
        }
    }
}

//! GPU executor: this thread's column state and its warp's fragments in registers.
template <class Cfg>
struct DrMmaExecGpu {
    DrMmaCols<Cfg> cols;
    DrMmaAccGpu acc;
    template <class F>
    __device__ __forceinline__ void each(F&& f) { f(int(threadIdx.x), cols); }
    template <class F>
    __device__ __forceinline__ void each_warp(F&& f) { f(int(threadIdx.x) >> 5, acc); }
    __device__ __forceinline__ void sync() { __syncthreads(); }
};
#endif

// ---- the block body --------------------------------------------------------------------------------------

//! The tensor-core GEMM block: tile bx of the (sample, region) lists x output channels by*BM ...
//! Control flow depends only on shared values read after a barrier (block-uniform) or on the warp index.
template <class Cfg, typename T, class Exec>
DYNCONV_HD void drconv_mma_block(const DrconvParams& p, const T* x, const T* filters, T* out, const DrLists& l,
                                 int bx, int by, DrMmaSmem<Cfg>& sm, Exec& ex) {
    const int o0 = by * Cfg::BM;
    ex.each([&](int t, DrMmaCols<Cfg>&) { dr_find_tile(p, l, Cfg::BN, bx, t, sm.n, sm.region, sm.first, sm.len); });
    ex.sync();
    if (sm.len == 0) return;
    const int* list = l.pixels + static_cast<long long>(sm.n) * p.Ho * p.Wo;
    ex.each([&](int t, DrMmaCols<Cfg>&) { dr_mma_load_pixels<Cfg>(p, list, t, sm); });
    ex.each_warp([&](int, auto& acc) { dr_mma_zero(acc); });
    ex.sync();
    const int K = p.C * p.kh * p.kw, steps = (K + Cfg::BK - 1) / Cfg::BK, cols = dr_mma_cols(sm.len);
    // 16-byte filter loads: rows start 16-byte aligned when K % 8 == 0 (and the tensor is)
    const bool vec = K % 8 == 0 && reinterpret_cast<unsigned long long>(filters) % 16 == 0, runs = dr_pair_runs(p, x);
    ex.each([&](int t, DrMmaCols<Cfg>& cd) {
        dr_mma_load_cols<Cfg>(t, sm, cd);
        dr_mma_fill<Cfg, T>(p, x, filters, o0, 0, vec, runs, cols, t, sm, cd, sm.op[0]);
    });
    ex.sync();
    for (int s = 0; s < steps; ++s) {
        if (s + 1 < steps)
            ex.each([&](int t, DrMmaCols<Cfg>& cd) {
                dr_mma_fill<Cfg, T>(p, x, filters, o0, (s + 1) * Cfg::BK, vec, runs, cols, t, sm, cd,
                                   sm.op[(s + 1) & 1]);
            });
        ex.each_warp([&](int warp, auto& acc) { dr_mma_step<Cfg>(warp, sm.op[s & 1], cols, acc); });
        ex.sync();
    }
    ex.each_warp([&](int warp, auto& acc) { dr_mma_epilogue<Cfg, T>(p, out, o0, cols, warp, sm, acc); });
}

} // namespace dynconv
