// DDF per-output math: out[n,c,i,j] = sum_{u,v} x[n,c,i*s+(u-r)*d, j*s+(v-r)*d] * F, F = Fs*Fc ('mul') or Fs+Fc ('add');
// taps outside the image contribute 0 in both modes.
#pragma once

#include "common/math_common.h"
#include "common/pixel_filter_strip.h"
#include "common/trace.h"

namespace dynconv {

struct DdfParams {
    int k, s, d, add;  // add: 0 = 'mul', 1 = 'add'
    int N, C, H, W, Ho, Wo;
};

//! x [N,C,H,W], fc [N,C,k,k], fs [N,k*k,Ho,Wo]; FP32 accumulation.
template <typename T>
DYNCONV_HD float ddf_point(const T* x, const T* fc, const T* fs, const DdfParams& p, int n, int c, int i, int j) {
    const int r = (p.k - 1) / 2;
    const long long hw_out = static_cast<long long>(p.Ho) * p.Wo;
    const T* fsp = fs + static_cast<long long>(n) * p.k * p.k * hw_out + static_cast<long long>(i) * p.Wo + j;
    const T* fcp = fc + (static_cast<long long>(n) * p.C + c) * p.k * p.k;
    const T* xp = x + (static_cast<long long>(n) * p.C + c) * p.H * static_cast<long long>(p.W);
    float acc = 0.f;
    for (int u = 0; u < p.k; ++u) {
        const int y = i * p.s + (u - r) * p.d;
        if (y < 0 || y >= p.H) continue;
        for (int v = 0; v < p.k; ++v) {
            const int xx = j * p.s + (v - r) * p.d;
            if (xx < 0 || xx >= p.W) continue;
            const int t = u * p.k + v;
            const float a = to_float(DYNCONV_LDG(fsp + t * hw_out));
            const float b = to_float(DYNCONV_LDG(fcp + t));
            acc += (p.add ? a + b : a * b) * to_float(DYNCONV_LDG(xp + static_cast<long long>(y) * p.W + xx));
        }
    }
    return acc;
}

//! The window as the strip decomposition sees it: tap (u, v) at (i*s + (u-r)*d, j*s + (v-r)*d).
DYNCONV_HD StripGeom ddf_geom(const DdfParams& p) {
    const int pad = p.d * ((p.k - 1) / 2);
    return {p.k, p.k, p.s, p.s, pad, pad, p.d, p.d, p.N, p.C, p.H, p.W, p.Ho, p.Wo, 1};
}

//! Output element idx of the flat NCHW output (j fastest): the per-thread work of the kernel for kernel
//! sizes without a strip body (`narrow`: see split_nchw_index).
template <typename T>
DYNCONV_HD void ddf_item(const T* x, const T* fc, const T* fs, T* out, const DdfParams& p, long long idx, bool narrow) {
    const NchwIndex at = split_nchw_index(idx, p.C, p.Ho, p.Wo, narrow);
    DYNCONV_STG(out + idx, from_float<T>(ddf_point(x, fc, fs, p, at.n, at.c, at.i, at.j)));
}

} // namespace dynconv
