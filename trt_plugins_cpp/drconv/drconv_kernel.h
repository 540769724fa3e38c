// CUDA launcher of the DRConv region-select convolution (FP32/FP16 I/O, FP32 accumulation).
#pragma once

#include <cstddef>

#include "common/kernel_common.h"
#include "drconv/drconv_math.h"

namespace dynconv {

//! Bytes of workspace drconv_forward needs for these sizes (the per-region pixel lists).
size_t drconv_workspace_size(const DrconvParams& p);

//! `workspace` holds drconv_workspace_size(p) bytes, 4-byte aligned. Four launches on `stream`: three
//! listing passes and the region GEMMs.
cudaError_t drconv_forward(const void* x, const void* guide, const void* filters, void* out, void* workspace,
                           const DrconvParams& p, IoType type, cudaStream_t stream);

} // namespace dynconv
