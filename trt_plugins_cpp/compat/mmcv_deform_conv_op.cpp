#include "compat/mmcv_deform_conv_op.h"

#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "deform_conv/deform_conv_op.h"

namespace dynconv {
namespace {

const int kOnes2[] = {1, 1};
const int kZeros2[] = {0, 0};
const int kOne[] = {1};
const int kZero[] = {0};
const int kStep32[] = {32};

//             name, kind, length, required, default ints, n, default float, default str, has_min, min, has_max, max, choices
const FieldSpec kModulatedFields[] = {
    {"stride", FieldKind::kInts, 2, false, kOnes2, 2, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"padding", FieldKind::kInts, 2, false, kZeros2, 2, 0.0, nullptr, true, 0.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"dilation", FieldKind::kInts, 2, false, kOnes2, 2, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"groups", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"deform_groups", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
};
const char* const kModulatedInputs[] = {"input", "offset", "mask", "weight", "bias"};
const bool kModulatedOptional[] = {false, false, false, false, true};
const OpTable kModulatedTable = {"MMCVModulatedDeformConv2d", "1", "mmcv_modulated_deform_conv2d", "NCHW",
                                 5, kModulatedInputs, kModulatedOptional, 1, kModulatedFields, 5};

const FieldSpec kPlainFields[] = {
    {"stride", FieldKind::kInts, 2, false, kOnes2, 2, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    // 2 values [ph, pw] or mmdeploy's 4 values [ph, ph, pw, pw]; the count is checked by the params mapping
    {"padding", FieldKind::kInts, 0, false, kZeros2, 2, 0.0, nullptr, true, 0.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"dilation", FieldKind::kInts, 2, false, kOnes2, 2, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"groups", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"deform_groups", FieldKind::kInt, 1, false, kOne, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
    {"bias", FieldKind::kInt, 1, false, kZero, 1, 0.0, nullptr, true, 0.0, true, 1.0, nullptr, nullptr, nullptr, 0},
    {"im2col_step", FieldKind::kInt, 1, false, kStep32, 1, 0.0, nullptr, true, 1.0, false, 0.0, nullptr, nullptr, nullptr, 0},
};
const char* const kPlainInputs[] = {"input", "offset", "weight"};
const bool kPlainOptional[] = {false, false, false};
const OpTable kPlainTable = {"MMCVDeformConv2d", "1", "mmcv_deform_conv2d", "NCHW",
                             3, kPlainInputs, kPlainOptional, 1, kPlainFields, 7};

} // namespace

const OpTable& mmcv_deform_conv_table(MmcvDcnKind kind) {
    return kind == MmcvDcnKind::kModulated ? kModulatedTable : kPlainTable;
}

const OpTable* find_mmcv_deform_conv_table(const char* name, MmcvDcnKind* kind) {
    for (MmcvDcnKind k : {MmcvDcnKind::kModulated, MmcvDcnKind::kPlain}) {
        const OpTable& t = mmcv_deform_conv_table(k);
        if (name && (!std::strcmp(name, t.name) || !std::strcmp(name, t.torch_name))) {
            if (kind) *kind = k;
            return &t;
        }
    }
    return nullptr;
}

DeformConvParams mmcv_deform_conv_params(const Attrs& a, MmcvDcnKind kind) {
    const std::string name = mmcv_deform_conv_table(kind).name;
    DeformConvParams p{};
    const auto& s = a.ints("stride");
    const auto& pd = a.ints("padding");
    const auto& d = a.ints("dilation");
    p.sh = s[0]; p.sw = s[1];  // H first, as mmcv/torch order them
    p.dh = d[0]; p.dw = d[1];
    if (pd.size() == 2) {
        p.ph = pd[0]; p.pw = pd[1];
    } else if (pd.size() == 4 && kind == MmcvDcnKind::kPlain) {
        // mmdeploy: padding_i=[p for pair in zip(padding, padding) for p in pair] = [ph, ph, pw, pw]
        require(pd[0] == pd[1] && pd[2] == pd[3],
                name + ": field 'padding' with 4 values must be [ph, ph, pw, pw] (mmdeploy's layout; per-side "
                       "padding is not supported), got [" + std::to_string(pd[0]) + ", " + std::to_string(pd[1]) + ", " +
                    std::to_string(pd[2]) + ", " + std::to_string(pd[3]) + "]");
        p.ph = pd[0]; p.pw = pd[2];
    } else {
        require(false, name + ": field 'padding' must hold 2 values [ph, pw]" +
                           std::string(kind == MmcvDcnKind::kPlain ? " or 4 values [ph, ph, pw, pw]" : "") + ", got " +
                           std::to_string(pd.size()));
    }
    p.groups = a.i("groups");
    p.offset_groups = a.i("deform_groups");
    p.with_mask = kind == MmcvDcnKind::kModulated ? 1 : 0;
    p.with_bias = 0;
    if (kind == MmcvDcnKind::kPlain)
        require(a.i("bias") == 0, name + ": field 'bias' = 1 is not supported: mmcv's DeformConv2d has no bias input");
    return p;
}

std::vector<int> mmcv_deform_conv_spec_index(MmcvDcnKind kind, int n_inputs) {
    const std::string name = mmcv_deform_conv_table(kind).name;
    if (kind == MmcvDcnKind::kModulated) {
        require(n_inputs == 4 || n_inputs == 5,
                name + ": expects 4 or 5 inputs (input, offset, mask, weight[, bias]), got " + std::to_string(n_inputs));
        std::vector<int> idx{0, 2, 3, 1, 4};
        idx.resize(size_t(n_inputs));
        return idx;
    }
    require(n_inputs == 3, name + ": expects 3 inputs (input, offset, weight), got " + std::to_string(n_inputs));
    return {0, 2, 1};
}

Shape mmcv_deform_conv_run_cpu(MmcvDcnKind kind, const Attrs& a, const std::vector<Shape>& shapes,
                               const std::vector<const float*>& in, float* out) {
    DeformConvParams p = mmcv_deform_conv_params(a, kind);
    const std::vector<int> idx = mmcv_deform_conv_spec_index(kind, int(shapes.size()));
    std::vector<Shape> spec(5);
    std::vector<const float*> ptr(5, nullptr);
    for (size_t k = 0; k < idx.size(); ++k) {
        spec[idx[k]] = shapes[k];
        ptr[idx[k]] = in.size() > k ? in[k] : nullptr;
    }
    p.with_bias = spec[4].empty() ? 0 : 1;
    return deform_conv_run_params(p, spec, ptr, out);
}

} // namespace dynconv

// ---- test hooks of the CPU reference library (ctypes) ------------------------------------------------
namespace {

using namespace dynconv;

int fail(char* err, int errlen, const std::string& msg) {
    if (err && errlen > 0) std::snprintf(err, size_t(errlen), "%s", msg.c_str());
    return -1;
}

const OpTable& parse_compat(const char* op, const FieldValue* fields, int n_fields, Attrs* a, MmcvDcnKind* kind) {
    const OpTable* t = find_mmcv_deform_conv_table(op, kind);
    if (!t) throw std::runtime_error(std::string("unknown mmcv compat op ") + (op ? op : "(null)"));
    std::string e;
    if (!parse_fields(*t, fields, n_fields, a, &e)) throw std::runtime_error(e);
    return *t;
}

} // namespace

extern "C" {

//! Validate fields as the compat creator does (incl. the params mapping), serialize, deserialize,
//! re-serialize. Returns the blob size, or -1 with the reason in `err`.
int dynconv_cpuref_mmcv_check_fields(const char* op, const FieldValue* fields, int n_fields, unsigned char* blob,
                                     int blob_cap, char* err, int errlen) {
    try {
        Attrs a;
        MmcvDcnKind kind;
        const OpTable& t = parse_compat(op, fields, n_fields, &a, &kind);
        mmcv_deform_conv_params(a, kind);
        std::string b1(serialized_size(a), '\0');
        serialize_attrs(a, &b1[0]);
        Attrs back;
        std::string e;
        if (!deserialize_attrs(t, b1.data(), b1.size(), &back, &e)) return fail(err, errlen, e);
        std::string b2(serialized_size(back), '\0');
        serialize_attrs(back, &b2[0]);
        if (b1 != b2) return fail(err, errlen, "re-serialized bytes differ");
        if (blob && blob_cap >= int(b1.size())) std::memcpy(blob, b1.data(), b1.size());
        return int(b1.size());
    } catch (const std::exception& ex) {
        return fail(err, errlen, ex.what());
    }
}

//! The DynconvDeformConv2d params the compat fields map to, for a node with `n_inputs` inputs, as 12 ints
//! in the order of dynconv_cpuref_deform_conv_params.
int dynconv_cpuref_mmcv_params(const char* op, const FieldValue* fields, int n_fields, int n_inputs, int* out12,
                               char* err, int errlen) {
    try {
        Attrs a;
        MmcvDcnKind kind;
        parse_compat(op, fields, n_fields, &a, &kind);
        DeformConvParams p = mmcv_deform_conv_params(a, kind);
        const std::vector<int> idx = mmcv_deform_conv_spec_index(kind, n_inputs);
        p.with_bias = int(idx.size()) > 4 ? 1 : 0;
        const int v[12] = {p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, p.groups, p.offset_groups, p.with_mask, p.with_bias};
        for (int k = 0; k < 12; ++k) out12[k] = v[k];
        return 0;
    } catch (const std::exception& ex) {
        return fail(err, errlen, ex.what());
    }
}

//! Run a compat node on FP32 inputs given in the compat order (same conventions as dynconv_cpuref_run).
int dynconv_cpuref_mmcv_run(const char* op, const FieldValue* fields, int n_fields, int n_inputs,
                            const float* const* data, const int* ranks, const int64_t* dims, float* out,
                            int64_t* out_dims, int* out_rank, char* err, int errlen) {
    try {
        Attrs a;
        MmcvDcnKind kind;
        parse_compat(op, fields, n_fields, &a, &kind);
        std::vector<Shape> shapes(n_inputs);
        std::vector<const float*> ptrs(n_inputs);
        for (int k = 0; k < n_inputs; ++k) {
            shapes[k].assign(dims + 8 * k, dims + 8 * k + ranks[k]);
            ptrs[k] = data[k];
        }
        Shape o = mmcv_deform_conv_run_cpu(kind, a, shapes, ptrs, out);
        *out_rank = int(o.size());
        for (size_t k = 0; k < o.size() && k < 8; ++k) out_dims[k] = o[k];
        return 0;
    } catch (const std::exception& ex) {
        return fail(err, errlen, ex.what());
    }
}

} // extern "C"
