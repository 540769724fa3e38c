// CUDA launcher of the DCNv3/DCNv4 core op (FP32/FP16 I/O, FP32 coordinates and accumulation).
#pragma once

#include "common/kernel_common.h"
#include "dcnv3/dcnv3_math.h"

namespace dynconv {

//! x [N,H,W,G*Cg], offset [N,Ho,Wo,G*P*2], mask [N,Ho,Wo,G*P], out [N,Ho,Wo,G*Cg]; all of `type`,
//! contiguous NHWC. No workspace, no atomics (each output is written by exactly one thread). `resident_threads`
//! (queried once by the caller) sizes the vector width (dcnv3_plan).
cudaError_t dcnv3_forward(const void* x, const void* offset, const void* mask, void* out, const Dcnv3Params& p,
                          IoType type, long long resident_threads, cudaStream_t stream);

} // namespace dynconv
