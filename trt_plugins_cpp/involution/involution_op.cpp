#include "involution/involution_op.h"

namespace dynconv {

InvolutionParams involution_params(const Attrs& a) {
    InvolutionParams p{};
    read_kernel_window(a, &p);
    p.groups = a.i("groups");
    return p;
}

Shape involution_shapes(const std::vector<Shape>& in, InvolutionParams* p) {
    require(in.size() == 2, "DynconvInvolution: expects 2 inputs (input, weight)");
    const Shape& x = in[0];
    const Shape& w = in[1];
    require(x.size() == 4, "DynconvInvolution: input must be 4-D NCHW, got " + shape_str(x));
    require(w.size() == 4, "DynconvInvolution: weight must be 4-D, got " + shape_str(w));
    require(x[1] % p->groups == 0, "DynconvInvolution: channels not divisible by groups");
    p->N = int(x[0]); p->C = int(x[1]); p->H = int(x[2]); p->W = int(x[3]);
    p->Ho = int(conv_out_size(x[2], p->kh, p->sh, p->ph, p->ph, p->dh));
    p->Wo = int(conv_out_size(x[3], p->kw, p->sw, p->pw, p->pw, p->dw));
    require(p->Ho > 0 && p->Wo > 0, "DynconvInvolution: input too small for the window");
    Shape want{x[0], int64_t(p->groups) * p->kh * p->kw, p->Ho, p->Wo};
    require(w == want, "DynconvInvolution: weight shape " + shape_str(w) + " != expected " + shape_str(want));
    return {x[0], x[1], p->Ho, p->Wo};
}

Shape involution_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out) {
    InvolutionParams p = involution_params(a);
    Shape o = involution_shapes(shapes, &p);
    if (!out) return o;
    // the kernel's work decomposition (common/pixel_filter_strip.h), same item bodies
    strip_run_cpu<false>(in[0], in[1], nullptr, 0, out, involution_geom(p),
                         [&](int n, int c, int i, int j) { return involution_point(in[0], in[1], p, n, c, i, j); });
    return o;
}

} // namespace dynconv
