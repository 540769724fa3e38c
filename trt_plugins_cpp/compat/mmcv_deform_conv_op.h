// Compatibility with mmdeploy's deformable-convolution nodes (foreign formats, so their field tables are
// declared here, not generated from our specs):
//   MMCVModulatedDeformConv2d v1: inputs (input, offset, mask, weight[, bias]); fields stride, padding,
//     dilation (2 ints, H first), groups, deform_groups.
//   MMCVDeformConv2d v1: inputs (input, offset, weight); fields stride, dilation (2 ints), padding (2 ints
//     [ph, pw] or the 4 ints [ph, ph, pw, pw] mmdeploy's symbolic emits), groups, deform_groups,
//     bias (0 only: mmcv's DeformConv2d has no bias input), im2col_step (accepted, ignored).
// Offsets/mask use mmcv's layout, which is torchvision's (channel 2*(g*kh*kw + k) + {0: dy, 1: dx},
// mask channel g*kh*kw + k; same bilinear rule), so both map onto DynconvDeformConv2d's params and kernel.
#pragma once

#include "common/op_host.h"
#include "deform_conv/deform_conv_math.h"

namespace dynconv {

enum class MmcvDcnKind : int { kModulated = 0, kPlain = 1 };

const OpTable& mmcv_deform_conv_table(MmcvDcnKind kind);
//! The compat table whose plugin name is `name` (nullptr if none).
const OpTable* find_mmcv_deform_conv_table(const char* name, MmcvDcnKind* kind);
//! Params of our op from the compat fields (with_bias = 0; set it from the input count). Throws ShapeError
//! for values the table cannot express (4-value padding with begin != end, bias = 1, 3 padding values).
DeformConvParams mmcv_deform_conv_params(const Attrs& a, MmcvDcnKind kind);
//! Spec input index (0 input, 1 weight, 2 offset, 3 mask, 4 bias) of each compat input position; throws
//! ShapeError for an input count the node cannot have.
std::vector<int> mmcv_deform_conv_spec_index(MmcvDcnKind kind, int n_inputs);
//! CPU run with inputs in the compat order (same tiled algorithm as the kernel).
Shape mmcv_deform_conv_run_cpu(MmcvDcnKind kind, const Attrs& a, const std::vector<Shape>& shapes,
                               const std::vector<const float*>& in, float* out);

} // namespace dynconv
