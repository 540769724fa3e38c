// Deformable convolution: attributes -> params, shape rule/checks, CPU reference (host only).
#pragma once

#include "common/op_host.h"
#include "deform_conv/deform_conv_math.h"

namespace dynconv {

//! Params from the spec's fields (stride, padding, dilation, groups, offset_groups, with_mask, with_bias).
DeformConvParams deform_conv_params(const Attrs& a);
//! Checks the spec-ordered shapes (input, weight, offset, mask, bias; empty = absent) against the
//! params (with_mask/with_bias must agree with presence) and fills the runtime sizes; returns the output shape.
Shape deform_conv_shapes(const std::vector<Shape>& in, DeformConvParams* p);
//! CPU run of the kernel's tiled algorithm (same block phases, same tile choice) on FP32 spec-ordered inputs.
Shape deform_conv_run_params(DeformConvParams p, const std::vector<Shape>& shapes, const std::vector<const float*>& in,
                             float* out);
//! CPU reference entry of the op registry: returns the output shape; computes into `out` unless it is null.
Shape deform_conv_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out);

} // namespace dynconv
