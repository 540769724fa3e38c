// Register-tiled FP32 GEMM step shared by the implicit-GEMM kernels (deformable conv, DRConv), and the
// executor convention their block bodies are written against.
//
// A block body is a sequence of phases separated by barriers. It calls ex.each(f) where f(t, acc) is
// thread t's part of a phase (acc: that thread's accumulators) and ex.sync() between phases. On the GPU
// every thread runs its own part and sync() is __syncthreads(); the CPU reference runs each phase for all
// thread ids in turn, so the tiling and indexing the kernels use is exactly what the CPU tests check.
#pragma once

#include <math.h>

#include "common/math_common.h"
#include "common/trace.h"

namespace dynconv {

//! Block tile: BM output channels x BN pixels, BK reduction steps per chunk; TM x TN outputs per thread.
template <int BM_, int BN_, int TM_, int TN_>
struct GemmTile {
    static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_, BK = 16;
    static constexpr int TY = BM / TM, TX = BN / TN, kThreads = TX * TY;
    // __launch_bounds__ minimum blocks per SM: 64 accumulators per thread need more than the 128 registers
    // ptxas allots for 2 blocks (it would spill), so those tiles run one block per SM
    static constexpr int kMinBlocks = TM * TN >= 64 ? 1 : 2;
    static_assert(kThreads == 256, "the tiled kernels use 256 threads");
    static_assert(TN % 4 == 0 && TM >= 1, "pixel micro-tile read as float4");
    //! Tile column of pixel r of thread column tx: runs of 4 consecutive pixels, a thread's runs TX * 4
    //! apart, so the lanes of a warp read consecutive 16-byte words of a row (conflict-free for any TN).
    static constexpr int pixel(int tx, int r) { return (r / 4) * (TX * 4) + tx * 4 + r % 4; }
};

//! Reads the four 4-byte values at src (16-byte aligned shared memory) into v with one 16-byte load.
template <typename V>
DYNCONV_HD void lds_quad(const V* src, V* v) {
    static_assert(sizeof(V) == 4, "4-byte values");
#if defined(__CUDA_ARCH__)
    const int4 raw = *reinterpret_cast<const int4*>(src);  // an aligned local: v itself may be 4-byte aligned
    const V* rv = reinterpret_cast<const V*>(&raw);
#pragma unroll
    for (int k = 0; k < 4; ++k) v[k] = rv[k];
#else
    trace_access(__FILE__, __LINE__, TraceSpace::kShared, false, src, 16);
    for (int k = 0; k < 4; ++k) v[k] = src[k];
#endif
}

template <class Cfg>
struct TileAcc {
    float v[Cfg::TM][Cfg::TN];
};

template <class Cfg>
DYNCONV_HD void tile_zero(TileAcc<Cfg>& acc) {
    for (int s = 0; s < Cfg::TM; ++s)
        for (int r = 0; r < Cfg::TN; ++r) acc.v[s][r] = 0.f;
}

//! Bytes of the widest aligned vector load of the TM weights of a thread: rows of LDW floats (LDW >= BM:
//! padded rows break the 16-byte alignment of the row starts).
template <class Cfg, int LDW>
constexpr int tile_weight_vector_bytes() {
    return (LDW % 4 == 0 && Cfg::TM % 4 == 0) ? 16 : (LDW % 2 == 0 && Cfg::TM % 2 == 0) ? 8 : 4;
}

//! acc[s][r] += w[kk][ty*TM + s] * x[kk][pixel(tx, r)] for kk < kc (x: BK x BN samples, w: BK x BM weights in
//! rows of LDW >= BM floats).
template <class Cfg, int LDW>
DYNCONV_HD void tile_accumulate(int kc, int t, const float (&x)[Cfg::BK][Cfg::BN], const float (&w)[Cfg::BK][LDW],
                                TileAcc<Cfg>& acc) {
    const int tx = t % Cfg::TX, ty = t / Cfg::TX;
    for (int kk = 0; kk < kc; ++kk) {
        float a[Cfg::TM], b[Cfg::TN];
#if defined(__CUDA_ARCH__)
#pragma unroll
        for (int r = 0; r < Cfg::TN; r += 4) {
            const float4 v4 = *reinterpret_cast<const float4*>(&x[kk][Cfg::pixel(tx, r)]);
            b[r] = v4.x; b[r + 1] = v4.y; b[r + 2] = v4.z; b[r + 3] = v4.w;
        }
#pragma unroll
        for (int s = 0; s < Cfg::TM; ++s) a[s] = w[kk][ty * Cfg::TM + s];
#pragma unroll
        for (int s = 0; s < Cfg::TM; ++s)
#pragma unroll
            for (int r = 0; r < Cfg::TN; ++r) acc.v[s][r] = fmaf(a[s], b[r], acc.v[s][r]);
#else
        // The GPU reads the pixel micro-tile as float4 and the TM weights as one TM*4-byte vector.
        for (int r = 0; r < Cfg::TN; r += 4) DYNCONV_TRACE_ACCESS(kShared, false, &x[kk][Cfg::pixel(tx, r)], 16);
        constexpr int vec = tile_weight_vector_bytes<Cfg, LDW>();
        for (int s = 0; s < Cfg::TM; s += vec / 4) DYNCONV_TRACE_ACCESS(kShared, false, &w[kk][ty * Cfg::TM + s], vec);
        for (int r = 0; r < Cfg::TN; ++r) b[r] = x[kk][Cfg::pixel(tx, r)];
        for (int s = 0; s < Cfg::TM; ++s) a[s] = w[kk][ty * Cfg::TM + s];
        for (int s = 0; s < Cfg::TM; ++s)
            for (int r = 0; r < Cfg::TN; ++r) acc.v[s][r] = fmaf(a[s], b[r], acc.v[s][r]);
#endif
    }
    trace_count(TraceCounter::kFma, static_cast<long long>(kc) * Cfg::TM * Cfg::TN);
}

} // namespace dynconv
