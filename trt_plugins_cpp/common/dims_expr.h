// IExprBuilder helpers for output-shape rules.
#pragma once

#include <NvInferRuntime.h>

namespace dynconv {

//! floor((size + pb + pe - d*(k-1) - 1) / s) + 1, as a TensorRT dimension expression.
inline const nvinfer1::IDimensionExpr* conv_out_expr(nvinfer1::IExprBuilder& b, const nvinfer1::IDimensionExpr* size,
                                                     int k, int s, int pb, int pe, int d) {
    using nvinfer1::DimensionOperation;
    const nvinfer1::IDimensionExpr* num =
        b.operation(DimensionOperation::kSUM, *size, *b.constant(pb + pe - d * (k - 1) - 1));
    const nvinfer1::IDimensionExpr* q = b.operation(DimensionOperation::kFLOOR_DIV, *num, *b.constant(s));
    return b.operation(DimensionOperation::kSUM, *q, *b.constant(1));
}

} // namespace dynconv
