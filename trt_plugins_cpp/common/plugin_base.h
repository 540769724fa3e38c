// Base classes of all dynconv IPluginV2DynamicExt plugins and their creators: FP32/FP16 linear-format
// negotiation, namespace, clone, (de)serialization of the spec-validated fields, strict field parsing.
#pragma once

#include <string>
#include <vector>

#include <NvInfer.h>

#include "common/fields.h"
#include "dynconv_op_tables.h"
#include "common/kernel_common.h"
#include "common/logging.h"
#include "common/op_host.h"
#include "common/registration.h"

namespace dynconv {

class PluginBase : public nvinfer1::IPluginV2DynamicExt {
public:
    PluginBase(const OpTable& table, Attrs attrs);

    // IPluginV2
    const char* getPluginType() const noexcept override { return table_.name; }
    const char* getPluginVersion() const noexcept override { return table_.version; }
    int32_t getNbOutputs() const noexcept override { return table_.n_outputs; }
    int32_t initialize() noexcept override { return 0; }
    void terminate() noexcept override {}
    size_t getSerializationSize() const noexcept override { return serialized_size(attrs_); }
    void serialize(void* buffer) const noexcept override { serialize_attrs(attrs_, buffer); }
    void destroy() noexcept override { delete this; }
    void setPluginNamespace(const char* ns) noexcept override { ns_ = ns ? ns : ""; }
    const char* getPluginNamespace() const noexcept override { return ns_.c_str(); }

    // IPluginV2Ext
    nvinfer1::DataType getOutputDataType(int32_t index, const nvinfer1::DataType* inputTypes,
                                         int32_t nbInputs) const noexcept override;

    // IPluginV2DynamicExt
    nvinfer1::IPluginV2DynamicExt* clone() const noexcept override;
    bool supportsFormatCombination(int32_t pos, const nvinfer1::PluginTensorDesc* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    void configurePlugin(const nvinfer1::DynamicPluginTensorDesc*, int32_t, const nvinfer1::DynamicPluginTensorDesc*,
                         int32_t) noexcept override {}
    size_t getWorkspaceSize(const nvinfer1::PluginTensorDesc*, int32_t, const nvinfer1::PluginTensorDesc*,
                            int32_t) const noexcept override { return 0; }

    const Attrs& attrs() const { return attrs_; }

protected:
    //! A new plugin of the same class from validated attributes (used by clone).
    virtual PluginBase* make(const Attrs& attrs) const = 0;
    //! Spec input index of each position TensorRT passes (absent optional inputs are skipped).
    std::vector<int> present_inputs() const;
    //! The concrete shapes of the present inputs, as spec-ordered shapes (empty = absent).
    std::vector<Shape> spec_shapes(const nvinfer1::PluginTensorDesc* inputDesc, int32_t nbInputs) const;
    IoType io_type(const nvinfer1::PluginTensorDesc& d) const {
        return d.type == nvinfer1::DataType::kHALF ? IoType::kFloat16 : IoType::kFloat32;
    }
    //! Log a failing CUDA status and map it to enqueue's return value.
    int32_t finish(cudaError_t status) const;

    const OpTable& table_;
    Attrs attrs_;
    std::string ns_;
};

//! Creator of a PluginBase plugin: the field list from an op table, strict field parsing, (de)serialization,
//! nullptr with a logged reason on any error, namespace. A compat creator passes its foreign table and
//! overrides the hooks that differ (field -> Attrs mapping, serialized form).
class CreatorBase : public nvinfer1::IPluginCreator {
public:
    //! The generated spec table of `torch_name` (a stale build without it gives a creator that refuses).
    explicit CreatorBase(const char* torch_name);
    //! A table declared by hand (compat creators for foreign node formats).
    explicit CreatorBase(const OpTable& table);

    const char* getPluginName() const noexcept override { return table_ ? table_->name : "DynconvMissingSpec"; }
    const char* getPluginVersion() const noexcept override { return table_ ? table_->version : "0"; }
    const nvinfer1::PluginFieldCollection* getFieldNames() noexcept override { return &fc_; }
    nvinfer1::IPluginV2* createPlugin(const char* name, const nvinfer1::PluginFieldCollection* fc) noexcept override;
    nvinfer1::IPluginV2* deserializePlugin(const char* name, const void* data, size_t length) noexcept override;
    void setPluginNamespace(const char* ns) noexcept override { ns_ = ns ? ns : ""; }
    const char* getPluginNamespace() const noexcept override { return ns_.c_str(); }

protected:
    //! Build the plugin (may throw ShapeError/std::exception for inconsistent attributes).
    virtual PluginBase* make(const Attrs& attrs) const = 0;
    //! The plugin's attributes from the raw creator fields; false with the reason in `error`.
    //! Default: strict parse_fields against the creator's table.
    virtual bool to_attrs(const FieldValue* fields, int n_fields, Attrs* out, std::string* error) const;
    //! The plugin from its serialized form; nullptr with the reason in `error` (or throws).
    //! Default: deserialize_attrs against the creator's table, then make().
    virtual PluginBase* from_blob(const void* data, size_t length, std::string* error) const;
    const OpTable* table() const { return table_; }

private:
    void list_fields();

    const OpTable* table_;
    std::vector<nvinfer1::PluginField> fields_;
    nvinfer1::PluginFieldCollection fc_{};
    std::string ns_;
};

} // namespace dynconv
