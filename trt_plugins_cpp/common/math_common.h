// Shared helpers for the per-output math headers: compiled by nvcc (host+device) and plain g++.
#pragma once

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define DYNCONV_HD __host__ __device__ __forceinline__
#else
#define DYNCONV_HD inline
#endif

// Loops whose index selects a thread's register array must unroll on the GPU (compile-time indices keep the
// array in registers; otherwise it goes to the stack, in local memory).
#if defined(__CUDA_ARCH__)
#define DYNCONV_UNROLL _Pragma("unroll")
#else
#define DYNCONV_UNROLL
#endif

namespace dynconv {

DYNCONV_HD float to_float(float v) { return v; }
#if defined(__CUDACC__)
DYNCONV_HD float to_float(__half v) { return __half2float(v); }
#else
inline float to_float(_Float16 v) { return static_cast<float>(v); }  // FP16 buffers of the access tracer
#endif

//! Output size of a convolution window (floor division of a non-negative numerator).
DYNCONV_HD long long conv_out_size(long long size, int kernel, int stride, int pad_begin, int pad_end, int dilation) {
    return (size + pad_begin + pad_end - static_cast<long long>(dilation) * (kernel - 1) - 1) / stride + 1;
}

// ---- tile choices that fill the SMs ---------------------------------------------------------------------

constexpr int kSmCountH200 = 132;  //!< the device the CPU reference and the tracer emulate by default

//! How long a launch of `blocks` equal blocks of `pixels` pixels lasts on `sm_count` SMs, in block-pixels
//! on the busiest SM (it runs ceil(blocks / sm_count) of them).
DYNCONV_HD long long launch_span(long long blocks, int pixels, int sm_count) {
    return (blocks + sm_count - 1) / sm_count * pixels;
}

//! A tile of fewer pixels replaces a larger one only when its launch is at most 2/3 as long: a smaller
//! tile reads the weights more often per pixel and feeds its MMAs from more fragment loads, which by the
//! performance model ate gains of a quarter (DCN 8x64x56x56: 64x64 tiles 10.9 us where 64x256 takes 9.7;
//! DRConv 32x64x56x56: 64x128 16.4 us, 64x256 15.1) and kept those of a half (DCN 2x128x50x76: 8.2 vs
//! 12.1 us; DRConv 8x128x28x28: 4.3 vs 7.1).
DYNCONV_HD bool smaller_tile_pays(long long smaller_span, long long larger_span) {
    return 3 * smaller_span <= 2 * larger_span;
}

//! Splits a flat NCHW output index into (n, c, i, j). `narrow` (the output has fewer than 2^32
//! elements) selects 32-bit divisions; 64-bit ones are software loops on GPUs, several times slower.
struct NchwIndex {
    int n, c, i, j;
};
DYNCONV_HD NchwIndex split_nchw_index(long long idx, int C, int Ho, int Wo, bool narrow) {
    NchwIndex r;
    if (narrow) {
        const unsigned int q = static_cast<unsigned int>(idx), row = q / unsigned(Wo), plane = row / unsigned(Ho);
        r.j = int(q - row * unsigned(Wo));
        r.i = int(row - plane * unsigned(Ho));
        r.n = int(plane / unsigned(C));
        r.c = int(plane - unsigned(r.n) * unsigned(C));
    } else {
        const long long row = idx / Wo, plane = row / Ho;
        r.j = int(idx - row * Wo);
        r.i = int(row - plane * Ho);
        r.n = int(plane / C);
        r.c = int(plane - static_cast<long long>(r.n) * C);
    }
    return r;
}

} // namespace dynconv

namespace dynconv {

template <typename T>
DYNCONV_HD T from_float(float v);
template <>
DYNCONV_HD float from_float<float>(float v) { return v; }
#if defined(__CUDACC__)
template <>
DYNCONV_HD __half from_float<__half>(float v) { return __float2half_rn(v); }
#else
template <>
inline _Float16 from_float<_Float16>(float v) { return static_cast<_Float16>(v); }
#endif

} // namespace dynconv
