#include "common/fields.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "dynconv_op_tables.h"

namespace dynconv {
namespace {

const char* kind_name(FieldKind k) {
    switch (k) {
    case FieldKind::kInt: return "int32 scalar";
    case FieldKind::kFloat: return "float32 scalar";
    case FieldKind::kInts: return "int32 list";
    case FieldKind::kStr: return "string (char)";
    }
    return "?";
}

bool fail(std::string* error, const OpTable& t, const FieldSpec& f, const std::string& why) {
    if (error) *error = std::string(t.name) + ": field '" + f.name + "' " + why;
    return false;
}

std::string num(double v) {
    if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<long long>(v));
    return std::to_string(v);
}

bool check_range(const OpTable& t, const FieldSpec& f, double v, std::string* error) {
    if (!std::isfinite(v)) return fail(error, t, f, "must be finite");
    if (f.has_min && v < f.min) return fail(error, t, f, "value " + num(v) + " is below the minimum " + num(f.min));
    if (f.has_max && v > f.max) return fail(error, t, f, "value " + num(v) + " is above the maximum " + num(f.max));
    if (f.n_choices > 0 && f.kind != FieldKind::kStr) {
        for (int c = 0; c < f.n_choices; ++c) {
            double ch = f.choices_int ? f.choices_int[c] : f.choices_float[c];
            if (ch == v) return true;
        }
        return fail(error, t, f, "value " + num(v) + " is not one of the allowed choices");
    }
    return true;
}

bool set_field(const OpTable& t, int idx, const FieldValue& v, Attrs* out, std::string* error) {
    const FieldSpec& f = t.fields[idx];
    if (v.length < 0 || (v.length > 0 && v.data == nullptr))
        return fail(error, t, f, "has no data");
    switch (f.kind) {
    case FieldKind::kInt:
    case FieldKind::kInts: {
        if (v.type != ValueType::kInt32) return fail(error, t, f, std::string("must be of type ") + kind_name(f.kind));
        if (f.kind == FieldKind::kInt && v.length != 1)
            return fail(error, t, f, "must hold exactly 1 value, got " + std::to_string(v.length));
        if (f.kind == FieldKind::kInts && f.length > 0 && v.length != f.length)
            return fail(error, t, f, "must hold exactly " + std::to_string(f.length) + " values, got " + std::to_string(v.length));
        if (v.length < 1) return fail(error, t, f, "must hold at least 1 value");
        std::vector<int> vals(v.length);
        std::memcpy(vals.data(), v.data, sizeof(int32_t) * v.length);
        for (int x : vals)
            if (!check_range(t, f, x, error)) return false;
        out->raw_ints()[idx] = vals;
        return true;
    }
    case FieldKind::kFloat: {
        double x = 0;
        if (v.type == ValueType::kFloat32 && v.length == 1) { float y; std::memcpy(&y, v.data, 4); x = y; }
        else if (v.type == ValueType::kFloat64 && v.length == 1) std::memcpy(&x, v.data, 8);
        else if (v.type != ValueType::kFloat32 && v.type != ValueType::kFloat64)
            return fail(error, t, f, std::string("must be of type ") + kind_name(f.kind));
        else return fail(error, t, f, "must hold exactly 1 value, got " + std::to_string(v.length));
        if (!check_range(t, f, x, error)) return false;
        out->raw_floats()[idx] = x;
        return true;
    }
    case FieldKind::kStr: {
        if (v.type != ValueType::kChar) return fail(error, t, f, std::string("must be of type ") + kind_name(f.kind));
        std::string s(static_cast<const char*>(v.data), static_cast<size_t>(v.length));
        size_t nul = s.find('\0');
        if (nul != std::string::npos) s.resize(nul);  // accept NUL-terminated or not
        if (f.n_choices > 0) {
            bool ok = false;
            std::string allowed;
            for (int c = 0; c < f.n_choices; ++c) {
                ok = ok || s == f.choices_str[c];
                allowed += std::string(c ? ", " : "") + f.choices_str[c];
            }
            if (!ok) return fail(error, t, f, "value '" + s + "' is not one of: " + allowed);
        }
        out->raw_strs()[idx] = s;
        return true;
    }
    }
    return fail(error, t, f, "has an unknown kind");
}

void set_default(const FieldSpec& f, int idx, Attrs* out) {
    switch (f.kind) {
    case FieldKind::kInt:
    case FieldKind::kInts: out->raw_ints()[idx].assign(f.default_ints, f.default_ints + f.n_default_ints); break;
    case FieldKind::kFloat: out->raw_floats()[idx] = f.default_float; break;
    case FieldKind::kStr: out->raw_strs()[idx] = f.default_str; break;
    }
}

constexpr uint32_t kMagic = 0x44594e43u;  // "DYNC"

} // namespace

int Attrs::index(const char* name) const {
    for (int k = 0; table_ && k < table_->n_fields; ++k)
        if (std::strcmp(table_->fields[k].name, name) == 0) return k;
    throw std::runtime_error(std::string("op table has no field '") + name + "' (C++ code out of date with the spec)");
}
int Attrs::i(const char* name) const { return ints_[index(name)].at(0); }
const std::vector<int>& Attrs::ints(const char* name) const { return ints_[index(name)]; }
double Attrs::f(const char* name) const { return floats_[index(name)]; }
const std::string& Attrs::s(const char* name) const { return strs_[index(name)]; }

bool parse_fields(const OpTable& table, const FieldValue* fields, int n_fields, Attrs* out, std::string* error) {
    Attrs attrs(&table);
    std::vector<bool> seen(table.n_fields, false);
    for (int k = 0; k < n_fields; ++k) {
        const FieldValue& v = fields[k];
        if (v.name == nullptr) {
            if (error) *error = std::string(table.name) + ": a field has no name";
            return false;
        }
        if (!std::strcmp(v.name, "plugin_version") || !std::strcmp(v.name, "plugin_namespace")) continue;
        int idx = -1;
        for (int j = 0; j < table.n_fields; ++j)
            if (!std::strcmp(table.fields[j].name, v.name)) idx = j;
        if (idx < 0) {
            if (error) *error = std::string(table.name) + ": unknown field '" + v.name + "'";
            return false;
        }
        if (seen[idx]) return fail(error, table, table.fields[idx], "is given twice");
        seen[idx] = true;
        if (!set_field(table, idx, v, &attrs, error)) return false;
    }
    for (int j = 0; j < table.n_fields; ++j) {
        if (seen[j]) continue;
        if (table.fields[j].required) return fail(error, table, table.fields[j], "is required but missing");
        set_default(table.fields[j], j, &attrs);
    }
    *out = std::move(attrs);
    return true;
}

size_t serialized_size(const Attrs& a) {
    const OpTable& t = *a.table();
    size_t n = 8;
    for (int j = 0; j < t.n_fields; ++j) {
        switch (t.fields[j].kind) {
        case FieldKind::kInt:
        case FieldKind::kInts: n += 4 + 4 * a.raw_ints()[j].size(); break;
        case FieldKind::kFloat: n += 8; break;
        case FieldKind::kStr: n += 4 + a.raw_strs()[j].size(); break;
        }
    }
    return n;
}

void serialize_attrs(const Attrs& a, void* buffer) {
    const OpTable& t = *a.table();
    char* p = static_cast<char*>(buffer);
    auto put = [&p](const void* src, size_t n) { std::memcpy(p, src, n); p += n; };
    uint32_t head[2] = {kMagic, static_cast<uint32_t>(t.n_fields)};
    put(head, 8);
    for (int j = 0; j < t.n_fields; ++j) {
        switch (t.fields[j].kind) {
        case FieldKind::kInt:
        case FieldKind::kInts: {
            int32_t n = static_cast<int32_t>(a.raw_ints()[j].size());
            put(&n, 4);
            put(a.raw_ints()[j].data(), 4 * n);
            break;
        }
        case FieldKind::kFloat: put(&a.raw_floats()[j], 8); break;
        case FieldKind::kStr: {
            int32_t n = static_cast<int32_t>(a.raw_strs()[j].size());
            put(&n, 4);
            put(a.raw_strs()[j].data(), n);
            break;
        }
        }
    }
}

bool deserialize_attrs(const OpTable& t, const void* data, size_t length, Attrs* out, std::string* error) {
    const char* p = static_cast<const char*>(data);
    const char* end = p + length;
    auto bad = [&](const std::string& why) {
        if (error) *error = std::string(t.name) + ": cannot deserialize: " + why;
        return false;
    };
    if (data == nullptr || length < 8) return bad("buffer too short");
    uint32_t head[2];
    std::memcpy(head, p, 8);
    p += 8;
    if (head[0] != kMagic) return bad("bad magic (not a dynconv plugin blob)");
    if (head[1] != static_cast<uint32_t>(t.n_fields)) return bad("field count differs from this build's spec");
    std::vector<FieldValue> vals(t.n_fields);
    for (int j = 0; j < t.n_fields; ++j) {
        const FieldSpec& f = t.fields[j];
        vals[j].name = f.name;
        if (f.kind == FieldKind::kFloat) {
            if (end - p < 8) return bad("truncated");
            vals[j] = {f.name, ValueType::kFloat64, p, 1};
            p += 8;
            continue;
        }
        if (end - p < 4) return bad("truncated");
        int32_t n;
        std::memcpy(&n, p, 4);
        p += 4;
        size_t bytes = f.kind == FieldKind::kStr ? size_t(n) : 4 * size_t(n);
        if (n < 0 || size_t(end - p) < bytes) return bad("truncated");
        vals[j] = {f.name, f.kind == FieldKind::kStr ? ValueType::kChar : ValueType::kInt32, p, n};
        p += bytes;
    }
    if (p != end) return bad("trailing bytes");
    return parse_fields(t, vals.data(), t.n_fields, out, error);
}

const OpTable* find_op_table(const char* name) {
    for (int k = 0; k < gen::kNumOps; ++k) {
        const OpTable* t = gen::kAllOps[k];
        if (t && (!std::strcmp(t->name, name) || !std::strcmp(t->torch_name, name))) return t;
    }
    return nullptr;
}

} // namespace dynconv
