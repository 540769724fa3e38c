// Shared by the CUDA launchers: I/O type enum, kernel launch with its own error, device query, grid sizing.
// No TensorRT includes.
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

template <class T>
struct NoDeduceT { using type = T; };
template <class T>
using NoDeduce = typename NoDeduceT<T>::type;

//! Launch `kernel` and return the error of this launch only. (<<<>>> + cudaGetLastError would also report,
//! and clear, an error left behind by earlier unrelated work of this thread.) A context already broken by a
//! sticky error fails every launch, so that error is returned too. The arguments convert to the kernel's
//! parameter types before their addresses are taken.
template <class... P>
cudaError_t launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t stream, NoDeduce<P>... args) {
    void* arg_ptrs[] = {static_cast<void*>(&args)..., nullptr};
    const cudaError_t err = cudaLaunchKernel(reinterpret_cast<const void*>(kernel), grid, block, arg_ptrs, 0, stream);
    if (err != cudaSuccess) (void)cudaGetLastError();  // our own failure, already returned: do not leave it behind
    return err;
}

//! SMs of the current device (the tile choices fill them); 0 if the query fails (the largest tile).
inline int device_sm_count() {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return sms;
}

//! Threads the current device keeps resident at full occupancy (SMs x max threads per SM). Query it once
//! (plugin initialize) and pass it to launchers that size their work by it.
inline cudaError_t resident_threads(long long* threads) {
    int dev = 0, sms = 0, per_sm = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxThreadsPerMultiProcessor, dev);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();  // the error is returned; do not leave it for a later check
        return err;
    }
    *threads = static_cast<long long>(sms) * per_sm;
    return cudaSuccess;
}

constexpr int kThreads = 256;

//! Blocks for a grid-stride loop over `total` items (capped; the kernels loop).
inline unsigned int grid_for(int64_t total, int threads = kThreads) {
    int64_t blocks = (total + threads - 1) / threads;
    const int64_t cap = int64_t(1) << 20;
    return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

} // namespace dynconv
