// CUDA launcher of the DRConv region-select convolution (FP32/FP16 I/O, FP32 accumulation).
#pragma once

#include "common/kernel_common.h"
#include "drconv/drconv_math.h"

namespace dynconv {

cudaError_t drconv_forward(const void* x, const void* guide, const void* filters, void* out, const DrconvParams& p,
                           IoType type, cudaStream_t stream);

} // namespace dynconv
