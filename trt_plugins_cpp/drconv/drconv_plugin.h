// TensorRT plugin DynconvDRConv (IPluginV2DynamicExt) and its creator.
#pragma once

#include "common/plugin_base.h"
#include "drconv/drconv_op.h"

namespace dynconv {

class DrconvPlugin : public PluginBase {
public:
    explicit DrconvPlugin(const Attrs& attrs);
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                            nvinfer1::IExprBuilder& b) noexcept override;
    //! The per-region pixel lists of the largest shapes of the profile.
    size_t getWorkspaceSize(const nvinfer1::PluginTensorDesc* inputs, int32_t nbInputs,
                            const nvinfer1::PluginTensorDesc* outputs, int32_t nbOutputs) const noexcept override;
    int32_t enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                    const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

protected:
    PluginBase* make(const Attrs& attrs) const override { return new DrconvPlugin(attrs); }

private:
    DrconvParams p_;
};

class DrconvCreator : public CreatorBase {
public:
    DrconvCreator() : CreatorBase("drconv") {}

protected:
    PluginBase* make(const Attrs& attrs) const override { return new DrconvPlugin(attrs); }
};

} // namespace dynconv
