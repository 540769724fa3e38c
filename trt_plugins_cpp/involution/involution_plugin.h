// TensorRT plugin DynconvInvolution (IPluginV2DynamicExt) and its creator.
#pragma once

#include "common/plugin_base.h"
#include "involution/involution_op.h"

namespace dynconv {

class InvolutionPlugin : public PluginBase {
public:
    explicit InvolutionPlugin(const Attrs& attrs);
    //! Queries the device once (resident threads, which size the channels per thread) instead of per enqueue.
    int32_t initialize() noexcept override;
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                            nvinfer1::IExprBuilder& b) noexcept override;
    int32_t enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                    const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

protected:
    PluginBase* make(const Attrs& attrs) const override { return new InvolutionPlugin(attrs); }

private:
    InvolutionParams p_;
    long long resident_threads_ = 0;  //!< 0 until queried (initialize, or the first enqueue)
};

class InvolutionCreator : public CreatorBase {
public:
    InvolutionCreator() : CreatorBase("involution") {}

protected:
    PluginBase* make(const Attrs& attrs) const override { return new InvolutionPlugin(attrs); }
};

} // namespace dynconv
