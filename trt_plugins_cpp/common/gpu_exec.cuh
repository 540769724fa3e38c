// GPU executor of the tiled block bodies (see common/tile_gemm.h): this thread's part of each phase;
// sync() is a block barrier.
#pragma once

#include "common/mma_tile.h"

namespace dynconv {

template <class Acc>
struct GpuBlockExec {
    Acc acc;  // registers once the phases are inlined and unrolled
    template <class F>
    __device__ __forceinline__ void each(F&& f) { f(int(threadIdx.x), acc); }
    __device__ __forceinline__ void sync() { __syncthreads(); }
};

//! Executor of the tensor-core block bodies: thread phases as above, warp phases on the warp's fragments.
struct GpuMmaExec {
    MmaAccGpu acc;
    template <class F>
    __device__ __forceinline__ void each(F&& f) { f(int(threadIdx.x)); }
    template <class F>
    __device__ __forceinline__ void each_warp(F&& f) { f(int(threadIdx.x) >> 5, acc); }
    __device__ __forceinline__ void sync() { __syncthreads(); }
};

} // namespace dynconv
