#include "deform_conv/deform_conv_kernel.h"

namespace dynconv {
namespace {

//! Executor of deform_conv_block on the GPU: this thread's part of each phase; sync() is a block barrier.
template <class Cfg>
struct GpuBlockExec {
    DcAcc<Cfg> acc;  // TM x TN FP32 accumulators (registers: indices are compile-time after unrolling)
    template <class F>
    __device__ __forceinline__ void each(F&& f) { f(int(threadIdx.x), acc); }
    __device__ __forceinline__ void sync() { __syncthreads(); }
};

template <class Cfg, typename T>
__global__ void __launch_bounds__(Cfg::kThreads) deform_conv_kernel(DeformConvParams p, DcPtrs<T> io) {
    __shared__ DcSmem<Cfg> sm;
    GpuBlockExec<Cfg> ex;
    deform_conv_block<Cfg, T>(p, io, int(blockIdx.x), int(blockIdx.y), sm, ex);
}

template <class Cfg, typename T>
cudaError_t launch(const DcPtrs<T>& io, const DeformConvParams& p, cudaStream_t stream) {
    const long long gx = dc_grid_x<Cfg>(p), gy = dc_grid_y<Cfg>(p);
    if (gx == 0 || gy == 0) return cudaSuccess;
    if (gx > 0x7fffffffLL || gy > 65535) return cudaErrorInvalidConfiguration;
    deform_conv_kernel<Cfg, T><<<dim3(unsigned(gx), unsigned(gy)), Cfg::kThreads, 0, stream>>>(p, io);
    return checked_launch();
}

template <typename T>
cudaError_t dispatch(const void* x, const void* w, const void* off, const void* mask, const void* bias, void* out,
                     const DeformConvParams& p, cudaStream_t stream) {
    if (int64_t(p.N) * p.Cout * p.Ho * p.Wo == 0) return cudaSuccess;
    const DcPtrs<T> io{static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(off),
                       p.with_mask ? static_cast<const T*>(mask) : nullptr,
                       p.with_bias ? static_cast<const T*>(bias) : nullptr, static_cast<T*>(out)};
    switch (deform_conv_tile_kind(p)) {
    case DcTileKind::kLarge: return launch<DcTileLarge, T>(io, p, stream);
    case DcTileKind::kMedium: return launch<DcTileMedium, T>(io, p, stream);
    case DcTileKind::kSmall: return launch<DcTileSmall, T>(io, p, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace

cudaError_t deform_conv_forward(const void* x, const void* weight, const void* offset, const void* mask,
                                const void* bias, void* out, const DeformConvParams& p, IoType type, cudaStream_t stream) {
    return type == IoType::kFloat16 ? dispatch<__half>(x, weight, offset, mask, bias, out, p, stream)
                                    : dispatch<float>(x, weight, offset, mask, bias, out, p, stream);
}

} // namespace dynconv
