// TensorRT plugin DynconvDDF (IPluginV2DynamicExt) and its creator.
#pragma once

#include "common/plugin_base.h"
#include "ddf/ddf_op.h"

namespace dynconv {

class DdfPlugin : public PluginBase {
public:
    explicit DdfPlugin(const Attrs& attrs);
    //! Queries the device once (resident threads, which size the channels per thread) instead of per enqueue.
    int32_t initialize() noexcept override;
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                            nvinfer1::IExprBuilder& b) noexcept override;
    int32_t enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                    const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

protected:
    PluginBase* make(const Attrs& attrs) const override { return new DdfPlugin(attrs); }

private:
    DdfParams p_;
    long long resident_threads_ = 0;  //!< 0 until queried (initialize, or the first enqueue)
};

class DdfCreator : public CreatorBase {
public:
    DdfCreator() : CreatorBase("ddf") {}

protected:
    PluginBase* make(const Attrs& attrs) const override { return new DdfPlugin(attrs); }
};

} // namespace dynconv
