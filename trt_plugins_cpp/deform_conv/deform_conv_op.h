// Deformable convolution: attributes -> params, shape rule/checks, CPU reference (host only).
#pragma once

#include "common/op_host.h"
#include "deform_conv/deform_conv_slab.h"

namespace dynconv {

//! Params from the spec's fields (stride, padding, dilation, groups, offset_groups, with_mask, with_bias).
DeformConvParams deform_conv_params(const Attrs& a);
//! Checks the spec-ordered shapes (input, weight, offset, mask, bias; empty = absent) against the
//! params (with_mask/with_bias must agree with presence) and fills the runtime sizes; returns the output shape.
Shape deform_conv_shapes(const std::vector<Shape>& in, DeformConvParams* p);
//! CPU run of the kernel's tiled algorithm (same block phases, same tile choice) on FP32 spec-ordered inputs;
//! fp16_io selects what the GPU runs for FP16 I/O (the tensor-core path where it applies).
Shape deform_conv_run_params(DeformConvParams p, const std::vector<Shape>& shapes, const std::vector<const float*>& in,
                             float* out, bool fp16_io = false);
//! CPU reference entry of the op registry: returns the output shape; computes into `out` unless it is null.
Shape deform_conv_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out);
//! The same for FP16 I/O: inputs hold FP16 values; samples are rounded to FP16 where the GPU does so.
Shape deform_conv_run_cpu_fp16(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in,
                               float* out);

} // namespace dynconv
