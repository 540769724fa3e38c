// DRConv's per-(sample, region) pixel lists in the workspace, shared by the listing passes and the GEMM
// passes (drconv_tiled.h, drconv_mma.h): layout, sizes, and the lookup of a GEMM tile's list slice.
#pragma once

#include "drconv/drconv_math.h"

namespace dynconv {

constexpr int kDrChunk = 256;  // pixels per block of the listing passes (= threads)

//! Workspace of the pixel lists (ints): the region map [N][Ho*Wo], chunk counts/bases [N*m][chunks], region
//! start and count [N*m], tile prefix [N*m + 1] and the lists themselves [N][Ho*Wo].
struct DrLists {
    int* region;  // per n: region of each pixel (pass 1 finds it, pass 3 reads it back)
    int* chunk;   // [chunk][n*m + t]: pixel count, then (after the scan) the chunk's first slot in the list
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

//! Slot of (chunk, pair n*m + t) in DrLists::chunk (chunk-major: the pairs of one chunk are contiguous, so
//! the scan's threads, one per pair, read and write consecutive ints).
DYNCONV_HD long long drconv_chunk_slot(const DrconvParams& p, long long chunk, long long pair) {
    return chunk * static_cast<long long>(p.N) * p.m + pair;
}

//! Upper bound of the GEMM tiles: sum over (n, t) of ceil(count / BN) <= N * ceil(Ho*Wo / BN) + N*m.
DYNCONV_HD long long drconv_max_tiles(const DrconvParams& p, int bn) {
    const long long hw = static_cast<long long>(p.Ho) * p.Wo;
    return static_cast<long long>(p.N) * ((hw + bn - 1) / bn + p.m);
}

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

} // namespace dynconv
