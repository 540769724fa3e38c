// Compatibility with InternImage's TensorRT plugin "TRTDCNv3" (version "1", built inside mmdeploy; ONNX
// op mmdeploy::TRTDCNv3 emitted by DCNv3Function.symbolic): its creator fields mapped onto DynconvDCNv3.
//
// Fields (all int32 except offset_scale, float32): kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
// dilation_h, dilation_w (defaults 3, 3, 1, 1, 1, 1, 1, 1 as in the original creator), group and
// group_channels (required here: the original's defaults 28/16 only fit one InternImage-B stage),
// offset_scale (default 1.0), im2col_step (accepted and ignored: the gather kernel has no batch
// chunking), remove_center (optional, default 0, 0/1; the original plugin ignores it, we honour it).
// Inputs input [N,H,W,G*Cg], offset [N,Ho,Wo,G*P*2], mask [N,Ho,Wo,G*P]: the same as DynconvDCNv3.
#pragma once

#include <string>

#include "common/fields.h"

namespace dynconv {

//! The TRTDCNv3 field table (for strict parsing with parse_fields and the creator's field list).
const OpTable& trt_dcnv3_table();

//! Validate raw TRTDCNv3 fields and map them to DynconvDCNv3 attributes (validated by its spec table).
//! Returns false with a message naming the field on any error.
bool trt_dcnv3_to_attrs(const FieldValue* fields, int n_fields, Attrs* out, std::string* error);

} // namespace dynconv
