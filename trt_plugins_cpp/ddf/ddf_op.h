// DDF: attributes -> params, shape rule/checks, CPU loop (host only).
#pragma once

#include "common/op_host.h"
#include "ddf/ddf_math.h"

namespace dynconv {

DdfParams ddf_params(const Attrs& a);
//! Checks (input, channel_filter, spatial_filter) shapes and fills runtime sizes; returns the output shape.
Shape ddf_shapes(const std::vector<Shape>& in, DdfParams* p);
Shape ddf_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out);

} // namespace dynconv
