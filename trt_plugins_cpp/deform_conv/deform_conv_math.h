// Deformable convolution (DCNv1 / DCNv2, torchvision layout): the host/device math shared by the CUDA
// kernel and the CPU reference build.
//
//   out[n,o,i,j] = bias[o] + sum_{c in group(o)} sum_{u,v} weight[o, c', u, v] * m * bilinear(x[n,c], y, x)
//   y = i*sh - ph + u*dh + dy,  x = j*sw - pw + v*dw + dx,   k = u*kw + v,  q = (c / (Cin/offset_groups))*kh*kw + k
//   (dy, dx) = offset[n, 2q, i, j], offset[n, 2q+1, i, j];   m = mask[n, q, i, j] (1 without mask)
//   bilinear: 0 unless -1 < y < H and -1 < x < W; corners outside the image read 0.
//
// The kernel is a fused implicit GEMM (no im2col buffer in global memory, no cuBLAS). Per conv group g the
// GEMM is  Out[o, p] = sum_{tap, c} W[o, c, tap] * S[c, tap, p]  over output pixels p = (n, i, j) flattened.
// One block owns a tile of BM output channels x BN pixels. Its K loop runs over taps and, inside a tap,
// over the "segments" of the group's input channels that share one offset group; per segment the BN
// bilinear descriptors (4 corner indices + 4 weights with the mask folded in) are computed once into
// shared memory and reused for every channel of the segment; per chunk of BK channels the block samples
// S[BK][BN] (FP32) and loads W[BK][BM] into shared memory (from the weights transposed per group into the
// workspace, so consecutive threads read consecutive output channels), then every thread accumulates a
// TM x TN micro-tile in FP32 registers. Bias is added in the epilogue (4-pixel vector stores).
// FP16 I/O with >= 32 output channels per group takes the tensor-core path instead (deform_conv_slab.h).
//
// The block body is written once (deform_conv_block) against an executor (common/tile_gemm.h), so the
// CPU reference runs exactly the kernel's tiling and indexing.
#pragma once

#include <math.h>

#include <type_traits>

#include "common/math_common.h"
#include "common/tile_gemm.h"
#include "common/trace.h"

namespace dynconv {

struct DeformConvParams {
    int kh, kw, sh, sw, ph, pw, dh, dw, groups, offset_groups;
    int with_mask, with_bias;
    int N, Cin, H, W, Cout, Ho, Wo;  // runtime sizes (kh, kw also come from the weight shape)
};

//! Bilinear sample descriptor of one sampling point: plane offsets of the 4 corners (-1 = outside the
//! image, reads 0) and their weights with the modulation scalar folded in.
struct BilinearTap {
    int idx[4];
    float w[4];
};

//! torchvision's rule: a point is read when -1 < y < H and -1 < x < W; out-of-image corners count 0.
DYNCONV_HD BilinearTap bilinear_tap(int H, int W, float y, float x, float m) {
    BilinearTap t;
    for (int q = 0; q < 4; ++q) { t.idx[q] = -1; t.w[q] = 0.f; }
    if (!(y > -1.f && y < float(H) && x > -1.f && x < float(W))) return t;
    const float fy = floorf(y), fx = floorf(x);
    const int y0 = int(fy), x0 = int(fx);
    const float ly = y - fy, lx = x - fx, hy = 1.f - ly, hx = 1.f - lx;
    const bool top = y0 >= 0, bottom = y0 + 1 <= H - 1, left = x0 >= 0, right = x0 + 1 <= W - 1;
    if (top && left) { t.idx[0] = y0 * W + x0; t.w[0] = hy * hx * m; }
    if (top && right) { t.idx[1] = y0 * W + x0 + 1; t.w[1] = hy * lx * m; }
    if (bottom && left) { t.idx[2] = (y0 + 1) * W + x0; t.w[2] = ly * hx * m; }
    if (bottom && right) { t.idx[3] = (y0 + 1) * W + x0 + 1; t.w[3] = ly * lx * m; }
    return t;
}

DYNCONV_HD int dc_min(int a, int b) { return a < b ? a : b; }

// ---- tiling ----------------------------------------------------------------------------------------------

template <int BM, int BN, int TM, int TN>
using DcTile = GemmTile<BM, BN, TM, TN>;
// One block covers all the output channels of its pixels up to 256 per group, so each bilinear sample is
// computed once per launch (ceil(Cout/groups / 256) times beyond that).
using DcTile256 = DcTile<256, 64, 16, 4>;  // Cout/groups > 128
using DcTile128 = DcTile<128, 64, 8, 4>;   // 64 < Cout/groups <= 128
using DcTileLarge = DcTile<64, 64, 4, 4>;  // 16 < Cout/groups <= 64
// Wide twins (more pixels per block and per thread): a TM x TN micro-tile reads (TM + TN) / (TM * TN) shared
// words per FMA, and shared memory returns 128 bytes per clock against the SM's 128 FMA lanes: 16x4 and 4x4
// are shared-memory bound, 16x8 and 8x16 are not, 8x8 is even. Fewer blocks, so small maps keep the above.
using DcTile256W = DcTile<256, 128, 16, 8>;  // Cout/groups > 128
using DcTile128W = DcTile<128, 256, 8, 16>;  // 64 < Cout/groups <= 128
using DcTileLargeW = DcTile<64, 256, 8, 8>;  // 16 < Cout/groups <= 64
using DcTileMedium = DcTile<16, 128, 2, 4>;  // 4 < Cout/groups <= 16
using DcTileSmall = DcTile<4, 256, 1, 4>;    // Cout/groups <= 4 (depthwise-like)
template <class Cfg>
using DcAcc = TileAcc<Cfg>;

template <class Cfg>
struct DcSmem {
    alignas(16) float s[Cfg::BK][Cfg::BN];  // sampled (and modulated) inputs of the chunk
    alignas(16) float w[Cfg::BK][Cfg::BM];  // weights of the chunk
    float tw[4][Cfg::BN];                   // bilinear descriptors of the segment, per pixel
    int tidx[4][Cfg::BN];
    int img[Cfg::BN];                       // image index n of each pixel (-1: past the end)
};

template <typename T>
struct DcPtrs {
    const T* x;       // [N, Cin, H, W]
    const T* weight;  // [Cout, Cin/groups, kh, kw]
    const T* offset;  // [N, 2*og*kh*kw, Ho, Wo]
    const T* mask;    // [N, og*kh*kw, Ho, Wo] or null
    const T* bias;    // [Cout] or null
    T* out;           // [N, Cout, Ho, Wo]
};

//! Grid of the kernel: x = pixel tiles over N*Ho*Wo, y = groups * output-channel tiles per group.
template <class Cfg>
DYNCONV_HD long long dc_grid_x(const DeformConvParams& p) {
    const long long pixels = static_cast<long long>(p.N) * p.Ho * p.Wo;
    return (pixels + Cfg::BN - 1) / Cfg::BN;
}
template <class Cfg>
DYNCONV_HD long long dc_grid_y(const DeformConvParams& p) {
    const int cog = p.Cout / p.groups;
    return static_cast<long long>(p.groups) * ((cog + Cfg::BM - 1) / Cfg::BM);
}

// ---- phases (thread t of the block) ------------------------------------------------------------------

//! Phase 1: thread t < BN computes the bilinear descriptor of pixel p0 + t for (tap, offset group og)
//! into sm.img / sm.tidx / sm.tw (any shared-memory layout with those [.][BN] arrays).
template <class Cfg, typename T, class Smem>
DYNCONV_HD void dc_descriptors(const DeformConvParams& p, const DcPtrs<T>& io, int p0, int tap, int og, int t,
                               Smem& sm) {
    if (t >= Cfg::BN) return;
    const long long hw_out = static_cast<long long>(p.Ho) * p.Wo;
    const long long q = static_cast<long long>(p0) + t;
    if (q >= p.N * hw_out) {
        DYNCONV_STS(&sm.img[t], -1);
        for (int c = 0; c < 4; ++c) { DYNCONV_STS(&sm.tidx[c][t], -1); DYNCONV_STS(&sm.tw[c][t], 0.f); }
        return;
    }
    const int n = int(q / hw_out);
    const long long rem = q - n * hw_out;  // i*Wo + j
    const int i = int(rem / p.Wo), j = int(rem % p.Wo);
    const int u = tap / p.kw, v = tap % p.kw;
    const int taps = p.kh * p.kw;
    const long long ch = static_cast<long long>(og) * taps + tap;  // q channel of (offset group, tap)
    const T* off = io.offset + (static_cast<long long>(n) * 2 * p.offset_groups * taps + 2 * ch) * hw_out + rem;
    const float dy = to_float(DYNCONV_LDG(off));
    const float dx = to_float(DYNCONV_LDG(off + hw_out));
    const float m = p.with_mask ? to_float(DYNCONV_LDG(io.mask + (static_cast<long long>(n) * p.offset_groups * taps + ch) * hw_out + rem))
                                : 1.f;
    const float y = float(i * p.sh - p.ph + u * p.dh) + dy;
    const float x = float(j * p.sw - p.pw + v * p.dw) + dx;
    const BilinearTap b = bilinear_tap(p.H, p.W, y, x, m);
    trace_count(TraceCounter::kDescriptors, 1);
    DYNCONV_STS(&sm.img[t], n);
    for (int c = 0; c < 4; ++c) { DYNCONV_STS(&sm.tidx[c][t], b.idx[c]); DYNCONV_STS(&sm.tw[c][t], b.w[c]); }
}

//! One pixel's bilinear descriptor (image, 4 corner offsets, 4 weights), held in registers.
struct DcPixelTap {
    int n;  // -1: pixel past the end
    int idx[4];
    float w[4];
};

template <class Smem>
DYNCONV_HD DcPixelTap dc_load_descriptor(const Smem& sm, int pp) {
    DcPixelTap d;
    d.n = DYNCONV_LDS(&sm.img[pp]);
    for (int q = 0; q < 4; ++q) {
        d.idx[q] = DYNCONV_LDS(&sm.tidx[q][pp]);
        d.w[q] = DYNCONV_LDS(&sm.tw[q][pp]);
    }
    return d;
}

//! Modulated bilinear sample of input channel c at a pixel with descriptor d (0 for a pixel past the end).
template <typename T>
DYNCONV_HD float dc_sample(const DeformConvParams& p, const DcPtrs<T>& io, const DcPixelTap& d, int c) {
    if (d.n < 0) return 0.f;
    trace_count(TraceCounter::kSamples, 1);
    const T* xp = io.x + (static_cast<long long>(d.n) * p.Cin + c) * static_cast<long long>(p.H) * p.W;
    float val = 0.f;
    for (int q = 0; q < 4; ++q)  // w = 0 where idx < 0
        val += d.w[q] * to_float(DYNCONV_LDG_GATHER_IF(d.idx[q] >= 0, xp + d.idx[q], T()));
    return val;
}

//! Samples S[kk][pp] of channels c0 .. c0+kc-1 (0 past kc) through store(kk, pp, value). Thread t keeps
//! pixel pp = t % BN (consecutive threads: consecutive pixels) and reads its descriptor from shared
//! memory once for its BK * BN / kThreads channels.
template <class Cfg, typename T, class Smem, class Store>
DYNCONV_HD void dc_fill_samples(const DeformConvParams& p, const DcPtrs<T>& io, int c0, int kc, int t, const Smem& sm,
                                Store&& store) {
    static_assert(Cfg::kThreads % Cfg::BN == 0, "each thread samples one pixel of the tile");
    const int pp = t % Cfg::BN;
    const DcPixelTap d = dc_load_descriptor(sm, pp);
    for (int kk = t / Cfg::BN; kk < Cfg::BK; kk += Cfg::kThreads / Cfg::BN)
        store(kk, pp, kk < kc ? dc_sample(p, io, d, c0 + kk) : 0.f);
}

//! Loads the kN consecutive input values at src as one vector load (kN * sizeof(T) = 8 or 16 bytes; a
//! gather access of kN elements in the trace); zeros when !active.
template <int kN, typename T>
DYNCONV_HD void dc_gather(bool active, const T* src, float (&v)[kN]) {
#if defined(__CUDA_ARCH__)
    constexpr int kBytes = kN * int(sizeof(T));
    static_assert(kBytes == 8 || kBytes == 16, "one 8- or 16-byte load");
    using Vec = typename std::conditional<kBytes == 16, uint4, uint2>::type;
    Vec raw{};
    if (active) raw = *reinterpret_cast<const Vec*>(src);
    const T* elems = reinterpret_cast<const T*>(&raw);
    DYNCONV_UNROLL
    for (int k = 0; k < kN; ++k) v[k] = to_float(elems[k]);
#else
    if (TraceSink* s = trace_sink())
        s->access(__FILE__, __LINE__, TraceSpace::kGlobal, TraceKind::kGather, false, src, int(kN * sizeof(T)), active);
    for (int k = 0; k < kN; ++k) v[k] = active ? to_float(src[k]) : 0.f;
#endif
}

//! Samples S[kk][pp] of channels c0 .. c0+kc-1 (0 past kc) from xt, the NHWC copy [N, H, W, Cin] of the input:
//! thread t keeps pixel pp = t % BN (consecutive threads: consecutive pixels, conflict-free S stores) and a run
//! of kRun consecutive channels, read per corner as 4-channel vectors where the run is aligned (a corner's
//! 16 channels in 2 sectors instead of 16 for the NCHW planes). Same sums in the same order as dc_sample.
template <class Cfg, typename T, class Smem, class Store>
DYNCONV_HD void dc_fill_samples_nhwc(const DeformConvParams& p, const T* xt, int c0, int kc, int t, const Smem& sm,
                                     Store&& store) {
    constexpr int kRun = Cfg::BK * Cfg::BN / Cfg::kThreads;  // 4 (BN 64), 8 (128), 16 (256)
    static_assert(kRun % 4 == 0 && Cfg::kThreads % Cfg::BN == 0, "runs of whole 4-channel vectors");
    const int pp = t % Cfg::BN, k0 = (t / Cfg::BN) * kRun;
    const DcPixelTap d = dc_load_descriptor(sm, pp);
    float val[kRun];
    DYNCONV_UNROLL
    for (int k = 0; k < kRun; ++k) val[k] = 0.f;
    if (d.n >= 0) {
        const bool vec = p.Cin % 4 == 0 && (c0 + k0) % 4 == 0;  // 4-channel vectors aligned
        DYNCONV_UNROLL
        for (int q = 0; q < 4; ++q) {  // w = 0 where idx < 0; as dc_sample, corner by corner
            const bool on = d.idx[q] >= 0;
            const T* src = xt + (static_cast<long long>(d.n) * p.H * p.W + (on ? d.idx[q] : 0)) * p.Cin + c0 + k0;
            DYNCONV_UNROLL
            for (int k = 0; k < kRun; k += 4) {
                float v[4];
                if (vec && k0 + k + 4 <= kc) {
                    dc_gather<4>(on, src + k, v);
                } else {
                    DYNCONV_UNROLL
                    for (int j = 0; j < 4; ++j)
                        v[j] = to_float(DYNCONV_LDG_GATHER_IF(on && k0 + k + j < kc, src + k + j, T()));
                }
                DYNCONV_UNROLL
                for (int j = 0; j < 4; ++j) val[k + j] += d.w[q] * v[j];
            }
        }
        trace_count(TraceCounter::kSamples, kc - k0 < 0 ? 0 : kc - k0 < kRun ? kc - k0 : kRun);
    }
    DYNCONV_UNROLL
    for (int k = 0; k < kRun; ++k) store(k0 + k, pp, k0 + k < kc ? val[k] : 0.f);
}

//! Phase 2: sample channels c0 .. c0+kc-1 at every pixel of the tile (S), from xt (the NHWC copy of the
//! input) or the NCHW input, and load their weights (W): from wt, the weights transposed per group to
//! [groups][Cin/groups * taps][Cout/groups] (consecutive threads read consecutive output channels:
//! coalesced), or without it from the weight tensor itself.
template <class Cfg, typename T>
DYNCONV_HD void dc_fill(const DeformConvParams& p, const DcPtrs<T>& io, const T* wt, const T* xt, int g, int o0, int tap,
                        int c0, int kc, int t, DcSmem<Cfg>& sm) {
    const auto store_s = [&](int kk, int pp, float v) { DYNCONV_STS(&sm.s[kk][pp], v); };
    if (xt)
        dc_fill_samples_nhwc<Cfg>(p, xt, c0, kc, t, sm, store_s);
    else
        dc_fill_samples<Cfg>(p, io, c0, kc, t, sm, store_s);
    const int cog = p.Cout / p.groups, cg = p.Cin / p.groups, taps = p.kh * p.kw;
    for (int e = t; e < Cfg::BK * Cfg::BM; e += Cfg::kThreads) {
        const int kk = e / Cfg::BM, mm = e % Cfg::BM;
        float val = 0.f;
        if (kk < kc && o0 + mm < cog) {
            const long long o = static_cast<long long>(g) * cog + o0 + mm;
            const int cl = c0 - g * cg + kk;  // channel inside the group
            if (wt)
                val = to_float(DYNCONV_LDG(wt + (static_cast<long long>(g) * cg * taps + cl * taps + tap) * cog + o0 + mm));
            else
                val = to_float(DYNCONV_LDG(io.weight + (o * cg + cl) * taps + tap));
        }
        DYNCONV_STS(&sm.w[kk][mm], val);
    }
}

//! Stores 4 consecutive outputs with one vector store (16-byte FP32 / 8-byte FP16; traced as such on the CPU).
DYNCONV_HD void dc_store4(float* dst, const float (&v)[4]) {
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
#else
    trace_access(__FILE__, __LINE__, TraceSpace::kGlobal, true, dst, 16);
    for (int k = 0; k < 4; ++k) dst[k] = v[k];
#endif
}

template <typename T>
DYNCONV_HD void dc_store4(T* dst, const float (&v)[4]) {
#if defined(__CUDA_ARCH__)
    const __half2 lo = __floats2half2_rn(v[0], v[1]), hi = __floats2half2_rn(v[2], v[3]);
    *reinterpret_cast<uint2*>(dst) = make_uint2(*reinterpret_cast<const unsigned*>(&lo), *reinterpret_cast<const unsigned*>(&hi));
#else
    trace_access(__FILE__, __LINE__, TraceSpace::kGlobal, true, dst, int(4 * sizeof(T)));
    for (int k = 0; k < 4; ++k) dst[k] = from_float<T>(v[k]);
#endif
}

//! Phase 4: bias + store of the thread's TM x TN outputs (pixels GemmTile::pixel): as vectors of 4 pixels
//! where a run of 4 lies in one image and is aligned (Ho*Wo % 4 == 0), else one by one.
template <class Cfg, typename T>
DYNCONV_HD void dc_store(const DeformConvParams& p, const DcPtrs<T>& io, int p0, int g, int o0, int t,
                         const DcAcc<Cfg>& acc) {
    const int tx = t % Cfg::TX, ty = t / Cfg::TX;
    const int cog = p.Cout / p.groups;
    const long long hw_out = static_cast<long long>(p.Ho) * p.Wo;
    const long long total = p.N * hw_out;
    DYNCONV_UNROLL
    for (int s = 0; s < Cfg::TM; ++s) {
        const int ol = o0 + ty * Cfg::TM + s;
        if (ol >= cog) continue;
        const long long o = static_cast<long long>(g) * cog + ol;
        const float b = p.with_bias ? to_float(DYNCONV_LDG(io.bias + o)) : 0.f;
        DYNCONV_UNROLL
        for (int r = 0; r < Cfg::TN; r += 4) {
            const long long q0 = static_cast<long long>(p0) + Cfg::pixel(tx, r);  // a multiple of 4
            if (hw_out % 4 == 0 && q0 + 4 <= total) {
                const long long n = q0 / hw_out, rem = q0 - n * hw_out;
                const float v[4] = {acc.v[s][r] + b, acc.v[s][r + 1] + b, acc.v[s][r + 2] + b, acc.v[s][r + 3] + b};
                dc_store4(io.out + (n * p.Cout + o) * hw_out + rem, v);
                continue;
            }
            DYNCONV_UNROLL
            for (int k = 0; k < 4; ++k) {
                const long long q = q0 + k;
                if (q >= total) continue;
                const long long n = q / hw_out, rem = q - n * hw_out;
                DYNCONV_STG(io.out + (n * p.Cout + o) * hw_out + rem, from_float<T>(acc.v[s][r + k] + b));
            }
        }
    }
}

//! The whole block (bx: pixel tile, by: group x output-channel tile). Control flow depends only on
//! block-uniform values, so every ex.sync() is reached by all threads.
//! wt: the transposed weights, xt: the NHWC copy of the input (dc_fill); either may be null.
template <class Cfg, typename T, class Exec>
DYNCONV_HD void deform_conv_block(const DeformConvParams& p, const DcPtrs<T>& io, const T* wt, const T* xt, int bx,
                                  int by, DcSmem<Cfg>& sm, Exec& ex) {
    static_assert(Cfg::BN <= Cfg::kThreads, "one thread per pixel computes the bilinear descriptors");
    const int cog = p.Cout / p.groups, cg = p.Cin / p.groups, cpo = p.Cin / p.offset_groups;
    const int m_tiles = (cog + Cfg::BM - 1) / Cfg::BM;
    const int g = by / m_tiles, o0 = (by % m_tiles) * Cfg::BM;
    const int p0 = bx * Cfg::BN;
    const int c_begin = g * cg, c_end = c_begin + cg;
    ex.each([&](int, DcAcc<Cfg>& acc) { tile_zero(acc); });
    for (int tap = 0; tap < p.kh * p.kw; ++tap) {
        for (int c = c_begin; c < c_end;) {
            const int og = c / cpo;                               // offset group of this segment
            const int seg_end = dc_min((og + 1) * cpo, c_end);    // channels sharing the descriptors
            ex.each([&](int t, DcAcc<Cfg>&) { dc_descriptors<Cfg, T>(p, io, p0, tap, og, t, sm); });
            ex.sync();
            for (int c0 = c; c0 < seg_end; c0 += Cfg::BK) {
                const int kc = dc_min(Cfg::BK, seg_end - c0);
                ex.each([&](int t, DcAcc<Cfg>&) { dc_fill<Cfg, T>(p, io, wt, xt, g, o0, tap, c0, kc, t, sm); });
                ex.sync();
                ex.each([&](int t, DcAcc<Cfg>& acc) { tile_accumulate<Cfg>(kc, t, sm.s, sm.w, acc); });
                ex.sync();  // S, W and the descriptors are rewritten next
            }
            c = seg_end;
        }
    }
    ex.each([&](int t, DcAcc<Cfg>& acc) { dc_store<Cfg, T>(p, io, p0, g, o0, t, acc); });
}

} // namespace dynconv
