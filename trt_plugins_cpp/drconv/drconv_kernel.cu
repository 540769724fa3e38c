#include "drconv/drconv_kernel.h"

#include <type_traits>

#include "common/gpu_exec.cuh"
#include "drconv/drconv_tiled.h"

namespace dynconv {
namespace {

template <typename T>
__global__ void __launch_bounds__(kDrChunk) drconv_count_kernel(DrconvParams p, const T* __restrict__ guide, DrLists l) {
    __shared__ DrChunkSmem sm;
    const int t = int(threadIdx.x), chunk = int(blockIdx.x), n = int(blockIdx.y);
    dr_chunk_regions(p, guide, l, chunk, n, t, sm);
    __syncthreads();
    dr_chunk_count(p, l, chunk, n, t, sm);
}

__global__ void __launch_bounds__(kDrChunk) drconv_scan_kernel(DrconvParams p, DrLists l, int bn) {
    __shared__ DrScanSmem sm;
    GpuBlockExec<DrNoAcc> ex;
    dr_scan_block(p, l, bn, sm, ex);
}

__global__ void __launch_bounds__(kDrChunk) drconv_scatter_kernel(DrconvParams p, DrLists l) {
    __shared__ DrChunkSmem sm;
    const int t = int(threadIdx.x), chunk = int(blockIdx.x), n = int(blockIdx.y);
    dr_chunk_recall(p, l, chunk, n, t, sm);
    __syncthreads();
    dr_chunk_scatter(p, l, chunk, n, t, sm);
}

template <class Cfg, typename T>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks) drconv_gemm_kernel(DrconvParams p, const T* __restrict__ x,
                                                                    const T* __restrict__ filters, T* __restrict__ out,
                                                                    DrLists l) {
    __shared__ DrGemmSmem<Cfg> sm;
    GpuBlockExec<TileAcc<Cfg>> ex;
    drconv_gemm_block<Cfg, T>(p, x, filters, out, l, int(blockIdx.x), int(blockIdx.y), sm, ex);
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads) drconv_mma_kernel(DrconvParams p, const __half* __restrict__ x,
                                                                   const __half* __restrict__ filters,
                                                                   __half* __restrict__ out, DrLists l) {
    __shared__ DrMmaSmem<Cfg> sm;
    DrMmaExecGpu<Cfg> ex;
    drconv_mma_block<Cfg, __half>(p, x, filters, out, l, int(blockIdx.x), int(blockIdx.y), sm, ex);
}

template <typename T>
cudaError_t list_pixels(const T* guide, const DrLists& l, const DrconvParams& p, int bn, cudaStream_t stream) {
    const long long chunks = drconv_chunks(p);
    if (chunks > 0x7fffffffLL || p.N > 65535) return cudaErrorInvalidConfiguration;
    const dim3 grid(unsigned(chunks), unsigned(p.N));
    DYNCONV_CUDA_TRY(launch_kernel(drconv_count_kernel<T>, grid, kDrChunk, stream, p, guide, l));
    DYNCONV_CUDA_TRY(launch_kernel(drconv_scan_kernel, 1, kDrChunk, stream, p, l, bn));
    return launch_kernel(drconv_scatter_kernel, grid, kDrChunk, stream, p, l);
}

//! Launches `kernel` (a GEMM block body of tile Cfg) over all possible list tiles x output-channel tiles.
template <class Cfg, typename T>
cudaError_t launch(void (*kernel)(DrconvParams, const T*, const T*, T*, DrLists), const T* x, const T* filters, T* out,
                   const DrLists& l, const DrconvParams& p, cudaStream_t stream) {
    const long long gx = drconv_max_tiles(p, Cfg::BN), gy = (p.O + Cfg::BM - 1) / Cfg::BM;
    if (gx > 0x7fffffffLL || gy > 65535) return cudaErrorInvalidConfiguration;
    return launch_kernel(kernel, dim3(unsigned(gx), unsigned(gy)), Cfg::kThreads, stream, p, x, filters, out, l);
}

template <typename T>
cudaError_t launch_gemm(DrKernel kernel, const T* x, const T* filters, T* out, const DrLists& l, const DrconvParams& p,
                        cudaStream_t stream);

template <>
cudaError_t launch_gemm<float>(DrKernel kernel, const float* x, const float* filters, float* out, const DrLists& l,
                               const DrconvParams& p, cudaStream_t stream) {
    switch (kernel) {
    case DrKernel::kFmaLarge: return launch<DrTileLarge>(drconv_gemm_kernel<DrTileLarge, float>, x, filters, out, l, p, stream);
    case DrKernel::kFmaLargeW:
        return launch<DrTileLargeW>(drconv_gemm_kernel<DrTileLargeW, float>, x, filters, out, l, p, stream);
    case DrKernel::kFmaSmall: return launch<DrTileSmall>(drconv_gemm_kernel<DrTileSmall, float>, x, filters, out, l, p, stream);
    default: return cudaErrorInvalidValue;  // the tensor-core path is FP16-only
    }
}

template <>
cudaError_t launch_gemm<__half>(DrKernel kernel, const __half* x, const __half* filters, __half* out, const DrLists& l,
                                const DrconvParams& p, cudaStream_t stream) {
    switch (kernel) {
    case DrKernel::kFmaLarge: return launch<DrTileLarge>(drconv_gemm_kernel<DrTileLarge, __half>, x, filters, out, l, p, stream);
    case DrKernel::kFmaLargeW:
        return launch<DrTileLargeW>(drconv_gemm_kernel<DrTileLargeW, __half>, x, filters, out, l, p, stream);
    case DrKernel::kFmaSmall: return launch<DrTileSmall>(drconv_gemm_kernel<DrTileSmall, __half>, x, filters, out, l, p, stream);
    case DrKernel::kMmaWide: return launch<DrMmaTileWide>(drconv_mma_kernel<DrMmaTileWide>, x, filters, out, l, p, stream);
    case DrKernel::kMmaTall: return launch<DrMmaTileTall>(drconv_mma_kernel<DrMmaTileTall>, x, filters, out, l, p, stream);
    case DrKernel::kMmaNarrow:
        return launch<DrMmaTileNarrow>(drconv_mma_kernel<DrMmaTileNarrow>, x, filters, out, l, p, stream);
    case DrKernel::kMmaShort: return launch<DrMmaTileShort>(drconv_mma_kernel<DrMmaTileShort>, x, filters, out, l, p, stream);
    }
    return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t dispatch(const void* x, const void* guide, const void* filters, void* out, void* workspace,
                     const DrconvParams& p, cudaStream_t stream) {
    const DrLists l = drconv_lists(p, static_cast<int*>(workspace));
    const DrKernel kernel = drconv_kernel_choice(p, std::is_same<T, __half>::value, device_sm_count());
    DYNCONV_CUDA_TRY(list_pixels(static_cast<const T*>(guide), l, p, drconv_tile_pixels(kernel), stream));
    return launch_gemm<T>(kernel, static_cast<const T*>(x), static_cast<const T*>(filters), static_cast<T*>(out), l, p,
                          stream);
}

} // namespace

size_t drconv_workspace_size(const DrconvParams& p) {
    return static_cast<size_t>(drconv_workspace_ints(p)) * sizeof(int);
}

cudaError_t drconv_forward(const void* x, const void* guide, const void* filters, void* out, void* workspace,
                           const DrconvParams& p, IoType type, cudaStream_t stream) {
    if (int64_t(p.N) * p.O * p.Ho * p.Wo == 0) return cudaSuccess;
    if (workspace == nullptr) return cudaErrorInvalidValue;
    return type == IoType::kFloat16 ? dispatch<__half>(x, guide, filters, out, workspace, p, stream)
                                    : dispatch<float>(x, guide, filters, out, workspace, p, stream);
}

} // namespace dynconv
