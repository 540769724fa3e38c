#include "deform_conv/deform_conv_kernel.h"

#include <type_traits>

#include "common/gpu_exec.cuh"
#include "deform_conv/deform_conv_slab.h"

namespace dynconv {
namespace {

template <class Cfg, typename T>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks) deform_conv_kernel(DeformConvParams p, DcPtrs<T> io,
                                                                                    const T* wt, const T* xt) {
    __shared__ DcSmem<Cfg> sm;
    GpuBlockExec<DcAcc<Cfg>> ex;
    deform_conv_block<Cfg, T>(p, io, wt, xt, int(blockIdx.x), int(blockIdx.y), sm, ex);
}

//! Executor of the slab block bodies: thread phases, and warp phases on the warp's WM x WN fragments.
template <class WarpAcc>
struct GpuWarpTileExec {
    WarpAcc acc;
    template <class F>
    __device__ __forceinline__ void each(F&& f) { f(int(threadIdx.x)); }
    template <class F>
    __device__ __forceinline__ void each_warp(F&& f) { f(int(threadIdx.x) >> 5, acc); }
    __device__ __forceinline__ void sync() { __syncthreads(); }
};

template <class Cfg, bool kNhwc>
__global__ void __launch_bounds__(Cfg::kThreads, 1) deform_conv_slab_kernel(DeformConvParams p, DcPtrs<__half> io,
                                                                         const __half* xt) {
    extern __shared__ __align__(128) unsigned char dc_slab_smem[];  // DcSlabSmem<Cfg>, above the 48 KB static limit
    GpuWarpTileExec<MmaWarpAccGpu<Cfg::WM, Cfg::WN>> ex;
    deform_conv_slab_block<Cfg, kNhwc, __half>(p, io, xt, int(blockIdx.x), int(blockIdx.y),
                                               *reinterpret_cast<DcSlabSmem<Cfg>*>(dc_slab_smem), ex);
}

//! The NHWC copy of the input (slab kernels), or with dc_weight_transpose_params the weight transpose (FMA tiles).
template <typename T>
__global__ void __launch_bounds__(DcNhwcTile::kThreads) deform_conv_nhwc_kernel(DeformConvParams p, const T* x, T* xt) {
    __shared__ DcNhwcSmem<T> sm;
    GpuBlockExec<DcNoAcc> ex;
    deform_conv_nhwc_block<T>(p, x, xt, int(blockIdx.x), int(blockIdx.y), sm, ex);
}

//! Largest dynamic shared memory per block the current device allows (opt-in); 48 KB if the query fails.
int device_smem_optin() {
    int dev = 0, bytes = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 48 * 1024;
    }
    return bytes;
}

//! The kernel a problem runs on the current device.
DcKernel device_kernel_choice(const DeformConvParams& p, bool fp16) {
    return deform_conv_kernel_choice(p, fp16, fp16 ? device_smem_optin() : 0, device_sm_count());
}

//! Launches the NHWC copy (deform_conv_nhwc_block on params q) of src into dst; *done says whether it ran:
//! not without dst or where its grid exceeds the launch limits (the caller then reads src itself).
template <typename T>
cudaError_t launch_nhwc_copy(const DeformConvParams& q, const T* src, T* dst, cudaStream_t stream, bool* done) {
    const long long nx = dc_nhwc_grid_x(q), ny = dc_nhwc_grid_y(q);
    *done = dst != nullptr && nx > 0 && nx <= 0x7fffffffLL && ny > 0 && ny <= 65535;
    if (!*done) return cudaSuccess;
    return launch_kernel(deform_conv_nhwc_kernel<T>, dim3(unsigned(nx), unsigned(ny)), DcNhwcTile::kThreads, stream, q, src,
                         dst);
}

//! Launches the slab kernel of tile Cfg with its dynamic shared memory (opted in per launch: the attribute
//! is per device, and the call is cheap next to the kernel). With a workspace (deform_conv_workspace_size)
//! it first copies the input to NHWC there and samples the copy; without, it samples the NCHW input.
template <class Cfg>
cudaError_t launch_slab(DcPtrs<__half> io, DeformConvParams p, cudaStream_t stream, void* workspace) {
    const long long gx = dc_grid_x<Cfg>(p), gy = dc_grid_y<Cfg>(p);
    if (gx == 0 || gy == 0) return cudaSuccess;
    if (gx > 0x7fffffffLL || gy > 65535) return cudaErrorInvalidConfiguration;
    __half* xt = static_cast<__half*>(workspace);
    bool nhwc = false;
    DYNCONV_CUDA_TRY(launch_nhwc_copy(p, io.x, xt, stream, &nhwc));
    const void* kernel = nhwc ? reinterpret_cast<const void*>(deform_conv_slab_kernel<Cfg, true>)
                              : reinterpret_cast<const void*>(deform_conv_slab_kernel<Cfg, false>);
    const int bytes = int(sizeof(DcSlabSmem<Cfg>));
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err == cudaSuccess) {
        const __half* xt_arg = xt;
        void* args[] = {&p, &io, &xt_arg, nullptr};
        err = cudaLaunchKernel(kernel, dim3(unsigned(gx), unsigned(gy)), dim3(Cfg::kThreads), args, size_t(bytes), stream);
    }
    if (err != cudaSuccess) (void)cudaGetLastError();  // returned: do not leave it behind
    return err;
}

//! Launches the FP32-FMA tile Cfg over the grid of the problem; with a workspace (deform_conv_workspace_size)
//! it first transposes the weights there, so the tiles read them coalesced, and copies the input to NHWC
//! after them (dc_fma_nhwc_offset), so the tiles gather each corner's channels as vectors.
template <class Cfg, typename T>
cudaError_t launch_fma(const DcPtrs<T>& io, const DeformConvParams& p, cudaStream_t stream, void* workspace) {
    const long long gx = dc_grid_x<Cfg>(p), gy = dc_grid_y<Cfg>(p);
    if (gx == 0 || gy == 0) return cudaSuccess;
    if (gx > 0x7fffffffLL || gy > 65535) return cudaErrorInvalidConfiguration;
    T* wt = static_cast<T*>(workspace);
    T* xt = workspace ? reinterpret_cast<T*>(static_cast<unsigned char*>(workspace) + dc_fma_nhwc_offset(p, sizeof(T)))
                      : nullptr;
    bool transposed = false, copied = false;
    DYNCONV_CUDA_TRY(launch_nhwc_copy(dc_weight_transpose_params(p), io.weight, wt, stream, &transposed));
    DYNCONV_CUDA_TRY(launch_nhwc_copy(p, io.x, xt, stream, &copied));
    return launch_kernel(deform_conv_kernel<Cfg, T>, dim3(unsigned(gx), unsigned(gy)), Cfg::kThreads, stream, p, io,
                         transposed ? wt : nullptr, copied ? xt : nullptr);
}

template <typename T>
cudaError_t launch_choice(DcKernel kernel, const DcPtrs<T>& io, const DeformConvParams& p, cudaStream_t stream,
                          void* workspace);

template <>
cudaError_t launch_choice<float>(DcKernel kernel, const DcPtrs<float>& io, const DeformConvParams& p, cudaStream_t stream,
                                 void* workspace) {
    switch (kernel) {
    case DcKernel::kFma256W: return launch_fma<DcTile256W, float>(io, p, stream, workspace);
    case DcKernel::kFma128W: return launch_fma<DcTile128W, float>(io, p, stream, workspace);
    case DcKernel::kFmaLargeW: return launch_fma<DcTileLargeW, float>(io, p, stream, workspace);
    case DcKernel::kFma256: return launch_fma<DcTile256, float>(io, p, stream, workspace);
    case DcKernel::kFma128: return launch_fma<DcTile128, float>(io, p, stream, workspace);
    case DcKernel::kFmaLarge: return launch_fma<DcTileLarge, float>(io, p, stream, workspace);
    case DcKernel::kFmaMedium: return launch_fma<DcTileMedium, float>(io, p, stream, workspace);
    case DcKernel::kFmaSmall: return launch_fma<DcTileSmall, float>(io, p, stream, workspace);
    default: return cudaErrorInvalidValue;  // the tensor-core path is FP16-only
    }
}

template <>
cudaError_t launch_choice<__half>(DcKernel kernel, const DcPtrs<__half>& io, const DeformConvParams& p, cudaStream_t stream,
                                  void* workspace) {
    switch (kernel) {
    case DcKernel::kFma256W: return launch_fma<DcTile256W, __half>(io, p, stream, workspace);
    case DcKernel::kFma128W: return launch_fma<DcTile128W, __half>(io, p, stream, workspace);
    case DcKernel::kFmaLargeW: return launch_fma<DcTileLargeW, __half>(io, p, stream, workspace);
    case DcKernel::kFma256: return launch_fma<DcTile256, __half>(io, p, stream, workspace);
    case DcKernel::kFma128: return launch_fma<DcTile128, __half>(io, p, stream, workspace);
    case DcKernel::kFmaLarge: return launch_fma<DcTileLarge, __half>(io, p, stream, workspace);
    case DcKernel::kFmaMedium: return launch_fma<DcTileMedium, __half>(io, p, stream, workspace);
    case DcKernel::kFmaSmall: return launch_fma<DcTileSmall, __half>(io, p, stream, workspace);
    case DcKernel::kSlabWide: return launch_slab<DcSlabWide>(io, p, stream, workspace);
    case DcKernel::kSlabMid: return launch_slab<DcSlabMid>(io, p, stream, workspace);
    case DcKernel::kSlabTall: return launch_slab<DcSlabTall>(io, p, stream, workspace);
    case DcKernel::kSlabMid64: return launch_slab<DcSlabMid64>(io, p, stream, workspace);
    case DcKernel::kSlabCompact: return launch_slab<DcSlabCompact>(io, p, stream, workspace);
    case DcKernel::kSlabTall256: return launch_slab<DcSlabTall256>(io, p, stream, workspace);
    }
    return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t dispatch(const void* x, const void* w, const void* off, const void* mask, const void* bias, void* out,
                     const DeformConvParams& p, cudaStream_t stream, void* workspace) {
    if (int64_t(p.N) * p.Cout * p.Ho * p.Wo == 0) return cudaSuccess;
    const DcPtrs<T> io{static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(off),
                       p.with_mask ? static_cast<const T*>(mask) : nullptr,
                       p.with_bias ? static_cast<const T*>(bias) : nullptr, static_cast<T*>(out)};
    const bool fp16 = std::is_same<T, __half>::value;
    return launch_choice<T>(device_kernel_choice(p, fp16), io, p, stream, workspace);
}

} // namespace

size_t deform_conv_workspace_size(const DeformConvParams& p, IoType type) {
    const bool fp16 = type == IoType::kFloat16;
    const size_t elem = fp16 ? sizeof(__half) : sizeof(float);
    const size_t nhwc = size_t(p.N) * size_t(p.Cin) * size_t(p.H) * size_t(p.W) * elem;  // NHWC input
    if (dc_is_slab(device_kernel_choice(p, fp16))) return nhwc;
    return dc_fma_nhwc_offset(p, elem) + nhwc;  // transposed weights, then the NHWC input
}

cudaError_t deform_conv_forward(const void* x, const void* weight, const void* offset, const void* mask,
                                const void* bias, void* out, const DeformConvParams& p, IoType type, cudaStream_t stream,
                                void* workspace) {
    return type == IoType::kFloat16 ? dispatch<__half>(x, weight, offset, mask, bias, out, p, stream, workspace)
                                    : dispatch<float>(x, weight, offset, mask, bias, out, p, stream, workspace);
}

} // namespace dynconv
