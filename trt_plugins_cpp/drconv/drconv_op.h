// DRConv: attributes -> params, shape rule/checks, CPU loop (host only).
#pragma once

#include "common/op_host.h"
#include "drconv/drconv_math.h"

namespace dynconv {

DrconvParams drconv_params(const Attrs& a);
//! Checks (input, guide, filters) shapes and fills runtime sizes; returns the output shape.
Shape drconv_shapes(const std::vector<Shape>& in, DrconvParams* p);
Shape drconv_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out);

} // namespace dynconv
