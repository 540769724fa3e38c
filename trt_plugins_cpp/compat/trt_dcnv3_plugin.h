// TensorRT plugin "TRTDCNv3" v"1" (InternImage / mmdeploy name and fields) running the DynconvDCNv3 kernel.
// Unlike the original (FP32 only, remove_center ignored) it takes FP32/FP16 and honours remove_center.
// Its serialized form is DynconvDCNv3's attribute blob (engines are tied to the plugin library anyway).
#pragma once

#include "compat/trt_dcnv3_op.h"
#include "dcnv3/dcnv3_plugin.h"

namespace dynconv {

class TrtDcnv3Plugin : public Dcnv3Plugin {
public:
    explicit TrtDcnv3Plugin(const Attrs& dcnv3_attrs) : Dcnv3Plugin(dcnv3_attrs) {}
    const char* getPluginType() const noexcept override { return trt_dcnv3_table().name; }
    const char* getPluginVersion() const noexcept override { return trt_dcnv3_table().version; }

protected:
    PluginBase* make(const Attrs& attrs) const override { return new TrtDcnv3Plugin(attrs); }
};

class TrtDcnv3Creator : public nvinfer1::IPluginCreator {
public:
    TrtDcnv3Creator();
    const char* getPluginName() const noexcept override { return trt_dcnv3_table().name; }
    const char* getPluginVersion() const noexcept override { return trt_dcnv3_table().version; }
    const nvinfer1::PluginFieldCollection* getFieldNames() noexcept override { return &fc_; }
    nvinfer1::IPluginV2* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc) noexcept override;
    nvinfer1::IPluginV2* deserializePlugin(const char* name, const void* data, size_t length) noexcept override;
    void setPluginNamespace(const char* ns) noexcept override { ns_ = ns ? ns : ""; }
    const char* getPluginNamespace() const noexcept override { return ns_.c_str(); }

private:
    std::vector<nvinfer1::PluginField> fields_;
    nvinfer1::PluginFieldCollection fc_{};
    std::string ns_;
};

} // namespace dynconv
