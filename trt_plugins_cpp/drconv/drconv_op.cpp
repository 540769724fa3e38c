#include "drconv/drconv_op.h"

namespace dynconv {

DrconvParams drconv_params(const Attrs& a) {
    DrconvParams p{};
    read_kernel_window(a, &p);
    p.m = a.i("region_num");
    return p;
}

Shape drconv_shapes(const std::vector<Shape>& in, DrconvParams* p) {
    require(in.size() == 3, "DynconvDRConv: expects 3 inputs (input, guide, filters)");
    const Shape& x = in[0];
    require(x.size() == 4, "DynconvDRConv: input must be 4-D NCHW, got " + shape_str(x));
    require(in[2].size() == 6, "DynconvDRConv: filters must be 6-D [N, m, O, C, kh, kw], got " + shape_str(in[2]));
    p->N = int(x[0]); p->C = int(x[1]); p->H = int(x[2]); p->W = int(x[3]); p->O = int(in[2][2]);
    p->Ho = int(conv_out_size(x[2], p->kh, p->sh, p->ph, p->ph, p->dh));
    p->Wo = int(conv_out_size(x[3], p->kw, p->sw, p->pw, p->pw, p->dw));
    require(p->Ho > 0 && p->Wo > 0, "DynconvDRConv: input too small for the window");
    Shape want_f{x[0], p->m, p->O, x[1], p->kh, p->kw};
    Shape want_g{x[0], p->m, p->Ho, p->Wo};
    require(in[2] == want_f, "DynconvDRConv: filters shape " + shape_str(in[2]) + " != expected " + shape_str(want_f));
    require(in[1] == want_g, "DynconvDRConv: guide shape " + shape_str(in[1]) + " != expected " + shape_str(want_g));
    return {x[0], p->O, p->Ho, p->Wo};
}

Shape drconv_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out) {
    DrconvParams p = drconv_params(a);
    Shape o = drconv_shapes(shapes, &p);
    if (!out) return o;
    for (int n = 0; n < p.N; ++n)
        for (int oc = 0; oc < p.O; ++oc)
            for (int i = 0; i < p.Ho; ++i)
                for (int j = 0; j < p.Wo; ++j) *out++ = drconv_point(in[0], in[1], in[2], p, n, oc, i, j);
    return o;
}

} // namespace dynconv
