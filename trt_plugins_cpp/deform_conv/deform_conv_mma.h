// Tensor-core variant of the fused deformable convolution, for FP16 I/O: the same implicit GEMM
// Out[o, p] = sum_{c, tap} W[o, c, tap] * S[c, tap, p] as deform_conv_math.h, with FP16 operands
// (the bilinear samples are computed in FP32 and rounded once to FP16) and FP32 accumulation in
// 16x16x16 warp MMA tiles (WMMA, sm_70 and newer).
//
// Per block: BM output channels x BN pixels, 8 warps of 32x32. The K loop runs over chunks of 16
// input channels of one offset-group segment; per chunk the block copies the weight slab
// W[o0:o0+BM, c0:c0+16, all taps] into shared memory with contiguous reads (the weight layout is
// [Cout, Cin/groups, kh, kw], so one output channel's 16*taps values are adjacent), then per tap it
// computes the bilinear descriptors, samples S[16][BN], re-lays the tap's weights as W[16][BM] and
// runs one MMA step. The epilogue stages the accumulators in shared memory (reusing the slab) so the
// bias add and the stores are coalesced along pixels.
//
// As in deform_conv_math.h the block body is written once against an executor; the CPU reference runs
// every phase for all threads (and every warp's MMA as scalar FP32 loops over FP16-rounded operands).
#pragma once

#include "common/mma_tile.h"
#include "deform_conv/deform_conv_math.h"

namespace dynconv {

constexpr int kDcMmaMaxTaps = 9;  // the weight slab (BM x 16 x taps FP16) must fit the 48 KB of static smem

//! Block tile of the MMA path (common/mma_tile.h) plus the weight slab of one chunk.
template <int BM_, int BN_>
struct DcMmaTile : MmaTile<BM_, BN_> {
    // +2 halves: an odd row stride in 4-byte words, so the per-tap re-layout (32 rows m, one column) hits
    // 32 different banks (kDcMmaMaxTaps * 16 halves = 72 words would put 8 rows in each bank: 8-way)
    static constexpr int SLAB = MmaTile<BM_, BN_>::BK * kDcMmaMaxTaps + 2;
    static_assert(BN_ <= MmaTile<BM_, BN_>::kThreads, "one thread per pixel computes the bilinear descriptors");
};
using DcMmaTileWide = DcMmaTile<128, 64>;  // Cout/groups >= 128
using DcMmaTileTall = DcMmaTile<64, 128>;  // 32 <= Cout/groups < 128

template <class Cfg>
struct DcMmaSmem {
    union {
        alignas(32) MmaHalf slab[Cfg::BM][Cfg::SLAB];  // weights of the chunk: [o][c * taps + tap] (+ padding)
        alignas(32) float stage[Cfg::BM][Cfg::LDO];    // epilogue: the block's FP32 results
    } u;
    alignas(32) MmaHalf s[Cfg::BK][Cfg::LDS];  // samples of one tap: matrix B (K x N, row-major)
    alignas(32) MmaHalf w[Cfg::BK][Cfg::LDW];  // weights of one tap: matrix A (M x K, column-major)
    float tw[4][Cfg::BN];                      // bilinear descriptors of the tap, per pixel
    int tidx[4][Cfg::BN];
    int img[Cfg::BN];
};

//! Thread t copies part of the slab W[g*cog + o0 + m][c0l : c0l + kc][all taps] (zeros past kc / cog).
template <class Cfg, typename T>
DYNCONV_HD void dc_mma_load_slab(const DeformConvParams& p, const DcPtrs<T>& io, int g, int o0, int c0l, int kc, int t,
                                 DcMmaSmem<Cfg>& sm) {
    const int cog = p.Cout / p.groups, cg = p.Cin / p.groups, taps = p.kh * p.kw;
    const int row = Cfg::BK * taps, valid = kc * taps;
    for (int e = t; e < Cfg::BM * row; e += Cfg::kThreads) {
        const int m = e / row, r = e % row;  // consecutive threads: consecutive weights of one channel o
        float val = 0.f;
        if (r < valid && o0 + m < cog) {
            const long long o = static_cast<long long>(g) * cog + o0 + m;
            val = to_float(DYNCONV_LDG(io.weight + (o * cg + c0l) * taps + r));
        }
        DYNCONV_STS(&sm.u.slab[m][r], to_mma_half(val));
    }
}

//! Thread t samples S[kk][pp] for channels c0 .. c0+kc-1 at this tap and re-lays the tap's weights.
template <class Cfg, typename T>
DYNCONV_HD void dc_mma_fill(const DeformConvParams& p, const DcPtrs<T>& io, int tap, int c0, int kc, int t,
                            DcMmaSmem<Cfg>& sm) {
    dc_fill_samples<Cfg>(p, io, c0, kc, t, sm,
                         [&](int kk, int pp, float v) { DYNCONV_STS(&sm.s[kk][pp], to_mma_half(v)); });
    const int taps = p.kh * p.kw;
    for (int e = t; e < Cfg::BK * Cfg::BM; e += Cfg::kThreads) {
        const int kk = e / Cfg::BM, m = e % Cfg::BM;
        DYNCONV_STS(&sm.w[kk][m], DYNCONV_LDS(&sm.u.slab[m][kk * taps + tap]));  // zero past kc (the slab is zero there)
    }
}

//! Epilogue: thread t writes staged results + bias; consecutive threads store consecutive pixels.
template <class Cfg, typename T>
DYNCONV_HD void dc_mma_store(const DeformConvParams& p, const DcPtrs<T>& io, int p0, int g, int o0, int t,
                             const DcMmaSmem<Cfg>& sm) {
    const int cog = p.Cout / p.groups;
    const long long hw_out = static_cast<long long>(p.Ho) * p.Wo;
    const long long total = p.N * hw_out;
    for (int e = t; e < Cfg::BM * Cfg::BN; e += Cfg::kThreads) {
        const int m = e / Cfg::BN, pp = e % Cfg::BN;
        const long long q = static_cast<long long>(p0) + pp;
        if (o0 + m >= cog || q >= total) continue;
        const long long o = static_cast<long long>(g) * cog + o0 + m;
        const long long n = q / hw_out, rem = q - n * hw_out;
        const float b = p.with_bias ? to_float(DYNCONV_LDG(io.bias + o)) : 0.f;
        DYNCONV_STG(io.out + (n * p.Cout + o) * hw_out + rem, from_float<T>(DYNCONV_LDS(&sm.u.stage[m][pp]) + b));
    }
}

//! The whole block (bx: pixel tile, by: group x output-channel tile). Block-uniform control flow only.
//! The executor provides each(f(t)) for thread phases, each_warp(f(warp, acc)) for warp phases, sync().
template <class Cfg, typename T, class Exec>
DYNCONV_HD void deform_conv_mma_block(const DeformConvParams& p, const DcPtrs<T>& io, int bx, int by,
                                      DcMmaSmem<Cfg>& sm, Exec& ex) {
    const int cog = p.Cout / p.groups, cg = p.Cin / p.groups, cpo = p.Cin / p.offset_groups;
    const int m_tiles = (cog + Cfg::BM - 1) / Cfg::BM;
    const int g = by / m_tiles, o0 = (by % m_tiles) * Cfg::BM;
    const int p0 = bx * Cfg::BN;
    const int c_begin = g * cg, c_end = c_begin + cg, taps = p.kh * p.kw;
    ex.each_warp([&](int, auto& acc) { mma_zero(acc); });
    for (int c = c_begin; c < c_end;) {
        const int og = c / cpo;                             // offset group of this segment
        const int seg_end = dc_min((og + 1) * cpo, c_end);  // channels sharing the offsets
        for (int c0 = c; c0 < seg_end; c0 += Cfg::BK) {
            const int kc = dc_min(Cfg::BK, seg_end - c0);
            ex.each([&](int t) { dc_mma_load_slab<Cfg, T>(p, io, g, o0, c0 - c_begin, kc, t, sm); });
            for (int tap = 0; tap < taps; ++tap) {
                ex.each([&](int t) { dc_descriptors<Cfg, T>(p, io, p0, tap, og, t, sm); });
                ex.sync();  // descriptors (and, at tap 0, the slab) are complete
                ex.each([&](int t) { dc_mma_fill<Cfg, T>(p, io, tap, c0, kc, t, sm); });
                ex.sync();
                ex.each_warp([&](int warp, auto& acc) { mma_step<Cfg>(warp, sm.w, sm.s, acc); });
                ex.sync();  // S, W, the descriptors and (after the last tap) the slab are rewritten next
            }
        }
        c = seg_end;
    }
    ex.each_warp([&](int warp, auto& acc) { mma_stage<Cfg>(warp, acc, sm.u.stage); });
    ex.sync();
    ex.each([&](int t) { dc_mma_store<Cfg, T>(p, io, p0, g, o0, t, sm); });
}

//! Which tile config runs a problem: the MMA path for FP16 I/O with >= 32 output channels per group and at
//! most kDcMmaMaxTaps taps; otherwise the FP32-FMA tile sized for the output channels per group.
enum class DcKernel : int { kFmaLarge, kFmaMedium, kFmaSmall, kMmaWide, kMmaTall, kFma128, kFma256 };

DYNCONV_HD DcKernel deform_conv_kernel_choice(const DeformConvParams& p, bool fp16_io) {
    const int cog = p.Cout / p.groups;
    if (fp16_io && cog >= 32 && p.kh * p.kw <= kDcMmaMaxTaps) return cog >= 128 ? DcKernel::kMmaWide : DcKernel::kMmaTall;
    if (cog > 128) return DcKernel::kFma256;
    if (cog > 64) return DcKernel::kFma128;
    return cog > 16 ? DcKernel::kFmaLarge : cog > 4 ? DcKernel::kFmaMedium : DcKernel::kFmaSmall;
}

} // namespace dynconv
