// Host-side description of one op call (shapes + attributes), shared by plugins and the CPU reference.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/fields.h"
#include "common/math_common.h"

namespace dynconv {

using Shape = std::vector<int64_t>;  //!< empty = absent optional input

//! SMs of the device whose tile choices the CPU runs and traces emulate (test hook dynconv_cpuref_set_sm_count;
//! 0: the largest tiles, regardless of how many SMs their grids fill).
inline int g_cpu_sm_count = kSmCountH200;

//! Throws ShapeError with a readable message when shapes do not fit the attributes.
struct ShapeError : std::exception {
    explicit ShapeError(std::string m) : msg(std::move(m)) {}
    const char* what() const noexcept override { return msg.c_str(); }
    std::string msg;
};

inline void require(bool ok, const std::string& message) {
    if (!ok) throw ShapeError(message);
}

inline std::string shape_str(const Shape& s) {
    std::string r = "[";
    for (size_t k = 0; k < s.size(); ++k) r += (k ? ", " : "") + std::to_string(s[k]);
    return r + "]";
}

//! True when the optional input `name` is flagged present by its `with_<name>` field.
inline bool input_present(const Attrs& a, const char* name) { return a.i((std::string("with_") + name).c_str()) != 0; }

//! Copy the 2-int attributes stride, padding and dilation (H first) into the sh/sw, ph/pw, dh/dw members of
//! an op's params.
template <class Params>
void read_conv_window(const Attrs& a, Params* p) {
    const std::vector<int>& s = a.ints("stride");
    const std::vector<int>& pd = a.ints("padding");
    const std::vector<int>& d = a.ints("dilation");
    p->sh = s[0]; p->sw = s[1];
    p->ph = pd[0]; p->pw = pd[1];
    p->dh = d[0]; p->dw = d[1];
}

//! read_conv_window plus the 2-int kernel_size into kh/kw.
template <class Params>
void read_kernel_window(const Attrs& a, Params* p) {
    const std::vector<int>& k = a.ints("kernel_size");
    p->kh = k[0]; p->kw = k[1];
    read_conv_window(a, p);
}

} // namespace dynconv
