// CUDA launcher of the DDF filter application (FP32/FP16 I/O, FP32 accumulation).
#pragma once

#include "common/kernel_common.h"
#include "ddf/ddf_math.h"

namespace dynconv {

//! x [N,C,H,W], fc [N,C,k,k], fs [N,k*k,Ho,Wo], out [N,C,Ho,Wo]; all of `type`, contiguous NCHW.
//! `resident_threads` (kernel_common.h, queried once by the caller) sizes the channels each thread takes.
cudaError_t ddf_forward(const void* x, const void* fc, const void* fs, void* out, const DdfParams& p, IoType type,
                        long long resident_threads, cudaStream_t stream);

} // namespace dynconv
