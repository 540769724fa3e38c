// TensorRT plugin DynconvDeformConv2d (IPluginV2DynamicExt) and its creator.
#pragma once

#include "common/plugin_base.h"
#include "deform_conv/deform_conv_op.h"

namespace dynconv {

//! floor((size + pb + pe - d*(k-1) - 1) / s) + 1 with the kernel size k itself a dimension expression
//! (the kernel size comes from the weight tensor's shape).
const nvinfer1::IDimensionExpr* conv_out_expr_k(nvinfer1::IExprBuilder& b, const nvinfer1::IDimensionExpr* size,
                                                const nvinfer1::IDimensionExpr* k, int s, int pb, int pe, int d);

class DeformConvPlugin : public PluginBase {
public:
    explicit DeformConvPlugin(const Attrs& attrs);
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                            nvinfer1::IExprBuilder& b) noexcept override;
    //! The NHWC copy of the input the FP16 tensor-core kernels sample (largest shapes of the profile).
    size_t getWorkspaceSize(const nvinfer1::PluginTensorDesc* inputs, int32_t nbInputs,
                            const nvinfer1::PluginTensorDesc* outputs, int32_t nbOutputs) const noexcept override;
    int32_t enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                    const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

protected:
    PluginBase* make(const Attrs& attrs) const override { return new DeformConvPlugin(attrs); }

private:
    DeformConvParams p_;
};

class DeformConvCreator : public CreatorBase {
public:
    DeformConvCreator() : CreatorBase("deform_conv2d") {}

protected:
    PluginBase* make(const Attrs& attrs) const override { return new DeformConvPlugin(attrs); }
};

} // namespace dynconv
