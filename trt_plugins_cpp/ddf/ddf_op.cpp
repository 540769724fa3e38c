#include "ddf/ddf_op.h"

namespace dynconv {

DdfParams ddf_params(const Attrs& a) {
    DdfParams p{};
    p.k = a.i("kernel_size");
    p.s = a.i("stride");
    p.d = a.i("dilation");
    p.add = a.s("combine") == "add" ? 1 : 0;
    require(p.k % 2 == 1, "DynconvDDF: kernel_size must be odd, got " + std::to_string(p.k));
    return p;
}

Shape ddf_shapes(const std::vector<Shape>& in, DdfParams* p) {
    require(in.size() == 3, "DynconvDDF: expects 3 inputs (input, channel_filter, spatial_filter)");
    const Shape& x = in[0];
    require(x.size() == 4, "DynconvDDF: input must be 4-D NCHW, got " + shape_str(x));
    const int pad = p->d * (p->k - 1) / 2;
    p->N = int(x[0]); p->C = int(x[1]); p->H = int(x[2]); p->W = int(x[3]);
    p->Ho = int(conv_out_size(x[2], p->k, p->s, pad, pad, p->d));
    p->Wo = int(conv_out_size(x[3], p->k, p->s, pad, pad, p->d));
    Shape want_fc{x[0], x[1], p->k, p->k};
    Shape want_fs{x[0], int64_t(p->k) * p->k, p->Ho, p->Wo};
    require(in[1] == want_fc, "DynconvDDF: channel_filter shape " + shape_str(in[1]) + " != expected " + shape_str(want_fc));
    require(in[2] == want_fs, "DynconvDDF: spatial_filter shape " + shape_str(in[2]) + " != expected " + shape_str(want_fs));
    return {x[0], x[1], p->Ho, p->Wo};
}

Shape ddf_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out) {
    DdfParams p = ddf_params(a);
    Shape o = ddf_shapes(shapes, &p);
    if (!out) return o;
    // the kernel's work decomposition (common/pixel_filter_strip.h), same item bodies
    strip_run_cpu<true>(in[0], in[2], in[1], p.add, out, ddf_geom(p),
                        [&](int n, int c, int i, int j) { return ddf_point(in[0], in[1], in[2], p, n, c, i, j); });
    return o;
}

} // namespace dynconv
