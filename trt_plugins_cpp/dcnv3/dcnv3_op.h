// DCNv3 (serves DCNv4): attributes -> params, shape rule/checks, CPU loop (host only).
#pragma once

#include "common/op_host.h"
#include "dcnv3/dcnv3_math.h"

namespace dynconv {

//! Params from validated DynconvDCNv3 attributes; throws ShapeError for remove_center with an even or 1x1 kernel.
Dcnv3Params dcnv3_params(const Attrs& a);
//! Checks (input, offset, mask) shapes against the attributes and fills the runtime sizes; returns the output shape.
Shape dcnv3_shapes(const std::vector<Shape>& in, Dcnv3Params* p);
//! CPU reference (same work decomposition as the FP16 kernel): returns the output shape; computes into `out` unless null.
Shape dcnv3_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out);
//! The CPU loop on already checked params (used by the TRTDCNv3 compatibility mapping too).
void dcnv3_compute_cpu(const Dcnv3Params& p, const float* x, const float* offset, const float* mask, float* out);

} // namespace dynconv
