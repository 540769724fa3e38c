// Field parsing and strict validation against a generated OpTable, plus (de)serialization of the
// parsed values. Shared by the TensorRT creators and the CPU reference library (no TensorRT here).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/field_table.h"

namespace dynconv {

//! The element type of a raw field value (mirrors the TensorRT PluginFieldType values we accept).
enum class ValueType : int { kInt32 = 0, kFloat32 = 1, kFloat64 = 2, kChar = 3, kOther = 4 };

//! A raw field as received from a creator (or from Python through ctypes).
struct FieldValue {
    const char* name;
    ValueType type;
    const void* data;
    int32_t length;
};

//! Parsed, validated values of every field of one op, in table order.
class Attrs {
public:
    Attrs() = default;
    explicit Attrs(const OpTable* table) : table_(table), ints_(table->n_fields), floats_(table->n_fields, 0.0),
                                            strs_(table->n_fields) {}

    const OpTable* table() const { return table_; }
    int index(const char* name) const;            //!< throws std::runtime_error if the table lacks it
    int i(const char* name) const;                //!< kInt field
    const std::vector<int>& ints(const char* name) const;
    double f(const char* name) const;
    const std::string& s(const char* name) const;

    std::vector<std::vector<int>>& raw_ints() { return ints_; }
    std::vector<double>& raw_floats() { return floats_; }
    std::vector<std::string>& raw_strs() { return strs_; }
    const std::vector<std::vector<int>>& raw_ints() const { return ints_; }
    const std::vector<double>& raw_floats() const { return floats_; }
    const std::vector<std::string>& raw_strs() const { return strs_; }

private:
    const OpTable* table_ = nullptr;
    std::vector<std::vector<int>> ints_;
    std::vector<double> floats_;
    std::vector<std::string> strs_;
};

//! Fill `out` from raw fields: defaults for absent optional ones; every error names the field.
//! Unknown names are rejected, except `plugin_version`/`plugin_namespace`, which are ignored.
bool parse_fields(const OpTable& table, const FieldValue* fields, int n_fields, Attrs* out, std::string* error);

//! Bytes needed by serialize_attrs.
size_t serialized_size(const Attrs& attrs);
//! Write the values in table order (little-endian, host layout) into `buffer`.
void serialize_attrs(const Attrs& attrs, void* buffer);
//! Inverse of serialize_attrs; checks the header and every length, re-validates the values.
bool deserialize_attrs(const OpTable& table, const void* data, size_t length, Attrs* out, std::string* error);

//! Find a generated table by plugin name or torch name (nullptr if absent).
const OpTable* find_op_table(const char* name);

} // namespace dynconv
