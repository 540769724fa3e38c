// DCNv3 / DCNv4 core-op math, shared by the CUDA kernel (host+device) and the CPU reference (g++).
//
//   out[n,oh,ow,g*Cg+c] = sum_p mask[n,oh,ow,g*P+p] * bilinear(x[n,:,:,g*Cg+c], ly, lx)
//   lx = ow*sw - pw + hw + (i*dw - hw + offset[n,oh,ow,2*(g*P+p)  ]) * offset_scale,  hw = dw*(kw-1)/2
//   ly = oh*sh - ph + hh + (j*dh - hh + offset[n,oh,ow,2*(g*P+p)+1]) * offset_scale,  hh = dh*(kh-1)/2
//
// Point order: tap column i (x) is the outer loop, row j (y) the inner one, p = i*kh + j; with
// remove_center the centre tap (kw/2, kh/2) is skipped and later points move down by one.
// Bilinear: a point is skipped unless -1 < ly < H and -1 < lx < W; each of its 4 neighbours outside
// the image reads 0. Coordinates, weights and the accumulation are FP32 for every I/O type.
//
// Work decomposition (kernel and CPU loop alike): one work item = V contiguous channels c0..c0+nc-1
// (nc = V, or fewer in the last chunk of a group: the scalar tail) of one group g at one output pixel.
// The item reads that (pixel, group)'s 2P offsets and P mask values once and reuses the FP32 bilinear
// weights for all its channels; each neighbour read is V contiguous NHWC values (one vector load).
#pragma once

#include <cmath>

#include "common/math_common.h"
#include "common/trace.h"

namespace dynconv {

struct Dcnv3Params {
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int group, group_channels, remove_center;
    float offset_scale;
    int N, H, W, Ho, Wo;
    int P;  //!< points per group: kh*kw - remove_center
};

//! Points per group.
DYNCONV_HD int dcnv3_points(int kh, int kw, int remove_center) { return kh * kw - remove_center; }

//! The (x, y) offset pair at p: one 2-element load where p is aligned to it (always, for an aligned offset
//! tensor: pairs start at even elements), else two scalar loads.
template <typename T>
DYNCONV_HD void dcnv3_offset_pair(const T* p, float& x, float& y) {
#if defined(__CUDA_ARCH__)
    if ((reinterpret_cast<unsigned long long>(p) & (2 * sizeof(T) - 1)) == 0) {
        if constexpr (sizeof(T) == 2) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(p));
            x = f.x; y = f.y;
        } else {
            const float2 f = *reinterpret_cast<const float2*>(p);
            x = f.x; y = f.y;
        }
        return;
    }
    x = to_float(p[0]);
    y = to_float(p[1]);
#else
    DYNCONV_TRACE_ACCESS(kGlobal, false, p, int(2 * sizeof(T)));
    x = to_float(p[0]);
    y = to_float(p[1]);
#endif
}

//! The (pixel, group)'s offsets and masks read from global memory, per point:
//!   off: offset + ((n*Ho+oh)*Wo+ow)*G*2P + g*2P   (the 2P offsets (x, y) of this pixel and group)
//!   msk: mask   + ((n*Ho+oh)*Wo+ow)*G*P  + g*P
template <typename T>
struct Dcnv3GlobalSrc {
    const T* off;
    const T* msk;
    DYNCONV_HD void operator()(int pt, float& dx, float& dy, float& m) const {
        dcnv3_offset_pair(off + 2 * pt, dx, dy);
        m = to_float(DYNCONV_LDG(msk + pt));
    }
};

//! Accumulates, for V channels of one group at one output pixel, sum_p mask_p * bilinear_p into acc.
//!   xg:  input + n*H*W*C + g*Cg + c0   (channel c0 of group g at pixel (0,0) of image n)
//!   src(pt, dx, dy, m): point pt's offsets and mask (Dcnv3GlobalSrc, or the block's staged copy)
//! `load(ptr, w, acc)` adds w * ptr[k] to acc[k] for the item's channels (k < V, or k < nc in a tail).
//! KH/KW > 0 fix the kernel size at compile time (full unrolling); 0 reads it from p.
template <int V, int KH, int KW, typename T, typename Src, typename Load>
DYNCONV_HD void dcnv3_gather(const T* xg, const Src& src, const Dcnv3Params& p, int oh, int ow, const Load& load,
                             float (&acc)[V]) {
    const int kh = KH > 0 ? KH : p.kh;
    const int kw = KW > 0 ? KW : p.kw;
    const long long C = static_cast<long long>(p.group) * p.group_channels;
    const int half_w = (p.dw * (kw - 1)) / 2;
    const int half_h = (p.dh * (kh - 1)) / 2;
    const float base_x = static_cast<float>(ow * p.sw - p.pw + half_w);
    const float base_y = static_cast<float>(oh * p.sh - p.ph + half_h);
    const float fH = static_cast<float>(p.H), fW = static_cast<float>(p.W);
    const int ci = kw / 2, cj = kh / 2;
    int pt = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int i = 0; i < kw; ++i) {
        const float grid_x = static_cast<float>(i * p.dw - half_w);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int j = 0; j < kh; ++j) {
            if (p.remove_center && i == ci && j == cj) continue;
            float dx, dy, m;
            src(pt, dx, dy, m);
            const float lx = base_x + (grid_x + dx) * p.offset_scale;
            const float ly = base_y + (static_cast<float>(j * p.dh - half_h) + dy) * p.offset_scale;
            ++pt;
            trace_count(TraceCounter::kSamples, 1);
            if (!(ly > -1.f && lx > -1.f && ly < fH && lx < fW)) continue;  // also drops NaN locations
            const float fy = floorf(ly), fx = floorf(lx);
            const int y0 = static_cast<int>(fy), x0 = static_cast<int>(fx);
            const float ay = ly - fy, ax = lx - fx;   // weights of the high neighbours
            const float by = 1.f - ay, bx = 1.f - ax; // weights of the low neighbours
            const bool x0_in = x0 >= 0, x1_in = x0 + 1 < p.W;
            if (y0 >= 0) {
                const T* row = xg + static_cast<long long>(y0) * p.W * C;
                if (x0_in) load(row + x0 * C, m * by * bx, acc);
                if (x1_in) load(row + (x0 + 1) * C, m * by * ax, acc);
            }
            if (y0 + 1 < p.H) {
                const T* row = xg + static_cast<long long>(y0 + 1) * p.W * C;
                if (x0_in) load(row + x0 * C, m * ay * bx, acc);
                if (x1_in) load(row + (x0 + 1) * C, m * ay * ax, acc);
            }
        }
    }
}

//! Scalar neighbour reader: nc <= V channels (the tail path and the CPU reference).
template <int V>
struct Dcnv3ScalarLoad {
    int nc;
    template <typename T>
    DYNCONV_HD void operator()(const T* ptr, float w, float (&acc)[V]) const {
        for (int k = 0; k < V; ++k)
            if (k < nc) acc[k] += w * to_float(ptr[k]);
    }
};

//! Scalar writer of V values (the CPU reference's stand-in for the kernel's vector store).
template <int V>
struct Dcnv3ScalarStore {
    template <typename T>
    DYNCONV_HD void operator()(T* ptr, const float (&acc)[V]) const {
        for (int k = 0; k < V; ++k) ptr[k] = from_float<T>(acc[k]);
    }
};

//! A work item's coordinates: channel chunk, group, output pixel; slot = pixel * G + g.
struct Dcnv3Item {
    int chunk, g, oh, ow, n;
    long long slot;
};

//! Flat item index -> coordinates. Items are ordered chunk fastest, then group, then ow, oh, n, so
//! consecutive threads cover one pixel's NHWC channels contiguously. `narrow` = 32-bit arithmetic
//! (valid while the item count fits in 32 bits; 64-bit division is several times slower on GPUs).
DYNCONV_HD Dcnv3Item dcnv3_decompose(long long idx, int chunks, const Dcnv3Params& p, bool narrow) {
    Dcnv3Item it;
    if (narrow) {
        const unsigned int i = static_cast<unsigned int>(idx);
        const unsigned int slot = i / static_cast<unsigned int>(chunks);
        it.chunk = static_cast<int>(i - slot * static_cast<unsigned int>(chunks));
        unsigned int pix = slot / static_cast<unsigned int>(p.group);
        it.g = static_cast<int>(slot - pix * static_cast<unsigned int>(p.group));
        const unsigned int row = pix / static_cast<unsigned int>(p.Wo);
        it.ow = static_cast<int>(pix - row * static_cast<unsigned int>(p.Wo));
        it.n = static_cast<int>(row / static_cast<unsigned int>(p.Ho));
        it.oh = static_cast<int>(row - static_cast<unsigned int>(it.n) * static_cast<unsigned int>(p.Ho));
        it.slot = slot;
    } else {
        const long long slot = idx / chunks;
        it.chunk = static_cast<int>(idx - slot * chunks);
        const long long pix = slot / p.group;
        it.g = static_cast<int>(slot - pix * p.group);
        const long long row = pix / p.Wo;
        it.ow = static_cast<int>(pix - row * p.Wo);
        it.n = static_cast<int>(row / p.Ho);
        it.oh = static_cast<int>(row - static_cast<long long>(it.n) * p.Ho);
        it.slot = slot;
    }
    return it;
}

//! One work item, end to end: the kernel's loop body and the CPU reference's.
//! kVec: full V-wide chunks read/written through `vload`/`vstore` (requires Cg % V == 0 and aligned
//! pointers); otherwise scalar reads and writes with nc = min(V, Cg - c0) (tail chunk).
//! The work item `it` with its offsets and masks from `src`.
template <int V, int K, bool kVec, typename T, typename Src, typename VLoad, typename VStore>
DYNCONV_HD void dcnv3_item_at(const T* x, const Src& src, T* out, const Dcnv3Params& p, const Dcnv3Item& it,
                              const VLoad& vload, const VStore& vstore) {
    const int Cg = p.group_channels;
    const long long C = static_cast<long long>(p.group) * Cg;
    const int c0 = it.chunk * V;
    const T* xg = x + static_cast<long long>(it.n) * p.H * p.W * C + it.g * Cg + c0;
    T* o = out + it.slot * Cg + c0;  // (pix*G + g)*Cg + c0 = pix*C + g*Cg + c0
    float acc[V];
    for (int k = 0; k < V; ++k) acc[k] = 0.f;
    if constexpr (kVec) {
        dcnv3_gather<V, K, K>(xg, src, p, it.oh, it.ow, vload, acc);
        vstore(o, acc);
    } else {
        const int nc = Cg - c0 < V ? Cg - c0 : V;
        dcnv3_gather<V, K, K>(xg, src, p, it.oh, it.ow, Dcnv3ScalarLoad<V>{nc}, acc);
        for (int k = 0; k < V; ++k)
            if (k < nc) DYNCONV_STG(o + k, from_float<T>(acc[k]));
    }
}

//! One work item, end to end, offsets and masks read from global memory (kernel sizes other than 3x3).
template <int V, int K, bool kVec, typename T, typename VLoad, typename VStore>
DYNCONV_HD void dcnv3_item(const T* x, const T* offset, const T* mask, T* out, const Dcnv3Params& p, int chunks,
                           long long idx, bool narrow, const VLoad& vload, const VStore& vstore) {
    const Dcnv3Item it = dcnv3_decompose(idx, chunks, p, narrow);
    const Dcnv3GlobalSrc<T> src{offset + it.slot * 2 * p.P, mask + it.slot * p.P};
    dcnv3_item_at<V, K, kVec>(x, src, out, p, it, vload, vstore);
}

// ---- 3x3 blocks: offsets and masks staged in shared memory ------------------------------------------------
// A block runs kDcnv3BlockItems consecutive items; their (pixel, group) slots are consecutive, so the slots'
// offsets and masks are two contiguous ranges of global memory. The block copies them to shared memory
// with consecutive threads reading consecutive elements (coalesced), then each item reads its 3P values
// from there. (Read per item from global memory, the 2P offsets of a slot are P separate 36- or 72-byte
// strided warp requests, several times the sectors the bytes need.)

constexpr int kDcnv3BlockItems = 256;  //!< threads (= items) per block of the staged path
constexpr int kDcnv3StagedPoints = 9;  //!< P of a 3x3 window (8 with remove_center)

struct alignas(8) Dcnv3Pair {
    float x, y;
};

//! Per slot: the P offset pairs and P masks, rows padded to an odd length (P | 1) so the slots a warp
//! reads fall in distinct banks.
struct Dcnv3Smem {
    Dcnv3Pair off[kDcnv3BlockItems * kDcnv3StagedPoints];
    float msk[kDcnv3BlockItems * kDcnv3StagedPoints];
};

struct Dcnv3NoAcc {};

//! Point pt of one slot's staged row.
struct Dcnv3SmemSrc {
    const Dcnv3Pair* off;
    const float* msk;
    DYNCONV_HD void operator()(int pt, float& dx, float& dy, float& m) const {
        const Dcnv3Pair q = DYNCONV_LDS(off + pt);
        dx = q.x;
        dy = q.y;
        m = DYNCONV_LDS(msk + pt);
    }
};

//! Block bx of the staged 3x3 path (items bx*256 ... of `total`): copy phase, barrier, item phase.
//! `narrow`: 32-bit item decomposition (total < 2^32).
template <int V, bool kVec, typename T, class Exec, typename VLoad, typename VStore>
DYNCONV_HD void dcnv3_block(const T* x, const T* offset, const T* mask, T* out, const Dcnv3Params& p, int chunks,
                            long long total, long long bx, bool narrow, Dcnv3Smem& sm, Exec& ex, const VLoad& vload,
                            const VStore& vstore) {
    const long long first = bx * kDcnv3BlockItems;
    const long long last = (first + kDcnv3BlockItems < total ? first + kDcnv3BlockItems : total) - 1;
    const long long slot0 = first / chunks;
    const int slots = static_cast<int>(last / chunks - slot0 + 1);
    const int P = p.P, row = P | 1;
    ex.each([&](int t, Dcnv3NoAcc&) {
        const T* ob = offset + slot0 * 2 * P;
        for (int e = t; e < slots * 2 * P; e += kDcnv3BlockItems) {
            const int s = e / (2 * P), k = e - s * 2 * P;
            Dcnv3Pair& dst = sm.off[s * row + (k >> 1)];
            DYNCONV_STS((k & 1) ? &dst.y : &dst.x, to_float(DYNCONV_LDG(ob + e)));
        }
        const T* mb = mask + slot0 * P;
        for (int e = t; e < slots * P; e += kDcnv3BlockItems) {
            const int s = e / P;
            DYNCONV_STS(&sm.msk[s * row + e - s * P], to_float(DYNCONV_LDG(mb + e)));
        }
    });
    ex.sync();
    ex.each([&](int t, Dcnv3NoAcc&) {
        const long long idx = first + t;
        if (idx > last) return;
        const Dcnv3Item it = dcnv3_decompose(idx, chunks, p, narrow);
        const int s = static_cast<int>(it.slot - slot0);
        dcnv3_item_at<V, 3, kVec>(x, Dcnv3SmemSrc{sm.off + s * row, sm.msk + s * row}, out, p, it, vload, vstore);
    });
}

//! Channels per work item and whether the item uses aligned vector loads (then nc == V always).
struct Dcnv3Plan {
    int v;
    bool vec;
};

//! Chooses the work decomposition. Vector path: V in {16/elem_bytes, ..., 2} must divide Cg and the
//! input/output pointers must be aligned to V*elem_bytes (`ptr_align`: their common power-of-two
//! alignment in bytes); the largest such V giving >= resident_threads / kDcnv3WideItemShare work items
//! is taken (fewer, wider items re-read offsets/mask less), else the smallest one (more parallelism on
//! small maps). Otherwise (odd Cg or misaligned pointers) the scalar path with V = 4 and a tail chunk,
//! or V = 1 when 4-channel items would not reach that count. `slots` = N*Ho*Wo*G; `resident_threads`
//! <= 0: the widest V.
//! The wide items need not fill every resident thread slot: each has 4 x P independent corner loads in
//! flight. The DCNv4 authors' measured forward tuning (their table of d_stride per B x H x W x G x C)
//! takes 8 channels per thread on almost every shape down to about 25K threads (e.g. 64x14x14 and
//! 64x7x7 maps with 4-8 groups of 16), 4 or 2 only on the smallest maps; the full-residency rule this
//! replaces took 2-channel items on all of those.
constexpr long long kDcnv3WideItemShare = 8;

inline Dcnv3Plan dcnv3_plan(int group_channels, int elem_bytes, int ptr_align, long long slots, long long resident_threads) {
    const long long target_items = resident_threads > 0 ? resident_threads / kDcnv3WideItemShare : 0;
    const int max_v = 16 / elem_bytes;
    int smallest = 0;
    for (int v = max_v; v >= 2; v /= 2) {
        if (group_channels % v != 0 || ptr_align < v * elem_bytes) continue;
        if (slots * (group_channels / v) >= target_items) return {v, true};
        smallest = v;
    }
    if (smallest) return {smallest, true};
    const long long items4 = slots * ((group_channels + 3) / 4);
    if (group_channels > 1 && items4 >= target_items) return {4, false};
    return {1, false};
}

} // namespace dynconv
