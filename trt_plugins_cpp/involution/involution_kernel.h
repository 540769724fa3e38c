// CUDA launcher of the involution aggregation (FP32/FP16 I/O, FP32 accumulation).
#pragma once

#include "common/kernel_common.h"
#include "involution/involution_math.h"

namespace dynconv {

//! x [N,C,H,W], w [N, groups*kh*kw, Ho, Wo], out [N,C,Ho,Wo]; all of `type`, contiguous NCHW.
//! `resident_threads` (kernel_common.h, queried once by the caller) sizes the channels each thread takes.
cudaError_t involution_forward(const void* x, const void* w, void* out, const InvolutionParams& p, IoType type,
                               long long resident_threads, cudaStream_t stream);

} // namespace dynconv
