// DCNv3/DCNv4 gather kernel (DCNv4-style, memory bound): no im2col buffer, no GEMM.
//
// One thread = one work item of dcnv3_math.h: V contiguous channels of one group at one output
// pixel. Consecutive threads take consecutive channel chunks, then groups, then pixels, so a warp
// reads each neighbour's channels of a group as contiguous 16-byte (or 8/4-byte) vectors and writes
// whole NHWC output rows. The FP32 bilinear weights (mask folded in) serve all V channels. The 3x3
// kernel (InternImage, DCNv4) is compiled with a fixed size so the point loop unrolls, and its blocks
// first copy their slots' offsets and masks (two contiguous ranges) to shared memory with coalesced
// loads (dcnv3_block); other sizes read each item's 2P offsets and P masks from global memory.
// Vector loads need Cg % V == 0 and aligned base pointers; otherwise a scalar path with a tail chunk
// runs (same math, see dcnv3_plan).
#include "dcnv3/dcnv3_kernel.h"

#include <cuda_fp16.h>

#include "common/gpu_exec.cuh"

namespace dynconv {
namespace {

// Bit casts between a 32-bit word and two halves (register moves after optimisation).
__device__ __forceinline__ float2 word_to_float2(unsigned int w) {
    __half2 h;
    memcpy(&h, &w, sizeof h);
    return __half22float2(h);
}
__device__ __forceinline__ unsigned int float2_to_word(float a, float b) {
    const __half2 h = __floats2half2_rn(a, b);
    unsigned int w;
    memcpy(&w, &h, sizeof w);
    return w;
}

// ---- vector access of V contiguous values (V * sizeof(T) bytes, aligned to that size) ----------------
template <int V>
__device__ __forceinline__ void load_vec(const float* p, float (&v)[V]) {
    if constexpr (V % 4 == 0) {
#pragma unroll
        for (int q = 0; q < V / 4; ++q) {
            const float4 f = __ldg(reinterpret_cast<const float4*>(p) + q);
            v[4 * q] = f.x; v[4 * q + 1] = f.y; v[4 * q + 2] = f.z; v[4 * q + 3] = f.w;
        }
    } else if constexpr (V == 2) {
        const float2 f = __ldg(reinterpret_cast<const float2*>(p));
        v[0] = f.x; v[1] = f.y;
    } else {
        static_assert(V == 1, "unsupported vector width");
        v[0] = __ldg(p);
    }
}

template <int V>
__device__ __forceinline__ void load_vec(const __half* p, float (&v)[V]) {
    if constexpr (V % 8 == 0) {
#pragma unroll
        for (int q = 0; q < V / 8; ++q) {
            const uint4 u = __ldg(reinterpret_cast<const uint4*>(p) + q);
            const float2 a = word_to_float2(u.x), b = word_to_float2(u.y);
            const float2 c = word_to_float2(u.z), d = word_to_float2(u.w);
            v[8 * q] = a.x; v[8 * q + 1] = a.y; v[8 * q + 2] = b.x; v[8 * q + 3] = b.y;
            v[8 * q + 4] = c.x; v[8 * q + 5] = c.y; v[8 * q + 6] = d.x; v[8 * q + 7] = d.y;
        }
    } else if constexpr (V == 4) {
        const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
        const float2 a = word_to_float2(u.x), b = word_to_float2(u.y);
        v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y;
    } else if constexpr (V == 2) {
        const float2 f = __half22float2(__ldg(reinterpret_cast<const __half2*>(p)));
        v[0] = f.x; v[1] = f.y;
    } else {
        static_assert(V == 1, "unsupported vector width");
        v[0] = __half2float(__ldg(p));
    }
}

template <int V>
__device__ __forceinline__ void store_vec(float* p, const float (&v)[V]) {
    if constexpr (V % 4 == 0) {
#pragma unroll
        for (int q = 0; q < V / 4; ++q)
            reinterpret_cast<float4*>(p)[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
    } else if constexpr (V == 2) {
        *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
    } else {
        p[0] = v[0];
    }
}

template <int V>
__device__ __forceinline__ void store_vec(__half* p, const float (&v)[V]) {
    if constexpr (V % 8 == 0) {
#pragma unroll
        for (int q = 0; q < V / 8; ++q)
            reinterpret_cast<uint4*>(p)[q] = make_uint4(float2_to_word(v[8 * q], v[8 * q + 1]), float2_to_word(v[8 * q + 2], v[8 * q + 3]),
                                                        float2_to_word(v[8 * q + 4], v[8 * q + 5]), float2_to_word(v[8 * q + 6], v[8 * q + 7]));
    } else if constexpr (V == 4) {
        *reinterpret_cast<uint2*>(p) = make_uint2(float2_to_word(v[0], v[1]), float2_to_word(v[2], v[3]));
    } else if constexpr (V == 2) {
        *reinterpret_cast<__half2*>(p) = __floats2half2_rn(v[0], v[1]);
    } else {
        static_assert(V == 1, "unsupported vector width");
        p[0] = __float2half_rn(v[0]);
    }
}

//! Neighbour reader of the vector path: one aligned V-wide load, V FMAs.
template <int V>
struct VecLoad {
    template <typename T>
    DYNCONV_HD void operator()(const T* ptr, float w, float (&acc)[V]) const {
#if defined(__CUDA_ARCH__)
        float v[V];
        load_vec<V>(ptr, v);
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] = fmaf(w, v[k], acc[k]);
#else
        Dcnv3ScalarLoad<V>{V}(ptr, w, acc);  // host pass only; never called on the host
#endif
    }
};

//! Writer of the vector path: one aligned V-wide store.
template <int V>
struct VecStore {
    template <typename T>
    DYNCONV_HD void operator()(T* ptr, const float (&acc)[V]) const {
#if defined(__CUDA_ARCH__)
        store_vec<V>(ptr, acc);
#else
        Dcnv3ScalarStore<V>{}(ptr, acc);  // host pass only
#endif
    }
};

static_assert(kDcnv3BlockItems == kThreads, "the staged 3x3 path runs one item per thread");

// K == 3: one block of dcnv3_block (offsets/masks staged in shared memory) per 256 items. Other kernel
// sizes: grid-stride loop over the work items. Both bodies are shared with the CPU reference.
template <typename T, int V, bool kVec, int K>
__global__ void __launch_bounds__(kThreads)
dcnv3_kernel(const T* __restrict__ x, const T* __restrict__ offset, const T* __restrict__ mask, T* __restrict__ out,
             Dcnv3Params p, int chunks, long long total) {
    const bool narrow = total <= 0xffffffffLL;
    if constexpr (K == 3) {
        __shared__ Dcnv3Smem sm;
        GpuBlockExec<Dcnv3NoAcc> ex;
        dcnv3_block<V, kVec>(x, offset, mask, out, p, chunks, total, blockIdx.x, narrow, sm, ex, VecLoad<V>{}, VecStore<V>{});
    } else {
        for (long long idx = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; idx < total;
             idx += static_cast<long long>(gridDim.x) * blockDim.x)
            dcnv3_item<V, K, kVec>(x, offset, mask, out, p, chunks, idx, narrow, VecLoad<V>{}, VecStore<V>{});
    }
}

//! Common power-of-two alignment (bytes, capped at 16) of the pointers read/written with vectors.
int alignment(const void* a, const void* b) {
    const unsigned long long bits = reinterpret_cast<unsigned long long>(a) | reinterpret_cast<unsigned long long>(b);
    int align = 16;
    while (align > 1 && (bits % static_cast<unsigned long long>(align)) != 0) align /= 2;
    return align;
}

template <typename T, int V, bool kVec>
cudaError_t launch_v(const T* x, const T* offset, const T* mask, T* out, const Dcnv3Params& p, cudaStream_t stream) {
    const int chunks = (p.group_channels + V - 1) / V;
    const long long total = static_cast<long long>(p.N) * p.Ho * p.Wo * p.group * chunks;
    if (p.kh == 3 && p.kw == 3) {
        const long long blocks = (total + kThreads - 1) / kThreads;
        if (blocks > 0x7fffffffLL) return cudaErrorInvalidConfiguration;  // > 2^39 items: beyond any real map
        return launch_kernel(dcnv3_kernel<T, V, kVec, 3>, dim3(static_cast<unsigned int>(blocks)), kThreads, stream, x,
                             offset, mask, out, p, chunks, total);
    }
    return launch_kernel(dcnv3_kernel<T, V, kVec, 0>, grid_for(total), kThreads, stream, x, offset, mask, out, p, chunks,
                         total);
}

template <typename T>
cudaError_t launch(const void* xv, const void* offv, const void* maskv, void* outv, const Dcnv3Params& p,
                   long long resident_threads, cudaStream_t stream) {
    const long long slots = static_cast<long long>(p.N) * p.Ho * p.Wo * p.group;
    if (slots == 0 || p.group_channels == 0) return cudaSuccess;
    const T* x = static_cast<const T*>(xv);
    const T* off = static_cast<const T*>(offv);
    const T* mask = static_cast<const T*>(maskv);
    T* out = static_cast<T*>(outv);
    const Dcnv3Plan plan = dcnv3_plan(p.group_channels, int(sizeof(T)), alignment(xv, outv), slots, resident_threads);
    if (plan.vec) {
        if constexpr (sizeof(T) == 2) {
            if (plan.v == 8) return launch_v<T, 8, true>(x, off, mask, out, p, stream);
        }
        if (plan.v == 4) return launch_v<T, 4, true>(x, off, mask, out, p, stream);
        return launch_v<T, 2, true>(x, off, mask, out, p, stream);
    }
    if (plan.v == 4) return launch_v<T, 4, false>(x, off, mask, out, p, stream);
    return launch_v<T, 1, false>(x, off, mask, out, p, stream);
}

} // namespace

cudaError_t dcnv3_forward(const void* x, const void* offset, const void* mask, void* out, const Dcnv3Params& p,
                          IoType type, long long resident_threads, cudaStream_t stream) {
    return type == IoType::kFloat16 ? launch<__half>(x, offset, mask, out, p, resident_threads, stream)
                                    : launch<float>(x, offset, mask, out, p, resident_threads, stream);
}

} // namespace dynconv
