// TensorRT compatibility plugins MMCVModulatedDeformConv2d v1 and MMCVDeformConv2d v1 (mmdeploy's node
// names and fields) running DynconvDeformConv2d's kernel with the input order adapted.
#pragma once

#include "common/plugin_base.h"
#include "compat/mmcv_deform_conv_op.h"

namespace dynconv {

class MmcvDeformConvPlugin : public PluginBase {
public:
    //! n_inputs: the node's input count once known (-1 before; it decides whether a bias is present).
    MmcvDeformConvPlugin(MmcvDcnKind kind, const Attrs& attrs, int n_inputs = -1);

    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, const nvinfer1::DimsExprs* inputs, int32_t nbInputs,
                                            nvinfer1::IExprBuilder& b) noexcept override;
    bool supportsFormatCombination(int32_t pos, const nvinfer1::PluginTensorDesc* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    void configurePlugin(const nvinfer1::DynamicPluginTensorDesc* in, int32_t nbInputs,
                         const nvinfer1::DynamicPluginTensorDesc* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc* outputDesc,
                    const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    //! The field values, then the input count (int32), which TensorRT does not pass to enqueue.
    size_t getSerializationSize() const noexcept override;
    void serialize(void* buffer) const noexcept override;

protected:
    PluginBase* make(const Attrs& attrs) const override { return new MmcvDeformConvPlugin(kind_, attrs, n_inputs_); }

private:
    void note_inputs(int32_t n) { n_inputs_ = n; }

    MmcvDcnKind kind_;
    DeformConvParams p_;
    int32_t n_inputs_;
};

//! Creator of one compat plugin; fields validated strictly against the compat table.
class MmcvDeformConvCreatorBase : public CreatorBase {
public:
    explicit MmcvDeformConvCreatorBase(MmcvDcnKind kind) : CreatorBase(mmcv_deform_conv_table(kind)), kind_(kind) {}

protected:
    PluginBase* make(const Attrs& attrs) const override { return new MmcvDeformConvPlugin(kind_, attrs); }
    //! The field values, then the node's input count (see MmcvDeformConvPlugin::serialize).
    PluginBase* from_blob(const void* data, size_t length, std::string* error) const override;

private:
    MmcvDcnKind kind_;
};

class MmcvModulatedDeformConvCreator : public MmcvDeformConvCreatorBase {
public:
    MmcvModulatedDeformConvCreator() : MmcvDeformConvCreatorBase(MmcvDcnKind::kModulated) {}
};

class MmcvDeformConvCreator : public MmcvDeformConvCreatorBase {
public:
    MmcvDeformConvCreator() : MmcvDeformConvCreatorBase(MmcvDcnKind::kPlain) {}
};

} // namespace dynconv
