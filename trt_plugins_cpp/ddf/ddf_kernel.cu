#include "ddf/ddf_kernel.h"

namespace dynconv {
namespace {

// One thread per output element, j fastest: neighbouring threads read neighbouring x and w values.
template <typename T>
__global__ void ddf_kernel(const T* __restrict__ x, const T* __restrict__ fc, const T* __restrict__ fs, T* __restrict__ out,
                                  DdfParams p, int64_t total) {
    const bool narrow = total <= 0xffffffffLL;
    for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x)
        ddf_item(x, fc, fs, out, p, idx, narrow);
}

template <typename T>
cudaError_t launch(const void* x, const void* fc, const void* fs, void* out, const DdfParams& p, cudaStream_t stream) {
    const int64_t total = int64_t(p.N) * p.C * p.Ho * p.Wo;
    if (total == 0) return cudaSuccess;
    return launch_kernel(ddf_kernel<T>, grid_for(total), kThreads, stream, static_cast<const T*>(x),
                         static_cast<const T*>(fc), static_cast<const T*>(fs), static_cast<T*>(out), p, total);
}

} // namespace

cudaError_t ddf_forward(const void* x, const void* fc, const void* fs, void* out, const DdfParams& p, IoType type,
                               cudaStream_t stream) {
    return type == IoType::kFloat16 ? launch<__half>(x, fc, fs, out, p, stream) : launch<float>(x, fc, fs, out, p, stream);
}

} // namespace dynconv
