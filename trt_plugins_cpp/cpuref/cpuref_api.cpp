// extern "C" API of libdynconv_cpuref.so, used from Python through ctypes (dynconv.plugins.native).
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "common/fields.h"
#include "cpuref/ops.h"

using namespace dynconv;

namespace {

void set_error(char* err, int errlen, const std::string& msg) {
    if (err && errlen > 0) std::snprintf(err, static_cast<size_t>(errlen), "%s", msg.c_str());
}

const CpuOp* find_cpu_op(const OpTable* t) {
    for (const CpuOp* op = kCpuOps; op->torch_name; ++op)
        if (!std::strcmp(op->torch_name, t->torch_name)) return op;
    return nullptr;
}

std::string json_str(const char* s) {
    std::string r = "\"";
    for (; s && *s; ++s) r += (*s == '"' || *s == '\\') ? std::string("\\") + *s : std::string(1, *s);
    return r + "\"";
}

std::string num(double v) {
    char b[64];
    std::snprintf(b, sizeof b, "%.17g", v);
    return b;
}

std::string tables_json() {
    std::string r = "[";
    for (int k = 0; k < gen::kNumOps; ++k) {
        const OpTable& t = *gen::kAllOps[k];
        r += std::string(k ? "," : "") + "{\"name\":" + json_str(t.name) + ",\"version\":" + json_str(t.version) +
             ",\"torch_name\":" + json_str(t.torch_name) + ",\"cpu\":" + (find_cpu_op(&t) ? "true" : "false") +
             ",\"n_outputs\":" + std::to_string(t.n_outputs) + ",\"inputs\":[";
        for (int i = 0; i < t.n_inputs; ++i)
            r += std::string(i ? "," : "") + "[" + json_str(t.input_names[i]) + "," + (t.input_optional[i] ? "true" : "false") + "]";
        r += "],\"fields\":[";
        for (int j = 0; j < t.n_fields; ++j) {
            const FieldSpec& f = t.fields[j];
            static const char* kinds[] = {"int", "float", "ints", "str"};
            r += std::string(j ? "," : "") + "{\"name\":" + json_str(f.name) + ",\"type\":\"" + kinds[int(f.kind)] +
                 "\",\"length\":" + std::to_string(f.length) + ",\"required\":" + (f.required ? "true" : "false") +
                 ",\"min\":" + (f.has_min ? num(f.min) : "null") + ",\"max\":" + (f.has_max ? num(f.max) : "null") +
                 ",\"default\":";
            if (f.required) r += "null";
            else if (f.kind == FieldKind::kFloat) r += num(f.default_float);
            else if (f.kind == FieldKind::kStr) r += json_str(f.default_str);
            else {
                r += "[";
                for (int d = 0; d < f.n_default_ints; ++d) r += (d ? "," : "") + std::to_string(f.default_ints[d]);
                r += "]";
            }
            r += ",\"choices\":";
            if (!f.n_choices) r += "null";
            else {
                r += "[";
                for (int c = 0; c < f.n_choices; ++c)
                    r += std::string(c ? "," : "") + (f.choices_str ? json_str(f.choices_str[c])
                                                      : f.choices_int ? std::to_string(f.choices_int[c]) : num(f.choices_float[c]));
                r += "]";
            }
            r += "}";
        }
        r += "]}";
    }
    return r + "]";
}

} // namespace

extern "C" {

//! Test hook: CPU runs and traces of FP16 I/O pick the tiles a device with `sms` SMs runs (0: the largest
//! tiles regardless of how many SMs their grids fill; -1 restores the H200's 132).
void dynconv_cpuref_set_sm_count(int sms) { g_cpu_sm_count = sms < 0 ? kSmCountH200 : sms; }

//! JSON list of the generated op tables (plugin name, version, inputs, fields) for tests.
const char* dynconv_cpuref_tables_json() {
    static const std::string json = tables_json();
    return json.c_str();
}

//! Parse + validate fields, serialize, deserialize, re-serialize. Returns the blob size (> 0) and
//! copies the blob into `blob` when `blob_cap` suffices; returns -1 with a message in `err` otherwise.
int dynconv_cpuref_check_fields(const char* op, const FieldValue* fields, int n_fields, unsigned char* blob,
                                int blob_cap, char* err, int errlen) {
    try {
        const OpTable* t = find_op_table(op);
        if (!t) { set_error(err, errlen, std::string("unknown op ") + op); return -1; }
        Attrs a;
        std::string e;
        if (!parse_fields(*t, fields, n_fields, &a, &e)) { set_error(err, errlen, e); return -1; }
        std::string b1(serialized_size(a), '\0');
        serialize_attrs(a, &b1[0]);
        Attrs back;
        if (!deserialize_attrs(*t, b1.data(), b1.size(), &back, &e)) { set_error(err, errlen, e); return -1; }
        std::string b2(serialized_size(back), '\0');
        serialize_attrs(back, &b2[0]);
        if (b1 != b2) { set_error(err, errlen, "re-serialized bytes differ"); return -1; }
        if (blob && blob_cap >= int(b1.size())) std::memcpy(blob, b1.data(), b1.size());
        return int(b1.size());
    } catch (const std::exception& ex) {
        set_error(err, errlen, ex.what());
        return -1;
    }
}

//! Run `op` on FP32 NCHW inputs. `dims` holds 8 int64 per input (first `ranks[k]` used; rank 0 =
//! absent optional input). With out == nullptr only the output shape is computed. fp16_io != 0 runs the
//! algorithm the GPU uses for FP16 I/O (inputs are expected to hold FP16-representable values already).
//! Returns 0 on success, -1 with a one-line message in `err`.
int dynconv_cpuref_run(const char* op, const FieldValue* fields, int n_fields, int n_inputs, const float* const* data,
                       const int* ranks, const int64_t* dims, int fp16_io, float* out, int64_t* out_dims, int* out_rank,
                       char* err, int errlen) {
    try {
        const OpTable* t = find_op_table(op);
        if (!t) { set_error(err, errlen, std::string("unknown op ") + op); return -1; }
        const CpuOp* cop = find_cpu_op(t);
        if (!cop) { set_error(err, errlen, std::string(t->name) + ": no C++ implementation in this build"); return -1; }
        Attrs a;
        std::string e;
        if (!parse_fields(*t, fields, n_fields, &a, &e)) { set_error(err, errlen, e); return -1; }
        std::vector<Shape> shapes(n_inputs);
        std::vector<const float*> ptrs(n_inputs);
        for (int k = 0; k < n_inputs; ++k) {
            shapes[k].assign(dims + 8 * k, dims + 8 * k + ranks[k]);
            ptrs[k] = data[k];
        }
        const CpuRunFn run = fp16_io && cop->run_fp16 ? cop->run_fp16 : cop->run;
        Shape o = run(a, shapes, ptrs, out);
        *out_rank = int(o.size());
        for (size_t k = 0; k < o.size() && k < 8; ++k) out_dims[k] = o[k];
        return 0;
    } catch (const std::exception& ex) {
        set_error(err, errlen, ex.what());
        return -1;
    }
}

} // extern "C"
