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

//! Fields parsed against the TRTDCNv3 table and mapped to DynconvDCNv3's attributes; the serialized form
//! is DynconvDCNv3's.
class TrtDcnv3Creator : public CreatorBase {
public:
    TrtDcnv3Creator() : CreatorBase(trt_dcnv3_table()) {}

protected:
    PluginBase* make(const Attrs& dcnv3_attrs) const override { return new TrtDcnv3Plugin(dcnv3_attrs); }
    bool to_attrs(const FieldValue* fields, int n_fields, Attrs* out, std::string* error) const override {
        return trt_dcnv3_to_attrs(fields, n_fields, out, error);
    }
    PluginBase* from_blob(const void* data, size_t length, std::string* error) const override;
};

} // namespace dynconv
