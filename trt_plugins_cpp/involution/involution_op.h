// Involution: attributes -> params, shape rule/checks, CPU loop (host only).
#pragma once

#include "common/op_host.h"
#include "involution/involution_math.h"

namespace dynconv {

InvolutionParams involution_params(const Attrs& a);
//! Checks input shapes (x, weight) and fills the runtime sizes; returns the output shape.
Shape involution_shapes(const std::vector<Shape>& in, InvolutionParams* p);
//! CPU reference: returns the output shape; computes into `out` unless it is null.
Shape involution_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out);

} // namespace dynconv
