// DRConv per-output math: t = argmax_t guide[n,t,i,j] (first maximum wins),
// out[n,o,i,j] = sum_{c,u,v} filters[n,t,o,c,u,v] * x[n,c,i*sh-ph+u*dh, j*sw-pw+v*dw] (zero padding).
#pragma once

#include "common/math_common.h"

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
    float vbest = to_float(g[0]);
    for (int t = 1; t < p.m; ++t) {
        const float v = to_float(g[t * hw]);
        if (v > vbest) { vbest = v; best = t; }
    }
    return best;
}

//! x [N,C,H,W], filters [N,m,O,C,kh,kw]; FP32 accumulation.
template <typename T>
DYNCONV_HD float drconv_point(const T* x, const T* guide, const T* filters, const DrconvParams& p, int n, int o, int i, int j) {
    const int t = drconv_region(guide, p, n, i, j);
    const long long ksz = static_cast<long long>(p.kh) * p.kw;
    const T* f = filters + ((static_cast<long long>(n) * p.m + t) * p.O + o) * p.C * ksz;
    const T* xn = x + static_cast<long long>(n) * p.C * p.H * p.W;
    float acc = 0.f;
    for (int c = 0; c < p.C; ++c) {
        const T* xc = xn + static_cast<long long>(c) * p.H * p.W;
        const T* fc = f + c * ksz;
        for (int u = 0; u < p.kh; ++u) {
            const int y = i * p.sh - p.ph + u * p.dh;
            if (y < 0 || y >= p.H) continue;
            for (int v = 0; v < p.kw; ++v) {
                const int xx = j * p.sw - p.pw + v * p.dw;
                if (xx < 0 || xx >= p.W) continue;
                acc += to_float(fc[u * p.kw + v]) * to_float(xc[static_cast<long long>(y) * p.W + xx]);
            }
        }
    }
    return acc;
}

} // namespace dynconv
