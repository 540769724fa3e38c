// CUDA launcher of the fused deformable convolution (FP32/FP16 I/O, FP32 sampling and accumulation).
#pragma once

#include "common/kernel_common.h"
#include "deform_conv/deform_conv_math.h"

namespace dynconv {

//! Bytes of the workspace deform_conv_forward uses on the current device: an NHWC copy of the input for
//! the FP16 tensor-core (slab) kernels, the weights transposed per group for the FP32-FMA tiles.
size_t deform_conv_workspace_size(const DeformConvParams& p, IoType type);

//! Spec-ordered tensors, all of `type`, contiguous NCHW; mask/bias may be null when p.with_mask/with_bias
//! are 0. `workspace`: deform_conv_workspace_size(p, type) bytes, or null (the kernels then read the NCHW
//! input / the weights as given: correct, with more memory traffic). Returns the launch error
//! (cudaErrorInvalidConfiguration if the grid is too big).
cudaError_t deform_conv_forward(const void* x, const void* weight, const void* offset, const void* mask,
                                const void* bias, void* out, const DeformConvParams& p, IoType type, cudaStream_t stream,
                                void* workspace = nullptr);

} // namespace dynconv
