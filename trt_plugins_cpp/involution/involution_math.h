// Involution per-output math: out[n,c,i,j] = sum_{u,v} w[n, g*kh*kw + u*kw + v, i, j] * x[n, c, i*sh-ph+u*dh, j*sw-pw+v*dw].
#pragma once

#include "common/math_common.h"
#include "common/pixel_filter_strip.h"
#include "common/trace.h"

namespace dynconv {

struct InvolutionParams {
    int kh, kw, sh, sw, ph, pw, dh, dw, groups;
    int N, C, H, W, Ho, Wo;
};

//! One output element, FP32 accumulation; x: [N,C,H,W], w: [N, groups*kh*kw, Ho, Wo] (NCHW, contiguous).
template <typename T>
DYNCONV_HD float involution_point(const T* x, const T* w, const InvolutionParams& p, int n, int c, int i, int j) {
    const int g = c / (p.C / p.groups);
    const long long hw_out = static_cast<long long>(p.Ho) * p.Wo;
    const T* wp = w + (static_cast<long long>(n) * p.groups * p.kh * p.kw + static_cast<long long>(g) * p.kh * p.kw) * hw_out
                    + static_cast<long long>(i) * p.Wo + j;
    const T* xp = x + (static_cast<long long>(n) * p.C + c) * p.H * static_cast<long long>(p.W);
    float acc = 0.f;
    for (int u = 0; u < p.kh; ++u) {
        const int y = i * p.sh - p.ph + u * p.dh;
        if (y < 0 || y >= p.H) continue;
        for (int v = 0; v < p.kw; ++v) {
            const int xx = j * p.sw - p.pw + v * p.dw;
            if (xx < 0 || xx >= p.W) continue;
            acc += to_float(DYNCONV_LDG(wp + (u * p.kw + v) * hw_out)) * to_float(DYNCONV_LDG(xp + static_cast<long long>(y) * p.W + xx));
        }
    }
    return acc;
}

DYNCONV_HD StripGeom involution_geom(const InvolutionParams& p) {
    return {p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, p.N, p.C, p.H, p.W, p.Ho, p.Wo, p.groups};
}

//! Output element idx of the flat NCHW output (j fastest): the per-thread work of the kernel for kernel
//! sizes without a strip body (`narrow`: see split_nchw_index).
template <typename T>
DYNCONV_HD void involution_item(const T* x, const T* w, T* out, const InvolutionParams& p, long long idx, bool narrow) {
    const NchwIndex at = split_nchw_index(idx, p.C, p.Ho, p.Wo, narrow);
    DYNCONV_STG(out + idx, from_float<T>(involution_point(x, w, p, at.n, at.c, at.i, at.j)));
}

} // namespace dynconv
