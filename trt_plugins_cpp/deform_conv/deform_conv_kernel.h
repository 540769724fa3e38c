// CUDA launcher of the fused deformable convolution (FP32/FP16 I/O, FP32 sampling and accumulation).
#pragma once

#include "common/kernel_common.h"
#include "deform_conv/deform_conv_math.h"

namespace dynconv {

//! Spec-ordered tensors, all of `type`, contiguous NCHW; mask/bias may be null when p.with_mask/with_bias
//! are 0. Needs no workspace; returns the launch error (cudaErrorInvalidConfiguration if the grid is too big).
cudaError_t deform_conv_forward(const void* x, const void* weight, const void* offset, const void* mask,
                                const void* bias, void* out, const DeformConvParams& p, IoType type, cudaStream_t stream);

} // namespace dynconv
