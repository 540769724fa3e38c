// CUDA launcher of the involution aggregation (FP32/FP16 I/O, FP32 accumulation).
#pragma once

#include "common/kernel_common.h"
#include "involution/involution_math.h"

namespace dynconv {

//! x [N,C,H,W], w [N, groups*kh*kw, Ho, Wo], out [N,C,Ho,Wo]; all of `type`, contiguous NCHW.
cudaError_t involution_forward(const void* x, const void* w, void* out, const InvolutionParams& p, IoType type,
                               cudaStream_t stream);

} // namespace dynconv
