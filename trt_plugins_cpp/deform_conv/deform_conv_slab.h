// Tensor-core DCNv1/v2 for FP16 I/O with the whole reduction slab of a chunk in shared memory (dynamic
// shared memory above 48 KB; the tile is the largest the device's opt-in limit allows, from 186 KB on
// sm_90 down to 51 KB on sm_75): the implicit GEMM of deform_conv_math.h,
//   Out[o, p] = sum_r A[o, r] * B[r, p],   r = c * taps + tap  (the weight's own [Cout, Cin/groups, kh*kw] order),
// with FP16 operands (samples computed in FP32, rounded once) and FP32 accumulation in WMMA warp tiles.
//
// Per block: BM output channels (all of a group's channels up to 256, so each bilinear sample is computed
// once per launch) x BN pixels, 8 warps of WM x WN. Per offset-group segment the block computes the
// bilinear descriptors of every (tap, pixel) once into shared memory. Per chunk of 16 input channels it
// fills A = W[o0:o0+BM, 16*taps rows] (contiguous weight reads, no re-layout) and B = the samples of the
// chunk's 16*taps (channel, tap) rows, one barrier, then each warp runs `taps` MMA steps of K = 16 on
// the slab. The epilogue stages the accumulators in the A slab's memory for coalesced, bias-added stores
// along pixels.
//
// The gather reads either the NCHW input (lanes on consecutive pixels of one channel: each corner load
// of a warp touches as many 32-byte sectors as the sample points spread over rows) or, given a workspace,
// an NHWC copy made by deform_conv_nhwc_block (4-8x fewer sectors than NCHW on scattered offsets): a lane
// pair samples the chunk's 16 channels at four pixels, each corner as the two 16-byte halves of one 32-byte
// sector in one instruction (dc_slab_fill_nhwc).
//
// The block body is written once against an executor (common/tile_gemm.h conventions); the CPU
// reference runs it phase by phase (every warp's MMA as scalar FP32 sums of FP16-rounded operands).
#pragma once

#include "common/mma_tile.h"
#include "deform_conv/deform_conv_math.h"

namespace dynconv {

constexpr int kDcMmaMaxTaps = 9;  // taps of the tensor-core path (the slabs hold 16 channels x taps rows)

template <int BM_, int BN_, int WM_, int WN_>
struct DcSlabTile {
    static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_, kThreads = 256, kWarps = 8;
    static constexpr int CK = 16;                    // input channels per chunk
    static constexpr int KMAX = CK * kDcMmaMaxTaps;  // reduction rows of a chunk, (channel, tap) pairs
    static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN;
    // rows padded by 8 halves / floats: row strides of 12, 4 and 8 banks (mod 32) put the 8 rows of each
    // 16-byte ldmatrix phase and the 8-byte accumulator stores in distinct banks
    static constexpr int LDA = KMAX + 8, LDB = BN + 8, LDO = BN + 8;
    // the epilogue stages STAGE_M rows of results at a time (in the A slab's memory)
    static constexpr int STAGE_M = BM > 128 ? 128 : BM, STAGES = BM / STAGE_M;
    static_assert(WARPS_M * WARPS_N == kWarps, "8 warps cover the block tile");
    static_assert(STAGE_M % WM == 0 && BM % STAGE_M == 0, "a warp's rows lie in one stage pass");
    static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tiles of 16x16 fragments");
};
using DcSlabWide = DcSlabTile<256, 128, 64, 64>;  // 128 < Cout/groups (one tile up to 256)
using DcSlabMid = DcSlabTile<128, 128, 64, 32>;  // 64 < Cout/groups <= 128
using DcSlabTall256 = DcSlabTile<64, 256, 64, 32>;  // 32 <= Cout/groups <= 64 (186 KB: sm_90)
using DcSlabTall = DcSlabTile<64, 128, 32, 32>;  // 32 <= Cout/groups <= 64
// smaller tiles for devices with less shared memory per block (sm_86/89: 99 KB, sm_75: 64 KB; 64x128 fits 99 KB)
using DcSlabMid64 = DcSlabTile<128, 64, 32, 32>;    // 64 < Cout/groups
using DcSlabCompact = DcSlabTile<64, 64, 32, 16>;   // any Cout/groups >= 32

template <class Cfg>
struct DcSlabSmem {
    union {
        alignas(32) MmaHalf a[Cfg::BM][Cfg::LDA];    // A: weights of the chunk, [o][c * taps + tap]
        alignas(32) float stage[Cfg::STAGE_M][Cfg::LDO];  // epilogue: STAGE_M rows of FP32 results
    } u;
    alignas(32) MmaHalf b[Cfg::KMAX][Cfg::LDB];      // B: samples of the chunk, [c * taps + tap][pixel]
    alignas(16) float tw[kDcMmaMaxTaps][4][Cfg::BN];  // bilinear descriptors of the segment, per (tap, pixel)
    alignas(16) int tpos[kDcMmaMaxTaps][Cfg::BN];     // top-left corner of each sample (dc_corner_origin)
    alignas(16) int img[Cfg::BN];                                // image index n of each pixel (-1: past the end)
};

//! A sample's four corners as one int in shared memory instead of four indices: the top-left corner
//! (y0, x0) = (floor(y), floor(x)) packed as (y0 + 1) << 16 | (x0 + 1), or -1 where bilinear_tap reads
//! nothing (the point outside -1 < y < H, -1 < x < W). Needs H <= kDcMaxSlabH, W <= kDcMaxSlabW.
constexpr int kDcMaxSlabH = 32766, kDcMaxSlabW = 65534;

DYNCONV_HD int dc_corner_origin(int H, int W, float y, float x) {
    if (!(y > -1.f && y < float(H) && x > -1.f && x < float(W))) return -1;
    return ((int(floorf(y)) + 1) << 16) | (int(floorf(x)) + 1);
}

//! Corner q (0: top-left, 1: top-right, 2: bottom-left, 3: bottom-right) of a packed origin: its index
//! y * W + x in the image plane, or -1 outside the image, exactly as bilinear_tap lists it.
DYNCONV_HD int dc_corner_index(int pos, int q, int H, int W) {
    if (pos < 0) return -1;
    const int y = (pos >> 16) - 1 + (q >> 1), x = (pos & 0xffff) - 1 + (q & 1);
    return y >= 0 && y < H && x >= 0 && x < W ? y * W + x : -1;
}

//! Thread t computes the descriptors of (tap, pixel) pairs t, t + 256, ... for offset group og.
template <class Cfg, typename T>
DYNCONV_HD void dc_slab_descriptors(const DeformConvParams& p, const DcPtrs<T>& io, int p0, int og, int t,
                                    DcSlabSmem<Cfg>& sm) {
    const int taps = p.kh * p.kw;
    const int hw_out = p.Ho * p.Wo, total = p.N * hw_out;  // < INT_MAX (deform_conv_shapes)
    for (int e = t; e < taps * Cfg::BN; e += Cfg::kThreads) {
        const int tap = e / Cfg::BN, pp = e % Cfg::BN, q = p0 + pp;
        BilinearTap b;
        int n = -1, pos = -1;
        if (q < total) {
            n = q / hw_out;
            const int rem = q - n * hw_out, i = rem / p.Wo, j = rem - (rem / p.Wo) * p.Wo;
            const long long ch = static_cast<long long>(og) * taps + tap;
            const long long plane = static_cast<long long>(hw_out);
            const T* off = io.offset + (static_cast<long long>(n) * 2 * p.offset_groups * taps + 2 * ch) * plane + rem;
            const float dy = to_float(DYNCONV_LDG(off)), dx = to_float(DYNCONV_LDG(off + plane));
            const float m = p.with_mask
                                ? to_float(DYNCONV_LDG(io.mask + (static_cast<long long>(n) * p.offset_groups * taps + ch) * plane + rem))
                                : 1.f;
            const float y = float(i * p.sh - p.ph + (tap / p.kw) * p.dh) + dy;
            const float x = float(j * p.sw - p.pw + (tap % p.kw) * p.dw) + dx;
            b = bilinear_tap(p.H, p.W, y, x, m);
            pos = dc_corner_origin(p.H, p.W, y, x);
            trace_count(TraceCounter::kDescriptors, 1);
        } else {
            for (int c = 0; c < 4; ++c) { b.idx[c] = -1; b.w[c] = 0.f; }
        }
        if (tap == 0) DYNCONV_STS(&sm.img[pp], n);
        DYNCONV_STS(&sm.tpos[tap][pp], pos);
        for (int c = 0; c < 4; ++c) DYNCONV_STS(&sm.tw[tap][c][pp], b.w[c]);
    }
}

//! Copies 8 weights as one 16-byte load and store (FP16 on the GPU; traced as such on the CPU): zeros
//! unless `load`; nothing unless `store` (an inactive lane).
template <typename T>
DYNCONV_HD void dc_copy8(bool store, bool load, const T* src, MmaHalf* dst) {
#if defined(__CUDA_ARCH__)
    if (store) *reinterpret_cast<uint4*>(dst) = load ? *reinterpret_cast<const uint4*>(src) : make_uint4(0u, 0u, 0u, 0u);
#else
    trace_access(__FILE__, __LINE__, TraceSpace::kGlobal, false, src, int(8 * sizeof(T)), load);
    trace_access(__FILE__, __LINE__, TraceSpace::kShared, true, dst, 16, store);
    if (store)
        for (int k = 0; k < 8; ++k) dst[k] = to_mma_half(load ? to_float(src[k]) : 0.f);
#endif
}

//! Thread t fills its part of A: the weights of channels c0l .. c0l+kc-1 of the group, all taps (zero past
//! kc and cog). Where the rows are 16-byte aligned, a warp copies 8-element runs with lane l on row
//! l % 8 and run l / 8 of a group of 4: each 8-lane phase stores one run of 8 rows (LDA: 8 distinct bank
//! quads) and each row's 64 bytes are 2 whole sectors.
template <class Cfg, typename T>
DYNCONV_HD void dc_slab_fill_a(const DeformConvParams& p, const DcPtrs<T>& io, int g, int o0, int c0l, int kc, int t,
                               DcSlabSmem<Cfg>& sm) {
    const int cog = p.Cout / p.groups, cg = p.Cin / p.groups, taps = p.kh * p.kw;
    const int row = Cfg::CK * taps, valid = kc * taps;  // row <= KMAX < kThreads
    if ((cg * taps) % 8 == 0 && (c0l * taps) % 8 == 0) {
        const int runs = row / 8, run_groups = (runs + 3) / 4;
        static_assert(Cfg::BM % 8 == 0, "rows in groups of 8");
        for (int e = t; e < (Cfg::BM / 8) * run_groups * 32; e += Cfg::kThreads) {
            const int l = e % 32, grp = e / 32;  // grp: warp-uniform
            const int m = (grp / run_groups) * 8 + l % 8, j = (grp % run_groups) * 4 + l / 8, r = 8 * j;
            const bool active = j < runs, row_ok = o0 + m < cog;
            const long long o = static_cast<long long>(g) * cog + o0 + (row_ok ? m : 0);
            const T* src = io.weight + (o * cg + c0l) * taps + (active ? r : 0);
            if (active && row_ok && r < valid && r + 8 > valid) {  // the partial run of a partial chunk
                for (int k = 0; k < 8; ++k)
                    DYNCONV_STS(&sm.u.a[m][r + k], to_mma_half(r + k < valid ? to_float(DYNCONV_LDG(src + k)) : 0.f));
            } else {
                dc_copy8(active, active && row_ok && r + 8 <= valid, src, &sm.u.a[m][active ? r : 0]);
            }
        }
        return;
    }
    const int dm = Cfg::kThreads / row, dr = Cfg::kThreads % row;
    for (int m = t / row, r = t % row; m < Cfg::BM;) {  // consecutive threads: consecutive weights of one o
        float val = 0.f;
        if (r < valid && o0 + m < cog) {
            const long long o = static_cast<long long>(g) * cog + o0 + m;
            val = to_float(DYNCONV_LDG(io.weight + (o * cg + c0l) * taps + r));
        }
        DYNCONV_STS(&sm.u.a[m][r], to_mma_half(val));
        m += dm;
        r += dr;
        if (r >= row) { r -= row; ++m; }
    }
}

//! B fill from the NCHW input: item (tap, pixel) samples channels c0 .. c0+kc-1 (zero past kc); consecutive
//! threads take consecutive pixels.
template <class Cfg, typename T>
DYNCONV_HD void dc_slab_fill_nchw(const DeformConvParams& p, const DcPtrs<T>& io, int c0, int kc, int t,
                                  DcSlabSmem<Cfg>& sm) {
    const int taps = p.kh * p.kw;
    for (int e = t; e < taps * Cfg::BN; e += Cfg::kThreads) {
        const int tap = e / Cfg::BN, pp = e % Cfg::BN;
        DcPixelTap d;
        d.n = DYNCONV_LDS(&sm.img[pp]);
        const int pos = DYNCONV_LDS(&sm.tpos[tap][pp]);
        for (int q = 0; q < 4; ++q) {
            d.idx[q] = dc_corner_index(pos, q, p.H, p.W);
            d.w[q] = DYNCONV_LDS(&sm.tw[tap][q][pp]);
        }
        for (int c = 0; c < Cfg::CK; ++c)
            DYNCONV_STS(&sm.b[c * taps + tap][pp], to_mma_half(c < kc ? dc_sample(p, io, d, c0 + c) : 0.f));
    }
}

//! Writes four halves at dst (8-byte aligned) with one 8-byte shared-memory store.
DYNCONV_HD void dc_sts_quad(MmaHalf* dst, MmaHalf a, MmaHalf b, MmaHalf c, MmaHalf d) {
#if defined(__CUDA_ARCH__)
    const __half2 lo = __halves2half2(a, b), hi = __halves2half2(c, d);
    *reinterpret_cast<uint2*>(dst) = make_uint2(*reinterpret_cast<const unsigned*>(&lo), *reinterpret_cast<const unsigned*>(&hi));
#else
    trace_access(__FILE__, __LINE__, TraceSpace::kShared, true, dst, 8);
    dst[0] = a;
    dst[1] = b;
    dst[2] = c;
    dst[3] = d;
#endif
}

//! B fill from the NHWC copy xt [N, H, W, Cin]: item (tap, pixel quad, half h) samples the 8 channels
//! c0+8h .. c0+8h+7 (zero past kc) at pixels pp = 4i .. 4i+3, each corner as one 16-byte load, and stores
//! each channel's four samples as one 8-byte word of B. Consecutive threads take the two halves of a quad,
//! then consecutive quads: a lane pair's corner loads are the two halves of one 32-byte sector (a warp
//! touches only whole sectors), the descriptor loads (16 bytes, shared by the pair) use every byte of
//! their wavefronts and the B stores fill 2 wavefronts with 256 distinct bytes.
//! Lane pairs sharing each 32-byte corner sector read the gather's fewest L1 sectors at the cost of reading
//! each descriptor twice: with L1 and shared memory on one data path that is the cheaper side for every
//! tile (the model's counters, 1x256x100x152 on the 256x128 tile: 54.7 -> 47.7 us against one thread per
//! pixel pair loading each corner as two 16-byte halves).
template <class Cfg, typename T>
DYNCONV_HD void dc_slab_fill_nhwc(const DeformConvParams& p, const T* xt, int c0, int kc, int t, DcSlabSmem<Cfg>& sm) {
    static_assert(Cfg::BN % 4 == 0 && Cfg::CK == 16, "pixel quads, two 8-channel halves");
    constexpr int kQuads = Cfg::BN / 4, kPx = 4, kCh = Cfg::CK / 2;
    const int taps = p.kh * p.kw;
    const bool vec_ok = p.Cin % 8 == 0 && c0 % 8 == 0;  // 16-byte aligned 8-channel runs
    for (int e = t; e < taps * kQuads * 2; e += Cfg::kThreads) {
        const int h = e % 2, tap = e / (2 * kQuads), pp = 4 * ((e / 2) % kQuads);
        const int ch0 = kCh * h, nch = dc_min(kCh, kc - ch0);  // this thread's channels (nch <= 0: none)
        int n[kPx], idx[4][kPx];
        float w[4][kPx];
        int pos[kPx];
        lds_quad(&sm.img[pp], n);
        lds_quad(&sm.tpos[tap][pp], pos);
        DYNCONV_UNROLL
        for (int q = 0; q < 4; ++q) {
            DYNCONV_UNROLL
            for (int s = 0; s < kPx; ++s) idx[q][s] = dc_corner_index(pos[s], q, p.H, p.W);
            lds_quad(&sm.tw[tap][q][pp], w[q]);
        }
        float val[kPx][kCh];
        DYNCONV_UNROLL
        for (int s = 0; s < kPx; ++s) {
            DYNCONV_UNROLL
            for (int c = 0; c < kCh; ++c) val[s][c] = 0.f;
            const long long img = static_cast<long long>(n[s] >= 0 ? n[s] : 0) * p.H * p.W;
            DYNCONV_UNROLL
            for (int q = 0; q < 4; ++q) {  // w = 0 where idx < 0; as dc_sample, corner by corner
                const bool on = n[s] >= 0 && idx[q][s] >= 0;
                const T* src = xt + (img + (idx[q][s] >= 0 ? idx[q][s] : 0)) * p.Cin + c0 + ch0;
                if (vec_ok && nch == kCh) {
                    float cv[8];
                    dc_gather<8>(on, src, cv);
                    DYNCONV_UNROLL
                    for (int k = 0; k < kCh; ++k) val[s][k] += w[q][s] * cv[k];
                } else {
                    DYNCONV_UNROLL
                    for (int k = 0; k < kCh; ++k)
                        val[s][k] += w[q][s] * to_float(DYNCONV_LDG_GATHER_IF(on && k < nch, src + k, T()));
                }
            }
            if (n[s] >= 0 && nch > 0) trace_count(TraceCounter::kSamples, nch);
        }
        // the second half stores its channels rotated by 4: with an odd tap count its rows lie 16 banks
        // from the first half's (row stride LDB/2 = 4 mod 32 words), so a 16-lane phase is conflict-free;
        // selects between compile-time indices keep val in registers
        DYNCONV_UNROLL
        for (int c = 0; c < kCh; ++c) {
            const int cs = h ? (c + kCh / 2) % kCh : c;
            const bool ok = cs < nch;
            float v[kPx];
            DYNCONV_UNROLL
            for (int s = 0; s < kPx; ++s) v[s] = ok ? (h ? val[s][(c + kCh / 2) % kCh] : val[s][c]) : 0.f;
            dc_sts_quad(&sm.b[(ch0 + cs) * taps + tap][pp], to_mma_half(v[0]), to_mma_half(v[1]), to_mma_half(v[2]),
                        to_mma_half(v[3]));
        }
    }
}

//! Epilogue: thread t writes staged rows m0 .. m0+STAGE_M-1 + bias; consecutive threads store consecutive pixels.
template <class Cfg, typename T>
DYNCONV_HD void dc_slab_store(const DeformConvParams& p, const DcPtrs<T>& io, int p0, int g, int o0, int m0, int t,
                              const DcSlabSmem<Cfg>& sm) {
    const int cog = p.Cout / p.groups;
    const int hw_out = p.Ho * p.Wo, total = p.N * hw_out;
    for (int e = t; e < Cfg::STAGE_M * Cfg::BN; e += Cfg::kThreads) {
        const int ms = e / Cfg::BN, m = m0 + ms, pp = e % Cfg::BN, q = p0 + pp;
        if (o0 + m >= cog || q >= total) continue;
        const long long o = static_cast<long long>(g) * cog + o0 + m;
        const int n = q / hw_out, rem = q - n * hw_out;
        const float b = p.with_bias ? to_float(DYNCONV_LDG(io.bias + o)) : 0.f;
        DYNCONV_STG(io.out + (static_cast<long long>(n) * p.Cout + o) * hw_out + rem,
                    from_float<T>(DYNCONV_LDS(&sm.u.stage[ms][pp]) + b));
    }
}

//! The whole block (bx: pixel tile, by: group x output-channel tile). Block-uniform control flow only.
//! kNhwc: sample xt, the NHWC copy of io.x (deform_conv_nhwc_block); else io.x itself (xt unused).
//! The executor provides each(f(t)) for thread phases, each_warp(f(warp, acc)) for warp phases, sync().
template <class Cfg, bool kNhwc, typename T, class Exec>
DYNCONV_HD void deform_conv_slab_block(const DeformConvParams& p, const DcPtrs<T>& io, const T* xt, int bx, int by,
                                       DcSlabSmem<Cfg>& sm, Exec& ex) {
    const int cog = p.Cout / p.groups, cg = p.Cin / p.groups, cpo = p.Cin / p.offset_groups;
    const int m_tiles = (cog + Cfg::BM - 1) / Cfg::BM;
    const int g = by / m_tiles, o0 = (by % m_tiles) * Cfg::BM;
    const int p0 = bx * Cfg::BN;
    const int c_begin = g * cg, c_end = c_begin + cg, taps = p.kh * p.kw;
    ex.each_warp([&](int, auto& acc) { mma_zero(acc); });
    for (int c = c_begin; c < c_end;) {
        const int og = c / cpo;                             // offset group of this segment
        const int seg_end = dc_min((og + 1) * cpo, c_end);  // channels sharing the descriptors
        // the previous fill read the descriptors before the barrier ahead of its MMA phase
        ex.each([&](int t) { dc_slab_descriptors<Cfg, T>(p, io, p0, og, t, sm); });
        for (int c0 = c; c0 < seg_end; c0 += Cfg::CK) {
            const int kc = dc_min(Cfg::CK, seg_end - c0);
            ex.sync();  // descriptors complete; the previous chunk's MMAs are done with A and B
            ex.each([&](int t) {
                dc_slab_fill_a<Cfg, T>(p, io, g, o0, c0 - c_begin, kc, t, sm);
                if (kNhwc)
                    dc_slab_fill_nhwc<Cfg, T>(p, xt, c0, kc, t, sm);
                else
                    dc_slab_fill_nchw<Cfg, T>(p, io, c0, kc, t, sm);
            });
            ex.sync();
            ex.each_warp([&](int warp, auto& acc) {
                const int m0 = (warp % Cfg::WARPS_M) * Cfg::WM, n0 = (warp / Cfg::WARPS_M) * Cfg::WN;
                for (int ks = 0; ks < taps; ++ks)  // K steps of 16 rows: 16 channels x taps
                    mma_warp_step<Cfg::WM, Cfg::WN>(warp, &sm.u.a[m0][16 * ks], Cfg::LDA, &sm.b[16 * ks][n0], Cfg::LDB, acc);
            });
        }
        c = seg_end;
    }
    for (int pass = 0; pass < Cfg::STAGES; ++pass) {
        ex.sync();  // the stage overwrites A (and, after the first pass, the stored rows)
        ex.each_warp([&](int warp, auto& acc) {
            const int m0 = (warp % Cfg::WARPS_M) * Cfg::WM, n0 = (warp / Cfg::WARPS_M) * Cfg::WN;
            if (m0 / Cfg::STAGE_M == pass)
                mma_warp_stage<Cfg::WM, Cfg::WN>(warp, acc, &sm.u.stage[m0 - pass * Cfg::STAGE_M][n0], Cfg::LDO);
        });
        ex.sync();
        ex.each([&](int t) { dc_slab_store<Cfg, T>(p, io, p0, g, o0, pass * Cfg::STAGE_M, t, sm); });
    }
}

// ---- NHWC copy of the input (the workspace of the slab kernels) -------------------------------------------

//! Block of the NCHW -> NHWC copy: 32 channels x 64 pixels of one image through shared memory (rows padded
//! by one 4-byte word to an odd word stride, so the column reads of the store phase hit 32 banks); reads
//! and writes coalesced.
struct DcNhwcTile {
    static constexpr int BC = 32, BP = 64, kThreads = 256;
};
template <typename T>
struct DcNhwcSmem {
    T tile[DcNhwcTile::BC][DcNhwcTile::BP + 4 / sizeof(T)];
};
struct DcNoAcc {};

DYNCONV_HD long long dc_nhwc_grid_x(const DeformConvParams& p) {
    return (static_cast<long long>(p.H) * p.W + DcNhwcTile::BP - 1) / DcNhwcTile::BP;
}
DYNCONV_HD long long dc_nhwc_grid_y(const DeformConvParams& p) {
    return static_cast<long long>(p.N) * ((p.Cin + DcNhwcTile::BC - 1) / DcNhwcTile::BC);
}

//! xt[n, y, x, c] = x[n, c, y, x] for the block's tile (bx: pixel tile, by: image x channel tile).
template <typename T, class Exec>
DYNCONV_HD void deform_conv_nhwc_block(const DeformConvParams& p, const T* x, T* xt, int bx, int by,
                                       DcNhwcSmem<T>& sm, Exec& ex) {
    constexpr int BC = DcNhwcTile::BC, BP = DcNhwcTile::BP;
    const int hw = p.H * p.W, ctiles = (p.Cin + BC - 1) / BC;
    const int n = by / ctiles, c0 = (by % ctiles) * BC, p0 = bx * BP;
    ex.each([&](int t, auto&) {
        for (int e = t; e < BC * BP; e += DcNhwcTile::kThreads) {  // consecutive threads: consecutive pixels
            const int c = e / BP, px = e % BP;
            if (c0 + c < p.Cin && p0 + px < hw)
                DYNCONV_STS(&sm.tile[c][px], DYNCONV_LDG(x + (static_cast<long long>(n) * p.Cin + c0 + c) * hw + p0 + px));
        }
    });
    ex.sync();
    ex.each([&](int t, auto&) {
        for (int e = t; e < BC * BP; e += DcNhwcTile::kThreads) {  // consecutive threads: consecutive channels
            const int px = e / BC, c = e % BC;
            if (c0 + c < p.Cin && p0 + px < hw)
                DYNCONV_STG(xt + (static_cast<long long>(n) * hw + p0 + px) * p.Cin + c0 + c, DYNCONV_LDS(&sm.tile[c][px]));
        }
    });
}

//! The weight transpose of the FP32-FMA tiles as the same copy: per group g ("image"), the [cog][cg * taps]
//! weight matrix ("channels" x "pixels") becomes [cg * taps][cog] (deform_conv_nhwc_block on these params).
DYNCONV_HD DeformConvParams dc_weight_transpose_params(const DeformConvParams& p) {
    DeformConvParams q = p;
    q.N = p.groups;
    q.Cin = p.Cout / p.groups;
    q.H = p.Cin / p.groups * p.kh * p.kw;
    q.W = 1;
    return q;
}

//! Which tile config runs a problem. FP16 I/O with >= 32 output channels per group, at most
//! kDcMmaMaxTaps taps and a map within dc_corner_origin's packing takes the tensor-core path: the largest
//! slab tile covering the group's output channels whose dynamic shared memory fits the device's opt-in
//! limit `smem_optin` (all of sm_75 and newer fit DcSlabCompact), or a tile of fewer pixels when that
//! fills more of the device's `sm_count` SMs (dc_tile_span; sm_count <= 0: the largest tile regardless).
//! Otherwise, or without that much shared memory, the FP32-FMA tile sized for the output channels per group,
//! wide where that does not leave too many SMs idle (dc_fma_choice).
enum class DcKernel : int { kFmaLarge, kFmaMedium, kFmaSmall, kFma128, kFma256, kSlabWide, kSlabMid, kSlabTall,
                            kSlabMid64, kSlabCompact, kSlabTall256, kFma256W, kFma128W, kFmaLargeW };

constexpr int kDcSmemOptinSm90 = 227 * 1024;  // the CPU reference and tracer run the sm_90 choice by default

template <class Cfg>
DYNCONV_HD bool dc_slab_fits(int smem_optin) {
    return int(sizeof(DcSlabSmem<Cfg>)) <= smem_optin;
}

//! How long a launch of tile Cfg lasts in units of one block-pixel on one SM: the busiest of `sm_count`
//! SMs runs ceil(blocks / sm_count) blocks of BN pixels each (8x128x28x28 on 132 SMs: 49 blocks of 128
//! pixels leave 83 SMs idle; 98 blocks of 64 pixels still run in one wave, each SM on half the pixels).
template <class Cfg>
DYNCONV_HD long long dc_tile_span(const DeformConvParams& p, int sm_count) {
    return launch_span(dc_grid_x<Cfg>(p) * dc_grid_y<Cfg>(p), Cfg::BN, sm_count);
}

//! `kind` (tile Cfg, fewer pixels than the tiles considered before it) replaces `best` when it fits and
//! its launch is short enough to pay for the smaller tile (smaller_tile_pays).
template <class Cfg>
DYNCONV_HD void dc_consider(const DeformConvParams& p, int sm_count, int smem_optin, DcKernel kind, DcKernel& best,
                            long long& best_span) {
    if (!dc_slab_fits<Cfg>(smem_optin)) return;
    const long long span = sm_count > 0 ? dc_tile_span<Cfg>(p, sm_count) : 0;
    if (best_span < 0 || (sm_count > 0 && smaller_tile_pays(span, best_span))) {
        best = kind;
        best_span = span;
    }
}

//! The wide FMA tile Wide, or its narrow twin Narrow (a quarter to a half of its pixels) where that shortens
//! the launch enough on `sm_count` SMs (smaller_tile_pays; sm_count <= 0: the wide tile).
template <class Wide, class Narrow>
DYNCONV_HD DcKernel dc_fma_choice(const DeformConvParams& p, int sm_count, DcKernel wide, DcKernel narrow) {
    if (sm_count <= 0) return wide;
    return smaller_tile_pays(dc_tile_span<Narrow>(p, sm_count), dc_tile_span<Wide>(p, sm_count)) ? narrow : wide;
}

DYNCONV_HD DcKernel deform_conv_kernel_choice(const DeformConvParams& p, bool fp16_io, int smem_optin = kDcSmemOptinSm90,
                                              int sm_count = kSmCountH200) {
    const int cog = p.Cout / p.groups;
    if (fp16_io && cog >= 32 && p.kh * p.kw <= kDcMmaMaxTaps && p.H <= kDcMaxSlabH && p.W <= kDcMaxSlabW) {
        DcKernel best = DcKernel::kSlabCompact;
        long long span = -1;  // none yet
        if (cog > 128) {
            dc_consider<DcSlabWide>(p, sm_count, smem_optin, DcKernel::kSlabWide, best, span);
        } else if (cog > 64) {
            dc_consider<DcSlabMid>(p, sm_count, smem_optin, DcKernel::kSlabMid, best, span);
        } else {
            dc_consider<DcSlabTall256>(p, sm_count, smem_optin, DcKernel::kSlabTall256, best, span);
            dc_consider<DcSlabTall>(p, sm_count, smem_optin, DcKernel::kSlabTall, best, span);
        }
        // a tile covering a group's channels (BM >= cog up to 128) resamples nothing
        if (cog > 64 && (cog <= 128 || span < 0))
            dc_consider<DcSlabMid64>(p, sm_count, smem_optin, DcKernel::kSlabMid64, best, span);
        if (cog <= 64 || span < 0) dc_consider<DcSlabCompact>(p, sm_count, smem_optin, DcKernel::kSlabCompact, best, span);
        if (span >= 0) return best;
    }
    if (cog > 128) return dc_fma_choice<DcTile256W, DcTile256>(p, sm_count, DcKernel::kFma256W, DcKernel::kFma256);
    if (cog > 64) return dc_fma_choice<DcTile128W, DcTile128>(p, sm_count, DcKernel::kFma128W, DcKernel::kFma128);
    if (cog > 16) return dc_fma_choice<DcTileLargeW, DcTileLarge>(p, sm_count, DcKernel::kFmaLargeW, DcKernel::kFmaLarge);
    return cog > 4 ? DcKernel::kFmaMedium : DcKernel::kFmaSmall;
}

//! Byte offset of the FMA tiles' NHWC input copy in their workspace: after the transposed weights, rounded
//! up to 256 bytes (16-byte vector loads; the workspace itself is 256-byte aligned).
DYNCONV_HD size_t dc_fma_nhwc_offset(const DeformConvParams& p, size_t elem) {
    const size_t weights = size_t(p.Cout) * size_t(p.Cin / p.groups) * size_t(p.kh) * size_t(p.kw) * elem;
    return (weights + 255) / 256 * 256;
}

DYNCONV_HD bool dc_is_slab(DcKernel k) {
    return k == DcKernel::kSlabWide || k == DcKernel::kSlabMid || k == DcKernel::kSlabTall ||
           k == DcKernel::kSlabMid64 || k == DcKernel::kSlabCompact || k == DcKernel::kSlabTall256;
}

} // namespace dynconv
