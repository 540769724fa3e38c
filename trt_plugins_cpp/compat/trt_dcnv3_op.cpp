#include "compat/trt_dcnv3_op.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

#include "dcnv3/dcnv3_op.h"

namespace dynconv {
namespace {

const int kThree[] = {3};
const int kOne[] = {1};
const int kZero[] = {0};
const int kStep[] = {256};
const int kBool[] = {0, 1};

// name, kind, length, required, default ints, n, default float, default str, has_min, min, has_max, max,
// choices (str, int, float), n_choices
const FieldSpec kFields[] = {
    {"kernel_h", FieldKind::kInt, 1, false, kThree, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"kernel_w", FieldKind::kInt, 1, false, kThree, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"stride_h", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"stride_w", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"pad_h", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 0.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"pad_w", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 0.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"dilation_h", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"dilation_w", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"group", FieldKind::kInt, 1, true, nullptr, 0, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"group_channels", FieldKind::kInt, 1, true, nullptr, 0, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"offset_scale", FieldKind::kFloat, 1, false, nullptr, 0, 1.0, nullptr, false, 0.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"im2col_step", FieldKind::kInt, 1, false, kStep, 1, 0.0, nullptr, false, 0.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"remove_center", FieldKind::kInt, 1, false, kZero, 1, 0.0, nullptr, false, 0.0, false, 0.0, nullptr, kBool, nullptr, 2},
};
const char* const kInputs[] = {"input", "offset", "mask"};
const bool kOptional[] = {false, false, false};
const OpTable kTable = {"TRTDCNv3", "1", "trt_dcnv3", "NHWC", 3, kInputs, kOptional, 1, kFields,
                        int(sizeof(kFields) / sizeof(kFields[0]))};

} // namespace

const OpTable& trt_dcnv3_table() { return kTable; }

bool trt_dcnv3_to_attrs(const FieldValue* fields, int n_fields, Attrs* out, std::string* error) {
    Attrs c;
    if (!parse_fields(kTable, fields, n_fields, &c, error)) return false;
    const OpTable* dcn = find_op_table("dcnv3");
    if (dcn == nullptr) {
        if (error) *error = "TRTDCNv3: this build has no DynconvDCNv3 spec table";
        return false;
    }
    const int ksize[2] = {c.i("kernel_h"), c.i("kernel_w")};
    const int stride[2] = {c.i("stride_h"), c.i("stride_w")};
    const int pad[2] = {c.i("pad_h"), c.i("pad_w")};
    const int dil[2] = {c.i("dilation_h"), c.i("dilation_w")};
    const int group = c.i("group"), cg = c.i("group_channels"), rc = c.i("remove_center");
    const double scale = c.f("offset_scale");
    const FieldValue mapped[] = {
        {"kernel_size", ValueType::kInt32, ksize, 2}, {"stride", ValueType::kInt32, stride, 2},
        {"padding", ValueType::kInt32, pad, 2},       {"dilation", ValueType::kInt32, dil, 2},
        {"group", ValueType::kInt32, &group, 1},      {"group_channels", ValueType::kInt32, &cg, 1},
        {"offset_scale", ValueType::kFloat64, &scale, 1}, {"remove_center", ValueType::kInt32, &rc, 1},
    };
    std::string e;
    if (!parse_fields(*dcn, mapped, int(sizeof(mapped) / sizeof(mapped[0])), out, &e)) {
        if (error) *error = "TRTDCNv3: " + e;
        return false;
    }
    try {
        dcnv3_params(*out);  // remove_center with an even / 1x1 kernel
    } catch (const std::exception& ex) {
        if (error) *error = std::string("TRTDCNv3: ") + ex.what();
        return false;
    }
    return true;
}

} // namespace dynconv

// ---- CPU reference entry points (libdynconv_cpuref.so; harmless in the plugin library) ----------------
namespace {
void put_error(char* err, int errlen, const std::string& msg) {
    if (err && errlen > 0) std::snprintf(err, static_cast<size_t>(errlen), "%s", msg.c_str());
}
} // namespace

extern "C" {

//! Map TRTDCNv3 fields to DynconvDCNv3 and return its serialized attribute blob (as
//! dynconv_cpuref_check_fields would for those attributes); -1 with a message in `err` on error.
__attribute__((visibility("default"))) int dynconv_cpuref_trt_dcnv3_map(const dynconv::FieldValue* fields,
                                                                        int n_fields, unsigned char* blob,
                                                                        int blob_cap, char* err, int errlen) {
    try {
        dynconv::Attrs a;
        std::string e;
        if (!dynconv::trt_dcnv3_to_attrs(fields, n_fields, &a, &e)) { put_error(err, errlen, e); return -1; }
        std::string b(dynconv::serialized_size(a), '\0');
        dynconv::serialize_attrs(a, &b[0]);
        if (blob && blob_cap >= int(b.size())) std::memcpy(blob, b.data(), b.size());
        return int(b.size());
    } catch (const std::exception& ex) {
        put_error(err, errlen, ex.what());
        return -1;
    }
}

//! Run TRTDCNv3 (fields in the original form) on FP32 NHWC inputs through the DynconvDCNv3 CPU math;
//! same calling convention as dynconv_cpuref_run (8 int64 dims per input; out == nullptr: shape only).
__attribute__((visibility("default"))) int dynconv_cpuref_trt_dcnv3_run(
    const dynconv::FieldValue* fields, int n_fields, int n_inputs, const float* const* data, const int* ranks,
    const int64_t* dims, float* out, int64_t* out_dims, int* out_rank, char* err, int errlen) {
    try {
        dynconv::Attrs a;
        std::string e;
        if (!dynconv::trt_dcnv3_to_attrs(fields, n_fields, &a, &e)) { put_error(err, errlen, e); return -1; }
        std::vector<dynconv::Shape> shapes(n_inputs);
        std::vector<const float*> ptrs(n_inputs);
        for (int k = 0; k < n_inputs; ++k) {
            shapes[k].assign(dims + 8 * k, dims + 8 * k + ranks[k]);
            ptrs[k] = data[k];
        }
        dynconv::Shape o = dynconv::dcnv3_run_cpu(a, shapes, ptrs, out);
        *out_rank = int(o.size());
        for (size_t k = 0; k < o.size() && k < 8; ++k) out_dims[k] = o[k];
        return 0;
    } catch (const std::exception& ex) {
        put_error(err, errlen, std::string("TRTDCNv3: ") + ex.what());
        return -1;
    }
}

} // extern "C"
