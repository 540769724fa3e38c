#include "involution/involution_kernel.h"

namespace dynconv {
namespace {

// Strip items (common/pixel_filter_strip.h): R output rows x up to cpt channels of one group at one column
// per thread; neighbouring threads take neighbouring columns, so every x / kernel / output access is coalesced.
// At least 3 blocks per SM (<= 80 registers): no spills on sm_75/87/90 (unbounded, sm_90 spills 4 bytes).
template <typename T, int K, int R>
__global__ void __launch_bounds__(kThreads, 3)
involution_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out, StripGeom g, int cpt,
                  int64_t total) {
    const bool narrow = total <= 0xffffffffLL;
    for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x)
        strip_item<K, R, false>(x, w, static_cast<const T*>(nullptr), 0, out, g, cpt, idx, narrow);
}

// Pair items (FP16, common/pixel_filter_strip.h): one row, two adjacent columns per thread, 4-byte pair accesses.
template <typename T, int K>
__global__ void __launch_bounds__(kThreads, 3)
involution_pair_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out, StripGeom g, int cpt,
                       int64_t total) {
    const bool narrow = total <= 0xffffffffLL;
    for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x)
        strip_item_pairs<K, false>(x, w, static_cast<const T*>(nullptr), 0, out, g, cpt, idx, narrow);
}

// Window shapes without a strip body: one thread per output element, j fastest.
template <typename T>
__global__ void involution_any_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ out,
                                      InvolutionParams p, int64_t total) {
    const bool narrow = total <= 0xffffffffLL;
    for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x)
        involution_item(x, w, out, p, idx, narrow);
}

template <typename T, int K, int R>
cudaError_t launch_strip(const T* x, const T* w, T* out, const StripGeom& g, StripPlan plan, cudaStream_t stream) {
    const int64_t total = strip_item_count(g, plan);
    if constexpr (sizeof(T) == 2)  // pair items: FP16 only (strip_plan)
        if (plan.cols == 2)
            return launch_kernel(involution_pair_kernel<T, K>, grid_for(total), kThreads, stream, x, w, out, g, plan.cpt,
                                 total);
    return launch_kernel(involution_kernel<T, K, R>, grid_for(total), kThreads, stream, x, w, out, g, plan.cpt, total);
}

template <typename T>
cudaError_t launch(const void* xv, const void* wv, void* outv, const InvolutionParams& p, long long resident_threads,
                   cudaStream_t stream) {
    const int64_t total = int64_t(p.N) * p.C * p.Ho * p.Wo;
    if (total == 0) return cudaSuccess;
    const T* x = static_cast<const T*>(xv);
    const T* w = static_cast<const T*>(wv);
    T* out = static_cast<T*>(outv);
    const StripGeom g = involution_geom(p);
    const StripPlan plan = strip_plan(g, resident_threads, int(sizeof(T)));
    if (!strip_applies(g))
        return launch_kernel(involution_any_kernel<T>, grid_for(total), kThreads, stream, x, w, out, p, total);
    return plan.rows == kStripRows ? launch_strip<T, kStripK, kStripRows>(x, w, out, g, plan, stream)
                                   : launch_strip<T, kStripK, 1>(x, w, out, g, plan, stream);
}

} // namespace

cudaError_t involution_forward(const void* x, const void* w, void* out, const InvolutionParams& p, IoType type,
                               long long resident_threads, cudaStream_t stream) {
    return type == IoType::kFloat16 ? launch<__half>(x, w, out, p, resident_threads, stream)
                                    : launch<float>(x, w, out, p, resident_threads, stream);
}

} // namespace dynconv
