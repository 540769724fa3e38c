// Per-pixel dynamic filters over NCHW (DDF, involution): the work decomposition their kernels share, with
// the CPU reference and the access tracer running the same item body.
//
//   out[n,c,i,j] = sum_{u,v} Wt * x[n, c, i*sh-ph+u*dh, j*sw-pw+v*dw],
//   Wt = f[n, g(c), u, v, i, j]                     (involution: the per-pixel kernel of c's group)
//   Wt = f[n, 0, u, v, i, j] (*|+) fc[n, c, u, v]    (DDF: spatial filter combined with the channel filter)
// Taps outside the image contribute 0 (neither x nor the filter is read there).
//
// A work item is R consecutive output rows at one output column j, for up to `cpt` channels of one
// group (the channels sharing a per-pixel filter). Items are ordered j fastest, then row block, channel
// block, group, sample, so a warp's lanes read consecutive columns of the same rows. An item loads its
// R x K*K per-pixel filter values once into registers and reuses them for each of its channels; with
// sh == dh (required for R > 1) output rows r and r+1 share input rows, so the R+K-1 input rows of a
// channel are read once for all R outputs. Per output that is ~(R+K-1)/R * K loads of x instead of K*K,
// and the filter loads are divided by the channel count.
#pragma once

#include <type_traits>

#include "common/math_common.h"
#include "common/trace.h"

namespace dynconv {

struct StripGeom {
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int N, C, H, W, Ho, Wo;
    int groups;  //!< channel groups, each with its own per-pixel filter (DDF: 1)
};

//! Output rows per item of the strips with sh == dh (more rows share more input rows, but the item's
//! R x 9 filter values live in registers).
constexpr int kStripRows = 2;

//! Output rows per item (R), channels per item, output columns per item (2: pair items, below).
struct StripPlan {
    int rows, cpt, cols = 1;
};

//! Pair items (FP16 I/O): one output row and two adjacent output columns per thread, every x / filter /
//! output access one aligned 4-byte pair, so a warp reads 128 contiguous bytes per instruction (with one
//! column per thread, a 64-byte read shifted by the tap's half element touches 3 sectors for 2 sectors'
//! data). Needs sw == dw == 1 and even W and Wo (pairs never straddle a row or the image edge).
DYNCONV_HD bool strip_pairs_apply(const StripGeom& p, int elem_bytes) {
    return elem_bytes == 2 && p.sw == 1 && p.dw == 1 && p.W % 2 == 0 && p.Wo % 2 == 0;
}

//! The strips run 3x3 windows (others take the one-output-per-thread kernel: at 5x5 and 7x7 the item's
//! K*K filter values alone need 25-49 registers per row); the body indexes an input plane in 32 bits.
constexpr int kStripK = 3;
DYNCONV_HD bool strip_applies(const StripGeom& p) {
    return p.kh == kStripK && p.kw == kStripK && static_cast<long long>(p.H) * p.W < (1LL << 31);
}

inline long long strip_item_count(const StripGeom& p, StripPlan plan) {
    const long long cg = p.C / p.groups;
    return static_cast<long long>(p.N) * p.groups * ((cg + plan.cpt - 1) / plan.cpt) *
           ((p.Ho + plan.rows - 1) / plan.rows) * ((p.Wo + plan.cols - 1) / plan.cols);
}

//! Pair items where they apply to `elem_bytes` I/O; else R = kStripRows where sh == dh (row sharing) and
//! Wo >= 32, else 1 (below a warp's width, the lanes of one warp span several row blocks, whose input rows
//! are R apart: one-row items keep a warp's reads one contiguous span). Channels per item: the largest of
//! 8/4/2 that still gives a quarter of `resident_threads` (the device's SMs x threads per SM) as items
//! (each item keeps its independent x loads per channel in flight, so a quarter of the resident
//! threads keep DRAM busy), else 1.
inline StripPlan strip_plan(const StripGeom& p, long long resident_threads, int elem_bytes = 4) {
    StripPlan plan{p.sh == p.dh && p.Wo >= 32 ? kStripRows : 1, 1, 1};
    if (strip_pairs_apply(p, elem_bytes)) plan = {1, 1, 2};
    for (int cpt = 8; cpt >= 2; cpt /= 2)
        if (strip_item_count(p, {plan.rows, cpt, plan.cols}) >= resident_threads / 4) {
            plan.cpt = cpt;
            break;
        }
    return plan;
}

struct StripItem {
    int n, g, cb, rb, j;  // cb: channel block within the group, rb: block of output rows
};

//! Flat item index -> coordinates (`narrow`: 32-bit divisions, valid while the item count fits 32 bits).
DYNCONV_HD StripItem strip_decompose(long long idx, const StripGeom& p, int rows, int cpt, bool narrow) {
    const int cg = p.C / p.groups;
    const int cblocks = (cg + cpt - 1) / cpt, rblocks = (p.Ho + rows - 1) / rows;
    StripItem it;
    if (narrow) {
        unsigned int t = static_cast<unsigned int>(idx), q = t / unsigned(p.Wo);
        it.j = int(t - q * unsigned(p.Wo));
        t = q; q = t / unsigned(rblocks); it.rb = int(t - q * unsigned(rblocks));
        t = q; q = t / unsigned(cblocks); it.cb = int(t - q * unsigned(cblocks));
        t = q; q = t / unsigned(p.groups); it.g = int(t - q * unsigned(p.groups));
        it.n = int(q);
    } else {
        long long t = idx, q = t / p.Wo;
        it.j = int(t - q * p.Wo);
        t = q; q = t / rblocks; it.rb = int(t - q * rblocks);
        t = q; q = t / cblocks; it.cb = int(t - q * cblocks);
        t = q; q = t / p.groups; it.g = int(t - q * p.groups);
        it.n = int(q);
    }
    return it;
}

//! The channels one item covers: [first, first + count) as n*C + c indices, count <= cpt (of group it.g).
struct StripChannels {
    long long first;
    int count;
};

DYNCONV_HD StripChannels strip_channels(const StripGeom& p, const StripItem& it, int cpt) {
    const int cg = p.C / p.groups, c_first = it.cb * cpt;
    return {static_cast<long long>(it.n) * p.C + it.g * cg + c_first, cg - c_first < cpt ? cg - c_first : cpt};
}

//! DDF's channel filter of channel nc_idx (n*C + c): cf[t] for the KK taps.
template <int KK, typename T>
DYNCONV_HD void strip_channel_filter(const T* fc, long long nc_idx, float* cf) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int t = 0; t < KK; ++t) cf[t] = to_float(DYNCONV_LDG(fc + nc_idx * KK + t));
}

//! One work item. f: [N, groups*K*K, Ho, Wo]; fc: [N, C, K, K] (kFc, DDF; add: 'add' combine, else 'mul').
template <int K, int R, bool kFc, typename T>
DYNCONV_HD void strip_item(const T* x, const T* f, const T* fc, int add, T* out, const StripGeom& p, int cpt,
                           long long idx, bool narrow) {
    constexpr int KK = K * K;
    const StripItem it = strip_decompose(idx, p, R, cpt, narrow);
    const int i0 = it.rb * R, j = it.j;
    const int rv = p.Ho - i0 < R ? p.Ho - i0 : R;  // output rows of this item inside the map
    const long long hw_out = static_cast<long long>(p.Ho) * p.Wo;
    const T zero = from_float<T>(0.f);
    int col[K];
    bool col_ok[K];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int v = 0; v < K; ++v) {
        col[v] = j * p.sw - p.pw + v * p.dw;
        col_ok[v] = col[v] >= 0 && col[v] < p.W;
    }
    // the per-pixel filter of the R outputs; 0 for rows past the map and taps outside the image
    float w[R][KK];
    const T* fp = f + (static_cast<long long>(it.n) * p.groups + it.g) * KK * hw_out + static_cast<long long>(i0) * p.Wo + j;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int r = 0; r < R; ++r)
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int u = 0; u < K; ++u) {
            const int y = (i0 + r) * p.sh - p.ph + u * p.dh;
            const bool row_ok = r < rv && y >= 0 && y < p.H;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
            for (int v = 0; v < K; ++v)
                w[r][u * K + v] = to_float(DYNCONV_LDG_IF(row_ok && col_ok[v], fp + (u * K + v) * hw_out + r * p.Wo, zero));
        }
    const StripChannels ch = strip_channels(p, it, cpt);
    const long long plane = static_cast<long long>(p.H) * p.W;
#if defined(__CUDA_ARCH__)
#pragma unroll 1
#endif
    for (int k = 0; k < ch.count; ++k) {
        const long long nc_idx = ch.first + k;  // n*C + c
        float cf[kFc ? KK : 1];
        if constexpr (kFc) strip_channel_filter<KK>(fc, nc_idx, cf);
        float acc[R];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int r = 0; r < R; ++r) acc[r] = 0.f;
        const T* xc = x + nc_idx * plane;
        int row_stride = p.W;
#if defined(__CUDA_ARCH__)
        // opaque per channel: the x offsets are recomputed (a few IMADs) instead of (R+K-1)*K 64-bit offsets
        // staying live across the channel loop
        asm volatile("" : "+r"(row_stride));
#endif
        // input row q serves output row r at tap row u = q - r (same row for all r: sh == dh or R == 1)
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int q = 0; q < R + K - 1; ++q) {
            const int y = i0 * p.sh - p.ph + q * p.dh;
            const bool row_ok = q < rv + K - 1 && y >= 0 && y < p.H;
            const T* xr = xc + y * row_stride;  // 32-bit: a plane has < 2^31 elements (strip_applies)
            float xv[K];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
            for (int v = 0; v < K; ++v) xv[v] = to_float(DYNCONV_LDG_IF(row_ok && col_ok[v], xr + col[v], zero));
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
            for (int r = 0; r < R; ++r) {
                const int u = q - r;
                if (u < 0 || u >= K) continue;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
                for (int v = 0; v < K; ++v) {
                    float wt = w[r][u * K + v];  // 0 outside the image, and so is xv there
                    if constexpr (kFc)  // outside the image a non-finite channel filter must not turn 0 into NaN
                        wt = row_ok && col_ok[v] ? (add ? wt + cf[u * K + v] : wt * cf[u * K + v]) : 0.f;
                    acc[r] += wt * xv[v];
                }
            }
        }
        T* o = out + (nc_idx * p.Ho + i0) * p.Wo + j;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int r = 0; r < R; ++r)
            if (r < rv) DYNCONV_STG(o + r * p.Wo, from_float<T>(acc[r]));
    }
}

//! Two adjacent elements of one row, loaded and stored as one aligned access.
template <typename T>
struct alignas(2 * sizeof(T)) StripPair {
    T lo, hi;
};

//! One pair item (strip_pairs_apply): output row i, columns j and j+1, for up to `cpt` channels of one group.
//! The input columns j-pw .. j-pw+K of a tap row are read as the aligned pairs from e0 = j-pw rounded down
//! to even; with W even a pair lies wholly inside or wholly outside the row.
template <int K, bool kFc, typename T>
DYNCONV_HD void strip_item_pairs(const T* x, const T* f, const T* fc, int add, T* out, const StripGeom& p, int cpt,
                                 long long idx, bool narrow) {
    constexpr int KK = K * K, NP = (K + 3) / 2;  // pairs covering K+1 columns at either parity
    using Pair = StripPair<T>;
    StripGeom pg = p;
    pg.Wo = p.Wo / 2;  // items are column pairs
    const StripItem it = strip_decompose(idx, pg, 1, cpt, narrow);
    const int i = it.rb, j = 2 * it.j, odd = p.pw & 1, e0 = j - p.pw - odd;
    const long long hw_out = static_cast<long long>(p.Ho) * p.Wo;
    const T zero = from_float<T>(0.f);
    const Pair zero2{zero, zero};
    bool col_ok[2][K];  // output column j+s, tap column v
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int s = 0; s < 2; ++s)
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int v = 0; v < K; ++v) col_ok[s][v] = j + s - p.pw + v >= 0 && j + s - p.pw + v < p.W;
    bool row_ok[K];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int u = 0; u < K; ++u) row_ok[u] = i * p.sh - p.ph + u * p.dh >= 0 && i * p.sh - p.ph + u * p.dh < p.H;
    // the per-pixel filter of both outputs; 0 for taps outside the image
    float w[2][KK];
    const Pair* fp = reinterpret_cast<const Pair*>(f + (static_cast<long long>(it.n) * p.groups + it.g) * KK * hw_out +
                                                   static_cast<long long>(i) * p.Wo + j);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int t = 0; t < KK; ++t) {
        const int u = t / K, v = t % K;
        const bool ok0 = row_ok[u] && col_ok[0][v], ok1 = row_ok[u] && col_ok[1][v];
        const Pair fv = DYNCONV_LDG_IF(ok0 || ok1, fp + t * (hw_out / 2), zero2);
        w[0][t] = ok0 ? to_float(fv.lo) : 0.f;
        w[1][t] = ok1 ? to_float(fv.hi) : 0.f;
    }
    const StripChannels ch = strip_channels(p, it, cpt);
    const long long plane = static_cast<long long>(p.H) * p.W;
#if defined(__CUDA_ARCH__)
#pragma unroll 1
#endif
    for (int k = 0; k < ch.count; ++k) {
        const long long nc_idx = ch.first + k;  // n*C + c
        float cf[kFc ? KK : 1];
        if constexpr (kFc) strip_channel_filter<KK>(fc, nc_idx, cf);
        float acc[2] = {0.f, 0.f};
        const T* xc = x + nc_idx * plane;
        int row_stride = p.W;
#if defined(__CUDA_ARCH__)
        asm volatile("" : "+r"(row_stride));  // as in strip_item: offsets recomputed per channel
#endif
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int u = 0; u < K; ++u) {
            const int y = i * p.sh - p.ph + u * p.dh;
            const Pair* xr = reinterpret_cast<const Pair*>(xc + y * row_stride + e0);  // e0 and W even: aligned
            float xe[2 * NP];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
            for (int q = 0; q < NP; ++q) {
                // pair q holds columns e0+2q, e0+2q+1; the last one is unused at even pw
                const bool ok = row_ok[u] && e0 + 2 * q >= 0 && e0 + 2 * q < p.W && (q < NP - 1 || odd);
                const Pair v2 = DYNCONV_LDG_IF(ok, xr + q, zero2);
                xe[2 * q] = to_float(v2.lo);
                xe[2 * q + 1] = to_float(v2.hi);
            }
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
            for (int s = 0; s < 2; ++s)
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
                for (int v = 0; v < K; ++v) {
                    const float xv = odd ? xe[1 + s + v] : xe[s + v];  // column j+s-pw+v
                    float wt = w[s][u * K + v];  // 0 outside the image, and so is xv there
                    if constexpr (kFc)  // outside the image a non-finite channel filter must not turn 0 into NaN
                        wt = row_ok[u] && col_ok[s][v] ? (add ? wt + cf[u * K + v] : wt * cf[u * K + v]) : 0.f;
                    acc[s] += wt * xv;
                }
        }
        Pair* o = reinterpret_cast<Pair*>(out + (nc_idx * p.Ho + i) * p.Wo + j);
        DYNCONV_STG(o, (Pair{from_float<T>(acc[0]), from_float<T>(acc[1])}));
    }
}

//! The item loop of the CPU reference (the kernel's decomposition, plan for an unlimited GPU): odd items
//! take the 64-bit index path so both decompositions are tested; pair items wherever the FP16 kernel takes
//! them, so the parity tests cover that body too (same per-output summation order). `generic(n, c, i, j)`:
//! one output of the kernel sizes without a compiled item body.
template <bool kFc, typename Generic>
void strip_run_cpu(const float* x, const float* f, const float* fc, int add, float* out, const StripGeom& p,
                   Generic&& generic) {
    const StripPlan plan = strip_plan(p, 0, 2);
    const long long total = strip_item_count(p, plan);
    auto run = [&](auto rows) {
        for (long long idx = 0; idx < total; ++idx)
            strip_item<kStripK, decltype(rows)::value, kFc>(x, f, fc, add, out, p, plan.cpt, idx,
                                                            (idx & 1) == 0 && total <= 0xffffffffLL);
    };
    if (!strip_applies(p)) {
        for (int n = 0; n < p.N; ++n)
            for (int c = 0; c < p.C; ++c)
                for (int i = 0; i < p.Ho; ++i)
                    for (int j = 0; j < p.Wo; ++j) *out++ = generic(n, c, i, j);
    } else if (plan.cols == 2) {
        for (long long idx = 0; idx < total; ++idx)
            strip_item_pairs<kStripK, kFc>(x, f, fc, add, out, p, plan.cpt, idx, (idx & 1) == 0 && total <= 0xffffffffLL);
    } else if (plan.rows == kStripRows) {
        run(std::integral_constant<int, kStripRows>{});
    } else {
        run(std::integral_constant<int, 1>{});
    }
}

} // namespace dynconv
