#include "compat/trt_dcnv3_plugin.h"

#include <exception>

#ifdef DYNCONV_SPEC_DCNV3
namespace dynconv {

using nvinfer1::PluginFieldType;

TrtDcnv3Creator::TrtDcnv3Creator() {
    const OpTable& t = trt_dcnv3_table();
    for (int j = 0; j < t.n_fields; ++j) {
        const FieldSpec& f = t.fields[j];
        fields_.emplace_back(f.name, nullptr, f.kind == FieldKind::kFloat ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32, 1);
    }
    fc_.nbFields = static_cast<int32_t>(fields_.size());
    fc_.fields = fields_.data();
}

namespace {
ValueType value_type(PluginFieldType t) {
    switch (t) {
    case PluginFieldType::kINT32: return ValueType::kInt32;
    case PluginFieldType::kFLOAT32: return ValueType::kFloat32;
    case PluginFieldType::kFLOAT64: return ValueType::kFloat64;
    case PluginFieldType::kCHAR: return ValueType::kChar;
    default: return ValueType::kOther;
    }
}
} // namespace

nvinfer1::IPluginV2* TrtDcnv3Creator::createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc) noexcept {
    try {
        std::vector<FieldValue> raw;
        for (int32_t k = 0; fc && k < fc->nbFields; ++k) {
            const nvinfer1::PluginField& f = fc->fields[k];
            raw.push_back({f.name, value_type(f.type), f.data, f.length});
        }
        Attrs attrs;
        std::string error;
        if (!trt_dcnv3_to_attrs(raw.data(), int(raw.size()), &attrs, &error)) {
            log_error(error + " (layer " + (name ? name : "?") + ")");
            return nullptr;
        }
        auto* p = new TrtDcnv3Plugin(attrs);
        p->setPluginNamespace(ns_.c_str());
        return p;
    } catch (const std::exception& e) {
        log_error(std::string("TRTDCNv3: cannot create plugin: ") + e.what());
        return nullptr;
    }
}

nvinfer1::IPluginV2* TrtDcnv3Creator::deserializePlugin(const char* name, const void* data, size_t length) noexcept {
    try {
        const OpTable* dcn = find_op_table("dcnv3");
        Attrs attrs;
        std::string error;
        if (dcn == nullptr || !deserialize_attrs(*dcn, data, length, &attrs, &error)) {
            log_error("TRTDCNv3: " + (dcn ? error : std::string("no DynconvDCNv3 spec table")) + " (layer " +
                      (name ? name : "?") + ")");
            return nullptr;
        }
        auto* p = new TrtDcnv3Plugin(attrs);
        p->setPluginNamespace(ns_.c_str());
        return p;
    } catch (const std::exception& e) {
        log_error(std::string("TRTDCNv3: cannot deserialize plugin: ") + e.what());
        return nullptr;
    }
}

DYNCONV_REGISTER_CREATOR(TrtDcnv3Creator);

} // namespace dynconv
#endif
