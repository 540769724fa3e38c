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
class MmcvDeformConvCreatorBase : public nvinfer1::IPluginCreator {
public:
    explicit MmcvDeformConvCreatorBase(MmcvDcnKind kind);
    const char* getPluginName() const noexcept override { return table_.name; }
    const char* getPluginVersion() const noexcept override { return table_.version; }
    const nvinfer1::PluginFieldCollection* getFieldNames() noexcept override { return &fc_; }
    nvinfer1::IPluginV2* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc) noexcept override;
    nvinfer1::IPluginV2* deserializePlugin(const char* name, const void* data, size_t length) noexcept override;
    void setPluginNamespace(const char* ns) noexcept override { ns_ = ns ? ns : ""; }
    const char* getPluginNamespace() const noexcept override { return ns_.c_str(); }

private:
    MmcvDcnKind kind_;
    const OpTable& table_;
    std::vector<nvinfer1::PluginField> fields_;
    nvinfer1::PluginFieldCollection fc_{};
    std::string ns_;
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
