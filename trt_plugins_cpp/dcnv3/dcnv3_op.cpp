#include "dcnv3/dcnv3_op.h"

#include <memory>

#include "common/cpu_exec.h"

namespace dynconv {

Dcnv3Params dcnv3_params(const Attrs& a) {
    Dcnv3Params p{};
    read_kernel_window(a, &p);
    p.group = a.i("group");
    p.group_channels = a.i("group_channels");
    p.offset_scale = static_cast<float>(a.f("offset_scale"));
    p.remove_center = a.i("remove_center");
    require(!p.remove_center || (p.kh % 2 == 1 && p.kw % 2 == 1 && p.kh * p.kw > 1),
            "DynconvDCNv3: remove_center=1 needs an odd kernel_size larger than 1x1 (it drops the centre tap), got [" +
                std::to_string(p.kh) + ", " + std::to_string(p.kw) + "]");
    p.P = dcnv3_points(p.kh, p.kw, p.remove_center);
    return p;
}

Shape dcnv3_shapes(const std::vector<Shape>& in, Dcnv3Params* p) {
    require(in.size() == 3, "DynconvDCNv3: expects 3 inputs (input, offset, mask)");
    const Shape& x = in[0];
    require(x.size() == 4, "DynconvDCNv3: input must be 4-D NHWC [N, H, W, group*group_channels], got shape " + shape_str(x));
    const int64_t c = int64_t(p->group) * p->group_channels;
    require(x[3] == c, "DynconvDCNv3: input has " + std::to_string(x[3]) + " channels but group*group_channels = " +
                           std::to_string(p->group) + "*" + std::to_string(p->group_channels) + " = " + std::to_string(c));
    const long long ho = conv_out_size(x[1], p->kh, p->sh, p->ph, p->ph, p->dh);
    const long long wo = conv_out_size(x[2], p->kw, p->sw, p->pw, p->pw, p->dw);
    require(ho > 0 && wo > 0 && x[1] > 0 && x[2] > 0,
            "DynconvDCNv3: input " + std::to_string(x[1]) + "x" + std::to_string(x[2]) +
                " is too small for the window (output " + std::to_string(ho) + "x" + std::to_string(wo) + ")");
    p->N = int(x[0]); p->H = int(x[1]); p->W = int(x[2]); p->Ho = int(ho); p->Wo = int(wo);
    const Shape want_off{x[0], ho, wo, int64_t(p->group) * p->P * 2};
    const Shape want_mask{x[0], ho, wo, int64_t(p->group) * p->P};
    const std::string pts = " with P = kh*kw - remove_center = " + std::to_string(p->P);
    require(in[1] == want_off, "DynconvDCNv3: offset shape " + shape_str(in[1]) + " does not match the expected " +
                                   shape_str(want_off) + " (N, Ho, Wo, group*P*2)" + pts);
    require(in[2] == want_mask, "DynconvDCNv3: mask shape " + shape_str(in[2]) + " does not match the expected " +
                                    shape_str(want_mask) + " (N, Ho, Wo, group*P)" + pts);
    return {x[0], ho, wo, c};
}

namespace {

template <int V, int K, bool kVec>
void compute_items(const Dcnv3Params& p, const float* x, const float* offset, const float* mask, float* out) {
    const int chunks = (p.group_channels + V - 1) / V;
    const long long total = static_cast<long long>(p.N) * p.Ho * p.Wo * p.group * chunks;
    // The kernel's flat item loop; odd items take the 64-bit index path so both decompositions are tested.
    for (long long idx = 0; idx < total; ++idx)
        dcnv3_item<V, K, kVec>(x, offset, mask, out, p, chunks, idx, (idx & 1) == 0 && total <= 0xffffffffLL,
                               Dcnv3ScalarLoad<V>{V}, Dcnv3ScalarStore<V>{});
}

//! The staged 3x3 path: the kernel's blocks in turn; odd blocks take the 64-bit index path.
template <int V, bool kVec>
void compute_blocks(const Dcnv3Params& p, const float* x, const float* offset, const float* mask, float* out) {
    const int chunks = (p.group_channels + V - 1) / V;
    const long long total = static_cast<long long>(p.N) * p.Ho * p.Wo * p.group * chunks;
    auto sm = std::make_unique<Dcnv3Smem>();
    for (long long bx = 0; bx * kDcnv3BlockItems < total; ++bx) {
        CpuBlockExec<Dcnv3NoAcc, kDcnv3BlockItems> ex;
        dcnv3_block<V, kVec>(x, offset, mask, out, p, chunks, total, bx, (bx & 1) == 0 && total <= 0xffffffffLL, *sm, ex,
                             Dcnv3ScalarLoad<V>{V}, Dcnv3ScalarStore<V>{});
    }
}

template <int V, bool kVec>
void compute_k(const Dcnv3Params& p, const float* x, const float* offset, const float* mask, float* out) {
    if (p.kh == 3 && p.kw == 3) compute_blocks<V, kVec>(p, x, offset, mask, out);
    else compute_items<V, 0, kVec>(p, x, offset, mask, out);
}

} // namespace

void dcnv3_compute_cpu(const Dcnv3Params& p, const float* x, const float* offset, const float* mask, float* out) {
    // The decomposition the FP16 kernel would pick with aligned pointers and no occupancy limit, so the
    // vector (V = 8/4/2) and scalar-tail paths of the shared gather are exercised by the CPU tests.
    const long long slots = static_cast<long long>(p.N) * p.Ho * p.Wo * p.group;
    const Dcnv3Plan plan = dcnv3_plan(p.group_channels, 2, 16, slots, 0);
    if (plan.vec && plan.v == 8) compute_k<8, true>(p, x, offset, mask, out);
    else if (plan.vec && plan.v == 4) compute_k<4, true>(p, x, offset, mask, out);
    else if (plan.vec) compute_k<2, true>(p, x, offset, mask, out);
    else if (plan.v == 4) compute_k<4, false>(p, x, offset, mask, out);
    else compute_k<1, false>(p, x, offset, mask, out);
}

Shape dcnv3_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out) {
    Dcnv3Params p = dcnv3_params(a);
    Shape o = dcnv3_shapes(shapes, &p);
    if (out) dcnv3_compute_cpu(p, in[0], in[1], in[2], out);
    return o;
}

} // namespace dynconv
