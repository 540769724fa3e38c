#include "ddf/ddf_kernel.h"

namespace dynconv {
namespace {

// Strip items (common/pixel_filter_strip.h): R output rows x up to cpt channels at one column per thread;
// neighbouring threads take neighbouring columns, so every x / filter / output access is coalesced.
// At least 3 blocks per SM (<= 80 registers; unbounded, ptxas takes ~95 for the 2-row strip) where that
// needs no spills; 2 on sm_75 (it spills at 80).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
constexpr int kStripMinBlocks = 2;
#else
constexpr int kStripMinBlocks = 3;
#endif

template <typename T, int K, int R>
__global__ void __launch_bounds__(kThreads, kStripMinBlocks)
ddf_kernel(const T* __restrict__ x, const T* __restrict__ fc, const T* __restrict__ fs, T* __restrict__ out,
           StripGeom g, int add, int cpt, int64_t total) {
    const bool narrow = total <= 0xffffffffLL;
    for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x)
        strip_item<K, R, true>(x, fs, fc, add, out, g, cpt, idx, narrow);
}

// Pair items (FP16, common/pixel_filter_strip.h): one row, two adjacent columns per thread, 4-byte pair accesses.
template <typename T, int K>
__global__ void __launch_bounds__(kThreads, kStripMinBlocks)
ddf_pair_kernel(const T* __restrict__ x, const T* __restrict__ fc, const T* __restrict__ fs, T* __restrict__ out,
                StripGeom g, int add, int cpt, int64_t total) {
    const bool narrow = total <= 0xffffffffLL;
    for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x)
        strip_item_pairs<K, true>(x, fs, fc, add, out, g, cpt, idx, narrow);
}

// Kernel sizes without a strip body: one thread per output element, j fastest.
template <typename T>
__global__ void ddf_any_kernel(const T* __restrict__ x, const T* __restrict__ fc, const T* __restrict__ fs,
                               T* __restrict__ out, DdfParams p, int64_t total) {
    const bool narrow = total <= 0xffffffffLL;
    for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x)
        ddf_item(x, fc, fs, out, p, idx, narrow);
}

template <typename T, int K, int R>
cudaError_t launch_strip(const T* x, const T* fc, const T* fs, T* out, const DdfParams& p, StripPlan plan,
                         cudaStream_t stream) {
    const StripGeom g = ddf_geom(p);
    const int64_t total = strip_item_count(g, plan);
    if constexpr (sizeof(T) == 2)  // pair items: FP16 only (strip_plan)
        if (plan.cols == 2)
            return launch_kernel(ddf_pair_kernel<T, K>, grid_for(total), kThreads, stream, x, fc, fs, out, g, p.add,
                                 plan.cpt, total);
    return launch_kernel(ddf_kernel<T, K, R>, grid_for(total), kThreads, stream, x, fc, fs, out, g, p.add, plan.cpt, total);
}

template <typename T>
cudaError_t launch(const void* xv, const void* fcv, const void* fsv, void* outv, const DdfParams& p,
                   long long resident_threads, cudaStream_t stream) {
    const int64_t total = int64_t(p.N) * p.C * p.Ho * p.Wo;
    if (total == 0) return cudaSuccess;
    const T* x = static_cast<const T*>(xv);
    const T* fc = static_cast<const T*>(fcv);
    const T* fs = static_cast<const T*>(fsv);
    T* out = static_cast<T*>(outv);
    const StripGeom g = ddf_geom(p);
    const StripPlan plan = strip_plan(g, resident_threads, int(sizeof(T)));
    if (!strip_applies(g))
        return launch_kernel(ddf_any_kernel<T>, grid_for(total), kThreads, stream, x, fc, fs, out, p, total);
    return plan.rows == kStripRows ? launch_strip<T, kStripK, kStripRows>(x, fc, fs, out, p, plan, stream)
                                   : launch_strip<T, kStripK, 1>(x, fc, fs, out, p, plan, stream);
}

} // namespace

cudaError_t ddf_forward(const void* x, const void* fc, const void* fs, void* out, const DdfParams& p, IoType type,
                        long long resident_threads, cudaStream_t stream) {
    return type == IoType::kFloat16 ? launch<__half>(x, fc, fs, out, p, resident_threads, stream)
                                    : launch<float>(x, fc, fs, out, p, resident_threads, stream);
}

} // namespace dynconv
