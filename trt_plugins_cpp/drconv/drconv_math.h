// DRConv: out[n,o,i,j] = sum_{c,u,v} filters[n,t,o,c,u,v] * x[n,c,i*sh-ph+u*dh, j*sw-pw+v*dw] (zero padding)
// with t = argmax_t guide[n,t,i,j] (first maximum wins). Params and the region rule; the convolution
// itself is the region-sorted GEMM of drconv_tiled.h.
#pragma once

#include "common/math_common.h"
#include "common/trace.h"

namespace dynconv {

struct DrconvParams {
    int kh, kw, sh, sw, ph, pw, dh, dw, m;
    int N, C, H, W, O, Ho, Wo;
};

//! Region index of pixel (n, i, j) from guide [N, m, Ho, Wo].
template <typename T>
DYNCONV_HD int drconv_region(const T* guide, const DrconvParams& p, int n, int i, int j) {
    const long long hw = static_cast<long long>(p.Ho) * p.Wo;
    const T* g = guide + static_cast<long long>(n) * p.m * hw + static_cast<long long>(i) * p.Wo + j;
    int best = 0;
    float vbest = to_float(DYNCONV_LDG(g));
    for (int t = 1; t < p.m; ++t) {
        const float v = to_float(DYNCONV_LDG(g + t * hw));
        if (v > vbest) { vbest = v; best = t; }
    }
    return best;
}

} // namespace dynconv
