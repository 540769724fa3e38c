// Types of the generated op tables (dynconv_op_tables.h). No TensorRT or CUDA includes.
#pragma once

namespace dynconv {

enum class FieldKind : int { kInt = 0, kFloat = 1, kInts = 2, kStr = 3 };

//! One plugin field / ONNX attribute, generated from an AttrSpec.
struct FieldSpec {
    const char* name;
    FieldKind kind;
    int length;            //!< exact element count (kInts: 0 = any >= 1; others: 1)
    bool required;         //!< no default
    const int* default_ints;
    int n_default_ints;
    double default_float;
    const char* default_str;
    bool has_min;
    double min;
    bool has_max;
    double max;
    const char* const* choices_str;
    const int* choices_int;
    const double* choices_float;
    int n_choices;
};

//! One op: plugin name/version, inputs (with optional flags) and its fields in spec order.
struct OpTable {
    const char* name;
    const char* version;
    const char* torch_name;
    const char* layout;
    int n_inputs;
    const char* const* input_names;
    const bool* input_optional;
    int n_outputs;
    const FieldSpec* fields;
    int n_fields;
};

} // namespace dynconv
