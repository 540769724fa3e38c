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
// FP16 I/O with >= 32 output channels runs the GEMMs on tensor cores (drconv_mma.h: FP16 operands, FP32
// accumulation); otherwise FP32-FMA register tiles (common/tile_gemm.h). All passes are block bodies
// against an executor, so the CPU reference runs them as written. Counting and ranking use no atomics:
// the pixel lists, and so the outputs, are deterministic.
#pragma once

#include "common/tile_gemm.h"
#include "common/trace.h"
#include "drconv/drconv_lists.h"
#include "drconv/drconv_math.h"
#include "drconv/drconv_mma.h"

namespace dynconv {

template <int BM, int BN, int TM, int TN>
using DrTile = GemmTile<BM, BN, TM, TN>;
using DrTileLarge = DrTile<64, 64, 4, 4>;   // O > 16
using DrTileSmall = DrTile<16, 128, 2, 4>;  // O <= 16
// O > 16 on long pixel lists: 8x8 micro-tiles read half the shared words per FMA of 4x4 (common/tile_gemm.h)
using DrTileLargeW = DrTile<64, 256, 8, 8>;

using DrMmaTileWide = DrMmaTile<128, 128, 32>;  // FP16, O > 64: 2 x 2 warps of 64 x 64
using DrMmaTileTall = DrMmaTile<64, 256, 16>;   // FP16, 32 <= O <= 64: 1 x 4 warps of 64 x 64
using DrMmaTileNarrow = DrMmaTile<128, 64, 32>; // FP16, O > 64, grids short of the SMs: 2 x 1 warps
using DrMmaTileShort = DrMmaTile<64, 128, 16>;  // FP16, 32 <= O <= 64, grids short of the SMs: 1 x 2 warps

enum class DrKernel : int { kFmaLarge, kFmaSmall, kMmaWide, kMmaTall, kMmaNarrow, kMmaShort, kFmaLargeW };

//! How long the GEMM pass lasts with BN-pixel tiles of BM channels, in block-pixels on the busiest of
//! `sm_count` SMs, for the tiles expected before the lists exist: every (sample, region) list's pixels in
//! BN units plus half a partial tile per list.
DYNCONV_HD long long drconv_span(const DrconvParams& p, int bm, int bn, int sm_count) {
    const long long pixels = static_cast<long long>(p.N) * p.Ho * p.Wo;
    const long long tiles = ((pixels + bn - 1) / bn + (static_cast<long long>(p.N) * p.m + 1) / 2) * ((p.O + bm - 1) / bm);
    return launch_span(tiles, bn, sm_count);
}

//! Whether tiles of `smaller` pixels (bm output channels) replace tiles of `larger` on `sm_count` SMs
//! (smaller_tile_pays; never for sm_count <= 0).
DYNCONV_HD bool drconv_smaller_tile_pays(const DrconvParams& p, int bm, int smaller, int larger, int sm_count) {
    return sm_count > 0 && smaller_tile_pays(drconv_span(p, bm, smaller, sm_count), drconv_span(p, bm, larger, sm_count));
}

//! FP16 I/O with >= 32 output channels: the tensor-core tile for the channel count, or its half-width
//! twin where that shortens the pass enough on the device's `sm_count` SMs (smaller_tile_pays;
//! sm_count <= 0: the full tile regardless). Otherwise the FP32-FMA tiles: for O > 16 the 64x256 one,
//! or 64x64 by the same rule.
DYNCONV_HD DrKernel drconv_kernel_choice(const DrconvParams& p, bool fp16_io, int sm_count = kSmCountH200) {
    if (fp16_io && p.O >= 32) {
        const bool wide = p.O > 64;
        const int bm = wide ? DrMmaTileWide::BM : DrMmaTileTall::BM;
        const int full = wide ? DrMmaTileWide::BN : DrMmaTileTall::BN, half = wide ? DrMmaTileNarrow::BN : DrMmaTileShort::BN;
        if (drconv_smaller_tile_pays(p, bm, half, full, sm_count)) return wide ? DrKernel::kMmaNarrow : DrKernel::kMmaShort;
        return wide ? DrKernel::kMmaWide : DrKernel::kMmaTall;
    }
    if (p.O <= 16) return DrKernel::kFmaSmall;
    static_assert(DrTileLarge::BM == DrTileLargeW::BM, "twins of one channel tile");
    return drconv_smaller_tile_pays(p, DrTileLarge::BM, DrTileLarge::BN, DrTileLargeW::BN, sm_count) ? DrKernel::kFmaLarge
                                                                                                      : DrKernel::kFmaLargeW;
}

//! Pixels per GEMM tile (BN) of a kernel choice; the listing pass counts tiles in these units.
DYNCONV_HD int drconv_tile_pixels(DrKernel k) {
    switch (k) {
    case DrKernel::kFmaLarge: return DrTileLarge::BN;
    case DrKernel::kFmaLargeW: return DrTileLargeW::BN;
    case DrKernel::kFmaSmall: return DrTileSmall::BN;
    case DrKernel::kMmaWide: return DrMmaTileWide::BN;
    case DrKernel::kMmaNarrow: return DrMmaTileNarrow::BN;
    case DrKernel::kMmaShort: return DrMmaTileShort::BN;
    default: return DrMmaTileTall::BN;
    }
}

//! The kernel's name in the performance model (its ptxas entry: drconv_<mma|fma>_<BM>x<BN>).
inline const char* drconv_kernel_name(DrKernel k) {
    switch (k) {
    case DrKernel::kFmaLarge: return "drconv_fma_64x64";
    case DrKernel::kFmaLargeW: return "drconv_fma_64x256";
    case DrKernel::kFmaSmall: return "drconv_fma_16x128";
    case DrKernel::kMmaWide: return "drconv_mma_128x128";
    case DrKernel::kMmaNarrow: return "drconv_mma_128x64";
    case DrKernel::kMmaShort: return "drconv_mma_64x128";
    default: return "drconv_mma_64x256";
    }
}

// ---- passes 1 and 3: regions of one chunk of pixels (block = (chunk, n)) --------------------------------

struct DrChunkSmem {
    int region[kDrChunk];            // -1 past the last pixel
    unsigned codes[kDrChunk / 4];    // the same as bytes (255: none) when m <= 255: 4 regions per shared load
};

//! Regions fit the byte codes of DrChunkSmem (the counting loops then read 4 pixels per shared load).
DYNCONV_HD bool dr_byte_codes(const DrconvParams& p) { return p.m <= 255; }

DYNCONV_HD void dr_chunk_record(const DrconvParams& p, int t, int r, DrChunkSmem& sm) {
    DYNCONV_STS(&sm.region[t], r);
    if (dr_byte_codes(p)) DYNCONV_STS(reinterpret_cast<unsigned char*>(sm.codes) + t, static_cast<unsigned char>(r < 0 ? 255 : r));
}

//! Pixels of region r among the chunk's first `end` pixels.
DYNCONV_HD int dr_chunk_count_before(const DrconvParams& p, const DrChunkSmem& sm, int r, int end) {
    int c = 0;
    if (dr_byte_codes(p)) {
        for (int k = 0; k < end; k += 4) {
            const unsigned w = DYNCONV_LDS(&sm.codes[k / 4]);
            for (int b = 0; b < 4 && k + b < end; ++b) c += int((w >> (8 * b)) & 0xffu) == r;
        }
    } else {
        for (int k = 0; k < end; ++k) c += DYNCONV_LDS(&sm.region[k]) == r;
    }
    return c;
}

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
    dr_chunk_record(p, t, r, sm);
}

//! Pass 3: the regions pass 1 recorded for the chunk.
DYNCONV_HD void dr_chunk_recall(const DrconvParams& p, const DrLists& l, int chunk, int n, int t, DrChunkSmem& sm) {
    const long long q = static_cast<long long>(chunk) * kDrChunk + t, hw = static_cast<long long>(p.Ho) * p.Wo;
    dr_chunk_record(p, t, DYNCONV_LDG_IF(q < hw, l.region + n * hw + q, -1), sm);
}

//! Pass 1, after dr_chunk_regions: thread t counts region t (and t + 256, ...) in the chunk.
DYNCONV_HD void dr_chunk_count(const DrconvParams& p, const DrLists& l, int chunk, int n, int t, const DrChunkSmem& sm) {
    for (int r = t; r < p.m; r += kDrChunk)
        DYNCONV_STG(l.chunk + drconv_chunk_slot(p, chunk, static_cast<long long>(n) * p.m + r), dr_chunk_count_before(p, sm, r, kDrChunk));
}

//! Pass 3, after dr_chunk_recall: pixel t of the chunk goes to its region's list, after the chunk's
//! earlier pixels of the same region (a stable order).
DYNCONV_HD void dr_chunk_scatter(const DrconvParams& p, const DrLists& l, int chunk, int n, int t, const DrChunkSmem& sm) {
    const int r = DYNCONV_LDS(&sm.region[t]);
    if (r < 0) return;
    const int rank = dr_chunk_count_before(p, sm, r, t);
    const long long pair = static_cast<long long>(n) * p.m + r;
    const long long slot = DYNCONV_LDG(l.start + pair) + DYNCONV_LDG(l.chunk + drconv_chunk_slot(p, chunk, pair)) + rank;
    DYNCONV_STG(l.pixels + static_cast<long long>(n) * p.Ho * p.Wo + slot, chunk * kDrChunk + t);
}

// ---- pass 2: scans (one block) ---------------------------------------------------------------------------

//! Phase 1, thread t: for pairs t, t + 256, ...: chunk counts -> chunk bases (exclusive scan); region count.
//! The counts are read kScanBatch chunks at a time before any is overwritten: that many loads in flight
//! per thread instead of one round trip per chunk.
DYNCONV_HD void dr_scan_chunks(const DrconvParams& p, const DrLists& l, int t) {
    constexpr int kScanBatch = 8;
    const long long chunks = drconv_chunks(p), pairs = static_cast<long long>(p.N) * p.m;
    for (long long e = t; e < pairs; e += kDrChunk) {
        int base = 0;
        for (long long c0 = 0; c0 < chunks; c0 += kScanBatch) {
            int v[kScanBatch];
            DYNCONV_UNROLL
            for (int j = 0; j < kScanBatch; ++j)
                v[j] = DYNCONV_LDG_IF(c0 + j < chunks, l.chunk + drconv_chunk_slot(p, c0 + j, e), 0);
            DYNCONV_UNROLL
            for (int j = 0; j < kScanBatch; ++j) {
                if (c0 + j < chunks) DYNCONV_STG(l.chunk + drconv_chunk_slot(p, c0 + j, e), base);
                base += v[j];
            }
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
    alignas(16) int pix[Cfg::BN];           // pixel i*Wo + j of each column (-1: none)
    int y0[Cfg::BN], x0[Cfg::BN];           // top-left input position of each column's window
    int n, region, first, len;              // the tile: sample, region, first list slot, pixel count
};

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
//! `store(value)`.
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

//! The thread's TM x TN outputs to their listed pixels (the columns' pixels read once, 4 at a time).
template <class Cfg, typename T>
DYNCONV_HD void dr_store(const DrconvParams& p, T* out, int o0, int t, const DrGemmSmem<Cfg>& sm, const TileAcc<Cfg>& acc) {
    const int tx = t % Cfg::TX, ty = t / Cfg::TX;
    const long long hw = static_cast<long long>(p.Ho) * p.Wo;
    int q[Cfg::TN];
    for (int r = 0; r < Cfg::TN; r += 4) lds_quad(&sm.pix[Cfg::pixel(tx, r)], q + r);
    for (int s = 0; s < Cfg::TM; ++s) {
        const int o = o0 + ty * Cfg::TM + s;
        if (o >= p.O) continue;
        for (int r = 0; r < Cfg::TN; ++r)
            if (q[r] >= 0) DYNCONV_STG(out + (static_cast<long long>(sm.n) * p.O + o) * hw + q[r], from_float<T>(acc.v[s][r]));
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

} // namespace dynconv
