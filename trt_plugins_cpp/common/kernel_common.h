// Shared by the CUDA launchers: I/O type enum, CUDA error checks, grid sizing. No TensorRT includes.
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

namespace dynconv {

enum class IoType : int { kFloat32 = 0, kFloat16 = 1 };

//! Return the error of a CUDA call from the enclosing function (which returns cudaError_t).
#define DYNCONV_CUDA_TRY(call)                           \
    do {                                                 \
        cudaError_t dynconv_err_ = (call);               \
        if (dynconv_err_ != cudaSuccess) return dynconv_err_; \
    } while (0)

//! Error of the last launch (call right after <<<...>>>).
inline cudaError_t checked_launch() { return cudaGetLastError(); }

constexpr int kThreads = 256;

//! Blocks for a grid-stride loop over `total` items (capped; the kernels loop).
inline unsigned int grid_for(int64_t total, int threads = kThreads) {
    int64_t blocks = (total + threads - 1) / threads;
    const int64_t cap = int64_t(1) << 20;
    return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

} // namespace dynconv
