// Involution per-output math: out[n,c,i,j] = sum_{u,v} w[n, g*kh*kw + u*kw + v, i, j] * x[n, c, i*sh-ph+u*dh, j*sw-pw+v*dw].
#pragma once

#include "common/math_common.h"
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

//! Output element idx of the flat NCHW output (j fastest): the kernel's per-thread work. `narrow`: the
//! output has fewer than 2^32 elements, so the index splits with 32-bit divisions (64-bit ones are
//! software loops on GPUs, several times slower).
template <typename T>
DYNCONV_HD void involution_item(const T* x, const T* w, T* out, const InvolutionParams& p, long long idx, bool narrow) {
    int n, c, i, j;
    if (narrow) {
        const unsigned int q = static_cast<unsigned int>(idx), row = q / unsigned(p.Wo), plane = row / unsigned(p.Ho);
        j = int(q - row * unsigned(p.Wo));
        i = int(row - plane * unsigned(p.Ho));
        n = int(plane / unsigned(p.C));
        c = int(plane - unsigned(n) * unsigned(p.C));
    } else {
        const long long row = idx / p.Wo, plane = row / p.Ho;
        j = int(idx - row * p.Wo);
        i = int(row - plane * p.Ho);
        n = int(plane / p.C);
        c = int(plane - static_cast<long long>(n) * p.C);
    }
    DYNCONV_STG(out + idx, from_float<T>(involution_point(x, w, p, n, c, i, j)));
}

} // namespace dynconv
