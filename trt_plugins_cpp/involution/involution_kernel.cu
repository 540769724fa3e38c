#include "involution/involution_kernel.h"

namespace dynconv {
namespace {

// One thread per output element, j fastest: neighbouring threads read neighbouring x and w values.
template <typename T>
__global__ void involution_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out,
                                  InvolutionParams p, int64_t total) {
    const bool narrow = total <= 0xffffffffLL;
    for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x)
        involution_item(x, w, out, p, idx, narrow);
}

template <typename T>
cudaError_t launch(const void* x, const void* w, void* out, const InvolutionParams& p, cudaStream_t stream) {
    const int64_t total = int64_t(p.N) * p.C * p.Ho * p.Wo;
    if (total == 0) return cudaSuccess;
    return launch_kernel(involution_kernel<T>, grid_for(total), kThreads, stream, static_cast<const T*>(x),
                         static_cast<const T*>(w), static_cast<T*>(out), p, total);
}

} // namespace

cudaError_t involution_forward(const void* x, const void* w, void* out, const InvolutionParams& p, IoType type,
                               cudaStream_t stream) {
    return type == IoType::kFloat16 ? launch<__half>(x, w, out, p, stream) : launch<float>(x, w, out, p, stream);
}

} // namespace dynconv
