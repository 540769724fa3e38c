// TensorRT plugin DynconvDCNv3 (IPluginV2DynamicExt, serves DCNv3 and DCNv4) and its creator.
#pragma once

#include "common/plugin_base.h"
#include "dcnv3/dcnv3_op.h"

namespace dynconv {

class Dcnv3Plugin : public PluginBase {
public:
    explicit Dcnv3Plugin(const Attrs& attrs);
    //! Queries the device once (resident threads, which size the kernel's vector width) instead of per enqueue.
    int32_t initialize() noexcept override;
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                            nvinfer1::IExprBuilder& b) noexcept override;
    int32_t enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                    const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

protected:
    PluginBase* make(const Attrs& attrs) const override { return new Dcnv3Plugin(attrs); }

private:
    Dcnv3Params p_;
    long long resident_threads_ = 0;  //!< 0 until queried (initialize, or the first enqueue)
};

class Dcnv3Creator : public CreatorBase {
public:
    Dcnv3Creator() : CreatorBase("dcnv3") {}

protected:
    PluginBase* make(const Attrs& attrs) const override { return new Dcnv3Plugin(attrs); }
};

} // namespace dynconv
