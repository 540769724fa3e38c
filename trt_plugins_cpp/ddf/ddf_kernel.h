// CUDA launcher of the DDF filter application (FP32/FP16 I/O, FP32 accumulation).
#pragma once

#include "common/kernel_common.h"
#include "ddf/ddf_math.h"

namespace dynconv {

cudaError_t ddf_forward(const void* x, const void* fc, const void* fs, void* out, const DdfParams& p, IoType type,
                        cudaStream_t stream);

} // namespace dynconv
