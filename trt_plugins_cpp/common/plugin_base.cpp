#include "common/plugin_base.h"

#include <exception>

namespace dynconv {

using nvinfer1::DataType;
using nvinfer1::PluginFieldType;

PluginBase::PluginBase(const OpTable& table, Attrs attrs) : table_(table), attrs_(std::move(attrs)) {}

DataType PluginBase::getOutputDataType(int32_t, const DataType* inputTypes, int32_t nbInputs) const noexcept {
    return nbInputs > 0 ? inputTypes[0] : DataType::kFLOAT;
}

nvinfer1::IPluginV2DynamicExt* PluginBase::clone() const noexcept {
    try {
        PluginBase* p = make(attrs_);
        p->setPluginNamespace(ns_.c_str());
        return p;
    } catch (const std::exception& e) {
        log_error(std::string(table_.name) + ": clone failed: " + e.what());
        return nullptr;
    }
}

bool PluginBase::supportsFormatCombination(int32_t pos, const nvinfer1::PluginTensorDesc* inOut, int32_t nbInputs,
                                           int32_t nbOutputs) noexcept {
    if (pos < 0 || pos >= nbInputs + nbOutputs) return false;
    const nvinfer1::PluginTensorDesc& d = inOut[pos];
    if (d.format != nvinfer1::TensorFormat::kLINEAR) return false;
    if (pos == 0) return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    return d.type == inOut[0].type;  // every tensor has the type of the first input
}

std::vector<int> PluginBase::present_inputs() const {
    std::vector<int> idx;
    for (int k = 0; k < table_.n_inputs; ++k)
        if (!table_.input_optional[k] || input_present(attrs_, table_.input_names[k])) idx.push_back(k);
    return idx;
}

std::vector<Shape> PluginBase::spec_shapes(const nvinfer1::PluginTensorDesc* inputDesc, int32_t nbInputs) const {
    std::vector<Shape> shapes(table_.n_inputs);
    std::vector<int> idx = present_inputs();
    for (int32_t k = 0; k < nbInputs && k < int32_t(idx.size()); ++k)
        shapes[idx[k]].assign(inputDesc[k].dims.d, inputDesc[k].dims.d + inputDesc[k].dims.nbDims);
    return shapes;
}

int32_t PluginBase::finish(cudaError_t status) const {
    if (status == cudaSuccess) return 0;
    log_error(std::string(table_.name) + ": CUDA error " + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
    return 1;
}

// ------------------------------------------------------------------------------------------------------

CreatorBase::CreatorBase(const char* torch_name) : table_(find_op_table(torch_name)) { list_fields(); }

CreatorBase::CreatorBase(const OpTable& table) : table_(&table) { list_fields(); }

void CreatorBase::list_fields() {
    if (table_ == nullptr) return;
    for (int j = 0; j < table_->n_fields; ++j) {
        const FieldSpec& f = table_->fields[j];
        PluginFieldType t = f.kind == FieldKind::kFloat ? PluginFieldType::kFLOAT32
                          : f.kind == FieldKind::kStr   ? PluginFieldType::kCHAR
                                                        : PluginFieldType::kINT32;
        fields_.emplace_back(f.name, nullptr, t, f.kind == FieldKind::kInts ? f.length : 1);
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

nvinfer1::IPluginV2* CreatorBase::createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc) noexcept {
    try {
        if (table_ == nullptr) {
            log_error("dynconv plugin creator without a spec table (stale build)");
            return nullptr;
        }
        std::vector<FieldValue> raw;
        for (int32_t k = 0; fc && k < fc->nbFields; ++k) {
            const nvinfer1::PluginField& f = fc->fields[k];
            raw.push_back({f.name, value_type(f.type), f.data, f.length});
        }
        Attrs attrs;
        std::string error;
        if (!to_attrs(raw.data(), int(raw.size()), &attrs, &error)) {
            log_error(error + " (layer " + (name ? name : "?") + ")");
            return nullptr;
        }
        PluginBase* p = make(attrs);
        p->setPluginNamespace(ns_.c_str());
        return p;
    } catch (const std::exception& e) {
        log_error(std::string(getPluginName()) + ": cannot create plugin: " + e.what() + " (layer " +
                  (name ? name : "?") + ")");
        return nullptr;
    }
}

bool CreatorBase::to_attrs(const FieldValue* fields, int n_fields, Attrs* out, std::string* error) const {
    return parse_fields(*table_, fields, n_fields, out, error);
}

PluginBase* CreatorBase::from_blob(const void* data, size_t length, std::string* error) const {
    Attrs attrs;
    if (!deserialize_attrs(*table_, data, length, &attrs, error)) return nullptr;
    return make(attrs);
}

nvinfer1::IPluginV2* CreatorBase::deserializePlugin(const char* name, const void* data, size_t length) noexcept {
    try {
        if (table_ == nullptr) return nullptr;
        std::string error;
        PluginBase* p = from_blob(data, length, &error);
        if (p == nullptr) {
            log_error(error + " (layer " + (name ? name : "?") + ")");
            return nullptr;
        }
        p->setPluginNamespace(ns_.c_str());
        return p;
    } catch (const std::exception& e) {
        log_error(std::string(getPluginName()) + ": cannot deserialize plugin: " + e.what());
        return nullptr;
    }
}

} // namespace dynconv
