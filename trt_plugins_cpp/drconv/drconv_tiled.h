// DRConv as region-sorted implicit GEMMs: the kernels' algorithm, shared by the CUDA launcher and the
// CPU reference build.
//
// Every pixel uses the filter of one region, so the output is, per sample n and region t, a plain
// convolution over the pixels of region t. The pixels of each (n, t) are first listed, in pixel order,
// in a workspace (three small passes: per-chunk region counts, a scan, a stable scatter); then each block
// of the GEMM pass computes BM output channels x BN pixels of one (n, t) list:
//   Out[o, q] = sum_k F[n, t, o, k] * X[k, q],  k = c*kh*kw + u*kw + v  (the filters' own layout)
// so the work is that of one convolution (plus at most one partial tile per (n, t)), whatever the regions.
//
// FP16 I/O with >= 32 output channels runs the GEMMs on tensor cores (common/mma_tile.h: FP16 operands,
// FP32 accumulation); otherwise FP32-FMA register tiles (common/tile_gemm.h). All passes are block bodies
// against an executor, so the CPU reference runs them as written. Counting and ranking use no atomics:
// the pixel lists, and so the outputs, are deterministic.
#pragma once

#include "common/mma_tile.h"
#include "common/tile_gemm.h"
#include "common/trace.h"
#include "drconv/drconv_math.h"

namespace dynconv {

constexpr int kDrChunk = 256;  // pixels per block of the listing passes (= threads)

template <int BM, int BN, int TM, int TN>
using DrTile = GemmTile<BM, BN, TM, TN>;
using DrTileLarge = DrTile<64, 64, 4, 4>;   // O > 16
using DrTileSmall = DrTile<16, 128, 2, 4>;  // O <= 16

using DrMmaTileWide = MmaTile<128, 64>;  // FP16, O >= 128
using DrMmaTileTall = MmaTile<64, 128>;  // FP16, 32 <= O < 128

enum class DrKernel : int { kFmaLarge, kFmaSmall, kMmaWide, kMmaTall };

DYNCONV_HD DrKernel drconv_kernel_choice(const DrconvParams& p, bool fp16_io) {
    if (fp16_io && p.O >= 32) return p.O >= 128 ? DrKernel::kMmaWide : DrKernel::kMmaTall;
    return p.O > 16 ? DrKernel::kFmaLarge : DrKernel::kFmaSmall;
}

//! Pixels per GEMM tile (BN) of a kernel choice; the listing pass counts tiles in these units.
DYNCONV_HD int drconv_tile_pixels(DrKernel k) {
    switch (k) {
    case DrKernel::kFmaLarge: return DrTileLarge::BN;
    case DrKernel::kFmaSmall: return DrTileSmall::BN;
    case DrKernel::kMmaWide: return DrMmaTileWide::BN;
    default: return DrMmaTileTall::BN;
    }
}

//! Workspace of the pixel lists (ints): the region map [N][Ho*Wo], chunk counts/bases [N*m][chunks], region
//! start and count [N*m], tile prefix [N*m + 1] and the lists themselves [N][Ho*Wo].
struct DrLists {
    int* region;  // per n: region of each pixel (pass 1 finds it, pass 3 reads it back)
    int* chunk;   // per (n, t, chunk): pixel count, then (after the scan) the chunk's first slot in the list
    int* start;   // per (n, t): first slot of region t inside sample n's list
    int* count;   // per (n, t): pixels of region t
    int* tiles;   // per (n, t): first GEMM tile of the pair; tiles[N*m] = total tiles
    int* pixels;  // per n: Ho*Wo pixel indices i*Wo + j, grouped by region, ascending inside a region
};

DYNCONV_HD long long drconv_chunks(const DrconvParams& p) {
    return (static_cast<long long>(p.Ho) * p.Wo + kDrChunk - 1) / kDrChunk;
}

DYNCONV_HD long long drconv_workspace_ints(const DrconvParams& p) {
    const long long pairs = static_cast<long long>(p.N) * p.m;
    return pairs * drconv_chunks(p) + 3 * pairs + 1 + 2 * static_cast<long long>(p.N) * p.Ho * p.Wo;
}

DYNCONV_HD DrLists drconv_lists(const DrconvParams& p, int* ws) {
    const long long pairs = static_cast<long long>(p.N) * p.m;
    DrLists l;
    l.region = ws;
    l.chunk = l.region + static_cast<long long>(p.N) * p.Ho * p.Wo;
    l.start = l.chunk + pairs * drconv_chunks(p);
    l.count = l.start + pairs;
    l.tiles = l.count + pairs;
    l.pixels = l.tiles + pairs + 1;
    return l;
}

//! Upper bound of the GEMM tiles: sum over (n, t) of ceil(count / BN) <= N * ceil(Ho*Wo / BN) + N*m.
DYNCONV_HD long long drconv_max_tiles(const DrconvParams& p, int bn) {
    const long long hw = static_cast<long long>(p.Ho) * p.Wo;
    return static_cast<long long>(p.N) * ((hw + bn - 1) / bn + p.m);
}

// ---- passes 1 and 3: regions of one chunk of pixels (block = (chunk, n)) --------------------------------

struct DrChunkSmem {
    int region[kDrChunk];  // -1 past the last pixel
};

//! Pass 1: thread t finds the region of pixel t of the chunk (argmax of the guide) and records it.
template <typename T>
DYNCONV_HD void dr_chunk_regions(const DrconvParams& p, const T* guide, const DrLists& l, int chunk, int n, int t,
                                 DrChunkSmem& sm) {
    const long long q = static_cast<long long>(chunk) * kDrChunk + t, hw = static_cast<long long>(p.Ho) * p.Wo;
    int r = -1;
    if (q < hw) {
        r = drconv_region(guide, p, n, int(q / p.Wo), int(q % p.Wo));
        DYNCONV_STG(l.region + n * hw + q, r);
    }
    DYNCONV_STS(&sm.region[t], r);
}

//! Pass 3: the regions pass 1 recorded for the chunk.
DYNCONV_HD void dr_chunk_recall(const DrconvParams& p, const DrLists& l, int chunk, int n, int t, DrChunkSmem& sm) {
    const long long q = static_cast<long long>(chunk) * kDrChunk + t, hw = static_cast<long long>(p.Ho) * p.Wo;
    DYNCONV_STS(&sm.region[t], DYNCONV_LDG_IF(q < hw, l.region + n * hw + q, -1));
}

//! Pass 1, after dr_chunk_regions: thread t counts region t (and t + 256, ...) in the chunk.
DYNCONV_HD void dr_chunk_count(const DrconvParams& p, const DrLists& l, int chunk, int n, int t, const DrChunkSmem& sm) {
    const long long chunks = drconv_chunks(p);
    for (int r = t; r < p.m; r += kDrChunk) {
        int c = 0;
        for (int k = 0; k < kDrChunk; ++k) c += DYNCONV_LDS(&sm.region[k]) == r;
        DYNCONV_STG(l.chunk + (static_cast<long long>(n) * p.m + r) * chunks + chunk, c);
    }
}

//! Pass 3, after dr_chunk_recall: pixel t of the chunk goes to its region's list, after the chunk's
//! earlier pixels of the same region (a stable order).
DYNCONV_HD void dr_chunk_scatter(const DrconvParams& p, const DrLists& l, int chunk, int n, int t, const DrChunkSmem& sm) {
    const int r = DYNCONV_LDS(&sm.region[t]);
    if (r < 0) return;
    int rank = 0;
    for (int k = 0; k < t; ++k) rank += DYNCONV_LDS(&sm.region[k]) == r;
    const long long pair = static_cast<long long>(n) * p.m + r;
    const long long slot = DYNCONV_LDG(l.start + pair) + DYNCONV_LDG(l.chunk + pair * drconv_chunks(p) + chunk) + rank;
    DYNCONV_STG(l.pixels + static_cast<long long>(n) * p.Ho * p.Wo + slot, chunk * kDrChunk + t);
}

// ---- pass 2: scans (one block) ---------------------------------------------------------------------------

//! Phase 1, thread t: for pairs t, t + 256, ...: chunk counts -> chunk bases (exclusive scan); region count.
DYNCONV_HD void dr_scan_chunks(const DrconvParams& p, const DrLists& l, int t) {
    const long long chunks = drconv_chunks(p), pairs = static_cast<long long>(p.N) * p.m;
    for (long long e = t; e < pairs; e += kDrChunk) {
        int base = 0;
        for (long long c = 0; c < chunks; ++c) {
            const int v = DYNCONV_LDG(l.chunk + e * chunks + c);
            DYNCONV_STG(l.chunk + e * chunks + c, base);
            base += v;
        }
        DYNCONV_STG(l.count + e, base);
    }
}

struct DrScanSmem {
    int pix[2][kDrChunk];    // ping-pong buffers of the block scan: pixels, tiles
    int tiles[2][kDrChunk];
    long long carry_pix;     // totals of the earlier rounds
    int carry_tiles;
};

struct DrNoAcc {};

//! Region starts inside each sample's list and the tile prefix over all pairs, 256 pairs per round with a
//! block-wide inclusive (Hillis-Steele) scan of the pixel and tile counts. Every pixel has one region, so
//! the pixels before pair e = n*m + r in all samples minus the n*Ho*Wo of the earlier samples is r's start
//! in sample n's list.
template <class Exec>
DYNCONV_HD void dr_scan_pairs(const DrconvParams& p, const DrLists& l, int bn, DrScanSmem& sm, Exec& ex) {
    const long long pairs = static_cast<long long>(p.N) * p.m, hw = static_cast<long long>(p.Ho) * p.Wo;
    ex.each([&](int t, DrNoAcc&) {
        if (t == 0) { sm.carry_pix = 0; sm.carry_tiles = 0; }
    });
    for (long long base = 0; base < pairs; base += kDrChunk) {
        ex.each([&](int t, DrNoAcc&) {
            const int count = DYNCONV_LDG_IF(base + t < pairs, l.count + base + t, 0);
            DYNCONV_STS(&sm.pix[0][t], count);
            DYNCONV_STS(&sm.tiles[0][t], (count + bn - 1) / bn);
        });
        int src = 0;
        for (int d = 1; d < kDrChunk; d *= 2, src ^= 1) {
            ex.sync();
            ex.each([&](int t, DrNoAcc&) {
                const bool add = t >= d;
                DYNCONV_STS(&sm.pix[src ^ 1][t], DYNCONV_LDS(&sm.pix[src][t]) + (add ? DYNCONV_LDS(&sm.pix[src][t - d]) : 0));
                DYNCONV_STS(&sm.tiles[src ^ 1][t],
                            DYNCONV_LDS(&sm.tiles[src][t]) + (add ? DYNCONV_LDS(&sm.tiles[src][t - d]) : 0));
            });
        }
        ex.sync();
        ex.each([&](int t, DrNoAcc&) {  // inclusive -> exclusive: subtract the pair's own count
            const long long e = base + t;
            if (e >= pairs) return;
            const int count = DYNCONV_LDG(l.count + e);
            const long long before = sm.carry_pix + DYNCONV_LDS(&sm.pix[src][t]) - count;
            DYNCONV_STG(l.start + e, int(before - (e / p.m) * hw));
            DYNCONV_STG(l.tiles + e, sm.carry_tiles + DYNCONV_LDS(&sm.tiles[src][t]) - (count + bn - 1) / bn);
        });
        ex.sync();
        ex.each([&](int t, DrNoAcc&) {
            if (t == kDrChunk - 1) {
                sm.carry_pix += sm.pix[src][t];
                sm.carry_tiles += sm.tiles[src][t];
            }
        });
        ex.sync();
    }
    ex.each([&](int t, DrNoAcc&) {
        if (t == 0) DYNCONV_STG(l.tiles + pairs, sm.carry_tiles);
    });
}

//! Pass 2 (one block of kDrChunk threads): chunk bases and region counts, then the pair scan.
template <class Exec>
DYNCONV_HD void dr_scan_block(const DrconvParams& p, const DrLists& l, int bn, DrScanSmem& sm, Exec& ex) {
    ex.each([&](int t, DrNoAcc&) { dr_scan_chunks(p, l, t); });
    ex.sync();
    dr_scan_pairs(p, l, bn, sm, ex);
}

// ---- pass 4: the GEMM (block = (tile bx, output-channel tile by)) --------------------------------------

template <class Cfg>
struct DrGemmSmem {
    // w rows padded by 2 floats: the fill stores a warp's 16 k x 2 filters at banks 2k + m (all distinct;
    // unpadded, the 16 k of one filter share a bank: 16-way for BM = 64, 8-way for BM = 16)
    static constexpr int kPadX = 0, kPadW = 2;
    alignas(16) float x[Cfg::BK][Cfg::BN];           // input samples of the chunk
    alignas(16) float w[Cfg::BK][Cfg::BM + kPadW];  // filter values of the chunk
    int pix[Cfg::BN];                       // pixel i*Wo + j of each column (-1: none)
    int y0[Cfg::BN], x0[Cfg::BN];           // top-left input position of each column's window
    int n, region, first, len;              // the tile: sample, region, first list slot, pixel count
};

template <class Cfg>
struct DrMmaSmem {
    static constexpr int kPadX = Cfg::LDS - Cfg::BN, kPadW = Cfg::LDW - Cfg::BM;
    alignas(32) float stage[Cfg::BM][Cfg::LDO];  // the block's FP32 results
    alignas(32) MmaHalf s[Cfg::BK][Cfg::LDS];    // samples: matrix B (K x N, row-major)
    alignas(32) MmaHalf w[Cfg::BK][Cfg::LDW];    // filters: matrix A (M x K, column-major)
    int pix[Cfg::BN];
    int y0[Cfg::BN], x0[Cfg::BN];
    int n, region, first, len;
};

//! Phase 0, thread 0: which (n, t) list and which part of it tile bx covers (len = 0: past the end).
DYNCONV_HD void dr_find_tile(const DrconvParams& p, const DrLists& l, int bn, int bx, int t, int& n, int& region,
                             int& first, int& len) {
    if (t != 0) return;
    const long long pairs = static_cast<long long>(p.N) * p.m;
    len = 0;
    if (bx >= l.tiles[pairs]) return;
    long long lo = 0, hi = pairs - 1;  // last pair whose first tile <= bx (pairs without tiles share it)
    while (lo < hi) {
        const long long mid = (lo + hi + 1) / 2;
        if (l.tiles[mid] <= bx) lo = mid; else hi = mid - 1;
    }
    n = int(lo / p.m);
    region = int(lo % p.m);
    const int within = (bx - l.tiles[lo]) * bn;
    first = l.start[lo] + within;
    len = l.count[lo] - within < bn ? l.count[lo] - within : bn;
}

//! Thread t < BN: the list slot -> pixel of column t and its window origin (sm: pix/y0/x0/n/first/len).
template <class Cfg, class Smem>
DYNCONV_HD void dr_load_pixels(const DrconvParams& p, const DrLists& l, int t, Smem& sm) {
    if (t >= Cfg::BN) return;
    const int q = DYNCONV_LDG_IF(t < sm.len, l.pixels + static_cast<long long>(sm.n) * p.Ho * p.Wo + sm.first + t, -1);
    DYNCONV_STS(&sm.pix[t], q);
    DYNCONV_STS(&sm.y0[t], q < 0 ? 0 : (q / p.Wo) * p.sh - p.ph);
    DYNCONV_STS(&sm.x0[t], q < 0 ? 0 : (q % p.Wo) * p.sw - p.pw);
}

//! One GEMM column's pixel (-1: none) and window origin, held in registers.
struct DrColumn {
    int pix, y0, x0;
};

template <class Smem>
DYNCONV_HD DrColumn dr_load_column(const Smem& sm, int col) {
    return DrColumn{DYNCONV_LDS(&sm.pix[col]), DYNCONV_LDS(&sm.y0[col]), DYNCONV_LDS(&sm.x0[col])};
}

//! Input value of reduction step k (k = c*kh*kw + u*kw + v) at a column (0 outside the image / no pixel).
template <typename T, class Smem>
DYNCONV_HD float dr_sample(const DrconvParams& p, const T* x, const Smem& sm, const DrColumn& col, int k) {
    if (col.pix < 0) return 0.f;
    const int taps = p.kh * p.kw, c = k / taps, tap = k - c * taps, u = tap / p.kw, v = tap - u * p.kw;
    const int y = col.y0 + u * p.dh, xx = col.x0 + v * p.dw;
    const bool inside = y >= 0 && y < p.H && xx >= 0 && xx < p.W;
    return to_float(DYNCONV_LDG_IF(inside, x + ((static_cast<long long>(sm.n) * p.C + c) * p.H + y) * p.W + xx, T()));
}

//! Reduction steps k0 .. k0+kc-1 into x[kk][col] (samples) and w[kk][mm] (the tile's filters), through
//! `store(value)` (FP32 for the FMA tiles, FP16-rounded for the tensor-core tiles).
template <class Cfg, typename T, class Smem, class Elem, class Store>
DYNCONV_HD void dr_fill(const DrconvParams& p, const T* x, const T* filters, int o0, int k0, int kc, int t, const Smem& sm,
                        Elem (&xs)[Cfg::BK][Cfg::BN + Smem::kPadX], Elem (&ws)[Cfg::BK][Cfg::BM + Smem::kPadW],
                        Store store) {
    // thread t keeps column t % BN (consecutive threads: consecutive columns) for its BK * BN / kThreads steps
    static_assert(Cfg::kThreads % Cfg::BN == 0, "each thread fills one column");
    const int col = t % Cfg::BN;
    const DrColumn cd = dr_load_column(sm, col);
    for (int kk = t / Cfg::BN; kk < Cfg::BK; kk += Cfg::kThreads / Cfg::BN)
        DYNCONV_STS(&xs[kk][col], store(kk < kc ? dr_sample(p, x, sm, cd, k0 + kk) : 0.f));
    const long long K = static_cast<long long>(p.C) * p.kh * p.kw;
    const T* f = filters + (static_cast<long long>(sm.n) * p.m + sm.region) * p.O * K;
    for (int e = t; e < Cfg::BK * Cfg::BM; e += Cfg::kThreads) {
        const int mm = e / Cfg::BK, kk = e % Cfg::BK;  // consecutive threads: consecutive k of one filter
        const bool valid = kk < kc && o0 + mm < p.O;
        DYNCONV_STS(&ws[kk][mm], store(to_float(DYNCONV_LDG_IF(valid, f + (o0 + mm) * K + k0 + kk, T()))));
    }
}

struct DrKeepFloat {
    DYNCONV_HD float operator()(float v) const { return v; }
};
struct DrToHalf {
    DYNCONV_HD MmaHalf operator()(float v) const { return to_mma_half(v); }
};

template <class Cfg, typename T>
DYNCONV_HD void dr_store(const DrconvParams& p, T* out, int o0, int t, const DrGemmSmem<Cfg>& sm, const TileAcc<Cfg>& acc) {
    const int tx = t % Cfg::TX, ty = t / Cfg::TX;
    const long long hw = static_cast<long long>(p.Ho) * p.Wo;
    for (int s = 0; s < Cfg::TM; ++s) {
        const int o = o0 + ty * Cfg::TM + s;
        if (o >= p.O) continue;
        for (int r = 0; r < Cfg::TN; ++r) {
            const int q = DYNCONV_LDS(&sm.pix[tx * Cfg::TN + r]);
            if (q >= 0) DYNCONV_STG(out + (static_cast<long long>(sm.n) * p.O + o) * hw + q, from_float<T>(acc.v[s][r]));
        }
    }
}

//! The GEMM block. Control flow depends only on values in shared memory after a barrier (block-uniform).
template <class Cfg, typename T, class Exec>
DYNCONV_HD void drconv_gemm_block(const DrconvParams& p, const T* x, const T* filters, T* out, const DrLists& l,
                                  int bx, int by, DrGemmSmem<Cfg>& sm, Exec& ex) {
    const int o0 = by * Cfg::BM;
    ex.each([&](int t, TileAcc<Cfg>&) { dr_find_tile(p, l, Cfg::BN, bx, t, sm.n, sm.region, sm.first, sm.len); });
    ex.sync();
    if (sm.len == 0) return;
    ex.each([&](int t, TileAcc<Cfg>& acc) {
        tile_zero(acc);
        dr_load_pixels<Cfg>(p, l, t, sm);
    });
    ex.sync();
    const int K = p.C * p.kh * p.kw;
    for (int k0 = 0; k0 < K; k0 += Cfg::BK) {
        const int kc = K - k0 < Cfg::BK ? K - k0 : Cfg::BK;
        ex.each([&](int t, TileAcc<Cfg>&) { dr_fill<Cfg, T>(p, x, filters, o0, k0, kc, t, sm, sm.x, sm.w, DrKeepFloat()); });
        ex.sync();
        ex.each([&](int t, TileAcc<Cfg>& acc) { tile_accumulate<Cfg>(kc, t, sm.x, sm.w, acc); });
        ex.sync();
    }
    ex.each([&](int t, TileAcc<Cfg>& acc) { dr_store<Cfg, T>(p, out, o0, t, sm, acc); });
}

template <class Cfg, typename T>
DYNCONV_HD void dr_mma_store(const DrconvParams& p, T* out, int o0, int t, const DrMmaSmem<Cfg>& sm) {
    const long long hw = static_cast<long long>(p.Ho) * p.Wo;
    for (int e = t; e < Cfg::BM * Cfg::BN; e += Cfg::kThreads) {
        const int m = e / Cfg::BN, col = e % Cfg::BN;  // consecutive threads: consecutive columns
        const int q = DYNCONV_LDS(&sm.pix[col]);
        if (q >= 0 && o0 + m < p.O)
            DYNCONV_STG(out + (static_cast<long long>(sm.n) * p.O + o0 + m) * hw + q, from_float<T>(DYNCONV_LDS(&sm.stage[m][col])));
    }
}

//! The tensor-core GEMM block (executor with each(f(t)), each_warp(f(warp, acc)), sync()).
template <class Cfg, typename T, class Exec>
DYNCONV_HD void drconv_mma_block(const DrconvParams& p, const T* x, const T* filters, T* out, const DrLists& l,
                                 int bx, int by, DrMmaSmem<Cfg>& sm, Exec& ex) {
    const int o0 = by * Cfg::BM;
    ex.each([&](int t) { dr_find_tile(p, l, Cfg::BN, bx, t, sm.n, sm.region, sm.first, sm.len); });
    ex.sync();
    if (sm.len == 0) return;
    ex.each([&](int t) { dr_load_pixels<Cfg>(p, l, t, sm); });
    ex.each_warp([&](int, auto& acc) { mma_zero(acc); });
    ex.sync();
    const int K = p.C * p.kh * p.kw;
    for (int k0 = 0; k0 < K; k0 += Cfg::BK) {
        const int kc = K - k0 < Cfg::BK ? K - k0 : Cfg::BK;
        ex.each([&](int t) { dr_fill<Cfg, T>(p, x, filters, o0, k0, kc, t, sm, sm.s, sm.w, DrToHalf()); });
        ex.sync();
        ex.each_warp([&](int warp, auto& acc) { mma_step<Cfg>(warp, sm.w, sm.s, acc); });
        ex.sync();
    }
    ex.each_warp([&](int warp, auto& acc) { mma_stage<Cfg>(warp, acc, sm.stage); });
    ex.sync();
    ex.each([&](int t) { dr_mma_store<Cfg, T>(p, out, o0, t, sm); });
}

} // namespace dynconv
