#include "deform_conv/deform_conv_kernel.h"

#include <type_traits>

#include "common/gpu_exec.cuh"
#include "deform_conv/deform_conv_mma.h"

namespace dynconv {
namespace {

template <class Cfg, typename T>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks) deform_conv_kernel(DeformConvParams p, DcPtrs<T> io) {
    __shared__ DcSmem<Cfg> sm;
    GpuBlockExec<DcAcc<Cfg>> ex;
    deform_conv_block<Cfg, T>(p, io, int(blockIdx.x), int(blockIdx.y), sm, ex);
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads) deform_conv_mma_kernel(DeformConvParams p, DcPtrs<__half> io) {
    __shared__ DcMmaSmem<Cfg> sm;
    GpuMmaExec ex;
    deform_conv_mma_block<Cfg, __half>(p, io, int(blockIdx.x), int(blockIdx.y), sm, ex);
}

//! Launches `kernel` (a block body of tile Cfg) over the grid of the problem.
template <class Cfg, typename T>
cudaError_t launch(void (*kernel)(DeformConvParams, DcPtrs<T>), const DcPtrs<T>& io, const DeformConvParams& p,
                   cudaStream_t stream) {
    const long long gx = dc_grid_x<Cfg>(p), gy = dc_grid_y<Cfg>(p);
    if (gx == 0 || gy == 0) return cudaSuccess;
    if (gx > 0x7fffffffLL || gy > 65535) return cudaErrorInvalidConfiguration;
    return launch_kernel(kernel, dim3(unsigned(gx), unsigned(gy)), Cfg::kThreads, stream, p, io);
}

template <typename T>
cudaError_t launch_choice(DcKernel kernel, const DcPtrs<T>& io, const DeformConvParams& p, cudaStream_t stream);

template <>
cudaError_t launch_choice<float>(DcKernel kernel, const DcPtrs<float>& io, const DeformConvParams& p, cudaStream_t stream) {
    switch (kernel) {
    case DcKernel::kFma256: return launch<DcTile256>(deform_conv_kernel<DcTile256, float>, io, p, stream);
    case DcKernel::kFma128: return launch<DcTile128>(deform_conv_kernel<DcTile128, float>, io, p, stream);
    case DcKernel::kFmaLarge: return launch<DcTileLarge>(deform_conv_kernel<DcTileLarge, float>, io, p, stream);
    case DcKernel::kFmaMedium: return launch<DcTileMedium>(deform_conv_kernel<DcTileMedium, float>, io, p, stream);
    case DcKernel::kFmaSmall: return launch<DcTileSmall>(deform_conv_kernel<DcTileSmall, float>, io, p, stream);
    default: return cudaErrorInvalidValue;  // the MMA path is FP16-only
    }
}

template <>
cudaError_t launch_choice<__half>(DcKernel kernel, const DcPtrs<__half>& io, const DeformConvParams& p, cudaStream_t stream) {
    switch (kernel) {
    case DcKernel::kFma256: return launch<DcTile256>(deform_conv_kernel<DcTile256, __half>, io, p, stream);
    case DcKernel::kFma128: return launch<DcTile128>(deform_conv_kernel<DcTile128, __half>, io, p, stream);
    case DcKernel::kFmaLarge: return launch<DcTileLarge>(deform_conv_kernel<DcTileLarge, __half>, io, p, stream);
    case DcKernel::kFmaMedium: return launch<DcTileMedium>(deform_conv_kernel<DcTileMedium, __half>, io, p, stream);
    case DcKernel::kFmaSmall: return launch<DcTileSmall>(deform_conv_kernel<DcTileSmall, __half>, io, p, stream);
    case DcKernel::kMmaWide: return launch<DcMmaTileWide>(deform_conv_mma_kernel<DcMmaTileWide>, io, p, stream);
    case DcKernel::kMmaTall: return launch<DcMmaTileTall>(deform_conv_mma_kernel<DcMmaTileTall>, io, p, stream);
    }
    return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t dispatch(const void* x, const void* w, const void* off, const void* mask, const void* bias, void* out,
                     const DeformConvParams& p, cudaStream_t stream) {
    if (int64_t(p.N) * p.Cout * p.Ho * p.Wo == 0) return cudaSuccess;
    const DcPtrs<T> io{static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(off),
                       p.with_mask ? static_cast<const T*>(mask) : nullptr,
                       p.with_bias ? static_cast<const T*>(bias) : nullptr, static_cast<T*>(out)};
    return launch_choice<T>(deform_conv_kernel_choice(p, std::is_same<T, __half>::value), io, p, stream);
}

} // namespace

cudaError_t deform_conv_forward(const void* x, const void* weight, const void* offset, const void* mask,
                                const void* bias, void* out, const DeformConvParams& p, IoType type, cudaStream_t stream) {
    return type == IoType::kFloat16 ? dispatch<__half>(x, weight, offset, mask, bias, out, p, stream)
                                    : dispatch<float>(x, weight, offset, mask, bias, out, p, stream);
}

} // namespace dynconv
