// DRConv: attributes -> params, shape rule/checks, CPU run of the kernels' algorithm (host only).
#pragma once

#include "common/op_host.h"
#include "drconv/drconv_math.h"

namespace dynconv {

DrconvParams drconv_params(const Attrs& a);
//! Checks (input, guide, filters) shapes and fills runtime sizes; returns the output shape.
Shape drconv_shapes(const std::vector<Shape>& in, DrconvParams* p);
//! Lists the pixels of every (sample, region) and runs the region GEMMs exactly as the CUDA passes do.
Shape drconv_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out);
//! The same with the kernels' FP16-I/O choice (tensor-core GEMMs with FP16-rounded operands where they apply).
Shape drconv_run_cpu_fp16(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in,
                          float* out);

} // namespace dynconv
