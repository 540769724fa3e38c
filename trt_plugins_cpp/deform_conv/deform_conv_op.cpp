#include "deform_conv/deform_conv_op.h"

#include <climits>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "common/cpu_exec.h"

namespace dynconv {
namespace {

constexpr const char* kName = "DynconvDeformConv2d";

//! The device shared-memory limit whose FP16 kernel choice the CPU runs emulate, and whether they run with
//! the plugin's workspace (else as deform_conv_forward without one, e.g. the mmcv-compat plugin): test hooks.
int g_cpu_smem_optin = kDcSmemOptinSm90;
bool g_cpu_workspace = true;

//! The NHWC-copy block over its whole grid for params q (the input copy, or the weight transpose).
void run_nhwc_copy(const DeformConvParams& q, const float* src, float* dst) {
    run_cpu_grid<DcNhwcSmem<float>, CpuBlockExec<DcNoAcc, DcNhwcTile::kThreads>>(
        dc_nhwc_grid_x(q), dc_nhwc_grid_y(q),
        [&](int bx, int by, auto& sm, auto& ex) { deform_conv_nhwc_block<float>(q, src, dst, bx, by, sm, ex); });
}

//! The FP32-FMA tile Cfg on the transposed weights (what the plugin runs with its workspace).
template <class Cfg>
void run_tiled(const DeformConvParams& p, const DcPtrs<float>& io) {
    std::vector<float> wt, xt;
    if (g_cpu_workspace) {  // as the plugin with its workspace: transposed weights, NHWC input
        wt.resize(size_t(p.Cout) * (p.Cin / p.groups) * p.kh * p.kw);
        run_nhwc_copy(dc_weight_transpose_params(p), io.weight, wt.data());
        xt.resize(size_t(p.N) * p.Cin * p.H * p.W);
        run_nhwc_copy(p, io.x, xt.data());
    }
    const float* wt_ptr = g_cpu_workspace ? wt.data() : nullptr;
    const float* xt_ptr = g_cpu_workspace ? xt.data() : nullptr;
    run_cpu_grid<DcSmem<Cfg>, CpuBlockExec<DcAcc<Cfg>, Cfg::kThreads>>(
        dc_grid_x<Cfg>(p), dc_grid_y<Cfg>(p),
        [&](int bx, int by, auto& sm, auto& ex) { deform_conv_block<Cfg, float>(p, io, wt_ptr, xt_ptr, bx, by, sm, ex); });
}

//! The slab kernel of tile Cfg on the NHWC copy of the input (what the plugin runs with its workspace).
template <class Cfg>
void run_slab(const DeformConvParams& p, const DcPtrs<float>& io) {
    using Exec = CpuMmaExec<MmaWarpAccCpu<Cfg::WM, Cfg::WN>, Cfg::kWarps, Cfg::kThreads>;
    if (!g_cpu_workspace) {  // sample the NCHW input
        run_cpu_grid<DcSlabSmem<Cfg>, Exec>(dc_grid_x<Cfg>(p), dc_grid_y<Cfg>(p), [&](int bx, int by, auto& sm, auto& ex) {
            deform_conv_slab_block<Cfg, false, float>(p, io, nullptr, bx, by, sm, ex);
        });
        return;
    }
    std::vector<float> xt(size_t(p.N) * p.Cin * p.H * p.W);
    run_nhwc_copy(p, io.x, xt.data());
    run_cpu_grid<DcSlabSmem<Cfg>, Exec>(dc_grid_x<Cfg>(p), dc_grid_y<Cfg>(p), [&](int bx, int by, auto& sm, auto& ex) {
        deform_conv_slab_block<Cfg, true, float>(p, io, xt.data(), bx, by, sm, ex);
    });
}

} // namespace

DeformConvParams deform_conv_params(const Attrs& a) {
    DeformConvParams p{};
    read_conv_window(a, &p);
    p.groups = a.i("groups");
    p.offset_groups = a.i("offset_groups");
    p.with_mask = a.i("with_mask");
    p.with_bias = a.i("with_bias");
    return p;
}

Shape deform_conv_shapes(const std::vector<Shape>& in, DeformConvParams* p) {
    const std::string name = kName;
    require(in.size() == 5, name + ": expects 5 spec inputs (input, weight, offset, mask, bias)");
    const Shape& x = in[0];
    const Shape& w = in[1];
    const Shape& off = in[2];
    require(x.size() == 4, name + ": input must be 4-D NCHW, got shape " + shape_str(x));
    require(w.size() == 4, name + ": weight must be 4-D [Cout, Cin/groups, kh, kw], got shape " + shape_str(w));
    require(in[3].empty() == !p->with_mask, name + ": mask presence disagrees with with_mask=" + std::to_string(p->with_mask));
    require(in[4].empty() == !p->with_bias, name + ": bias presence disagrees with with_bias=" + std::to_string(p->with_bias));
    const int64_t g = p->groups, og = p->offset_groups;
    const int64_t cin = x[1], cout = w[0], kh = w[2], kw = w[3];
    require(cin % g == 0, name + ": input channels " + std::to_string(cin) + " are not divisible by groups=" + std::to_string(g));
    require(cout % g == 0, name + ": output channels " + std::to_string(cout) + " (weight.shape[0]) are not divisible by groups=" +
                               std::to_string(g));
    require(w[1] * g == cin, name + ": weight.shape[1]=" + std::to_string(w[1]) + " must be input channels / groups = " +
                                 std::to_string(cin) + "/" + std::to_string(g));
    require(cin % og == 0, name + ": input channels " + std::to_string(cin) + " are not divisible by offset_groups=" +
                               std::to_string(og));
    require(kh > 0 && kw > 0, name + ": empty kernel in weight shape " + shape_str(w));
    const int64_t ho = conv_out_size(x[2], int(kh), p->sh, p->ph, p->ph, p->dh);
    const int64_t wo = conv_out_size(x[3], int(kw), p->sw, p->pw, p->pw, p->dw);
    require(ho > 0 && wo > 0, name + ": input " + std::to_string(x[2]) + "x" + std::to_string(x[3]) +
                                  " is too small for the window (output " + std::to_string(ho) + "x" + std::to_string(wo) + ")");
    Shape want{x[0], 2 * og * kh * kw, ho, wo};
    require(off == want, name + ": offset shape " + shape_str(off) + " does not match the expected " + shape_str(want) +
                             " (N, 2*offset_groups*kh*kw, Ho, Wo)");
    if (p->with_mask) {
        Shape wm{x[0], og * kh * kw, ho, wo};
        require(in[3] == wm, name + ": mask shape " + shape_str(in[3]) + " does not match the expected " + shape_str(wm) +
                                 " (N, offset_groups*kh*kw, Ho, Wo)");
    }
    if (p->with_bias)
        require(in[4] == Shape{cout}, name + ": bias shape " + shape_str(in[4]) + " does not match the expected [" +
                                          std::to_string(cout) + "] (Cout)");
    // 32-bit limits of the kernel's indexing: plane offsets, pixel count, grid.y.
    require(x[2] * x[3] < INT_MAX && x[0] * ho * wo < INT_MAX && cin < INT_MAX / 2,
            name + ": tensor too large for 32-bit plane/pixel indexing");
    p->N = int(x[0]); p->Cin = int(cin); p->H = int(x[2]); p->W = int(x[3]);
    p->Cout = int(cout); p->kh = int(kh); p->kw = int(kw); p->Ho = int(ho); p->Wo = int(wo);
    return {x[0], cout, ho, wo};
}

Shape deform_conv_run_params(DeformConvParams p, const std::vector<Shape>& shapes, const std::vector<const float*>& in,
                             float* out, bool fp16_io) {
    Shape o = deform_conv_shapes(shapes, &p);
    if (!out) return o;
    DcPtrs<float> io{in[0], in[1], in[2], p.with_mask ? in[3] : nullptr, p.with_bias ? in[4] : nullptr, out};
    switch (deform_conv_kernel_choice(p, fp16_io, g_cpu_smem_optin, g_cpu_sm_count)) {
    case DcKernel::kFma256W: run_tiled<DcTile256W>(p, io); break;
    case DcKernel::kFma128W: run_tiled<DcTile128W>(p, io); break;
    case DcKernel::kFmaLargeW: run_tiled<DcTileLargeW>(p, io); break;
    case DcKernel::kFma256: run_tiled<DcTile256>(p, io); break;
    case DcKernel::kFma128: run_tiled<DcTile128>(p, io); break;
    case DcKernel::kFmaLarge: run_tiled<DcTileLarge>(p, io); break;
    case DcKernel::kFmaMedium: run_tiled<DcTileMedium>(p, io); break;
    case DcKernel::kFmaSmall: run_tiled<DcTileSmall>(p, io); break;
    case DcKernel::kSlabWide: run_slab<DcSlabWide>(p, io); break;
    case DcKernel::kSlabMid: run_slab<DcSlabMid>(p, io); break;
    case DcKernel::kSlabTall: run_slab<DcSlabTall>(p, io); break;
    case DcKernel::kSlabMid64: run_slab<DcSlabMid64>(p, io); break;
    case DcKernel::kSlabCompact: run_slab<DcSlabCompact>(p, io); break;
    case DcKernel::kSlabTall256: run_slab<DcSlabTall256>(p, io); break;
    }
    return o;
}

Shape deform_conv_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out) {
    return deform_conv_run_params(deform_conv_params(a), shapes, in, out);
}

Shape deform_conv_run_cpu_fp16(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in,
                               float* out) {
    return deform_conv_run_params(deform_conv_params(a), shapes, in, out, true);
}

} // namespace dynconv

//! Test hook (CPU reference library): CPU runs of FP16 I/O pick the kernels a device with `bytes` of
//! opt-in shared memory per block runs (e.g. 65536: sm_75, 101376: sm_86); 0 restores sm_90's limit.
extern "C" void dynconv_cpuref_deform_conv_set_smem_optin(int bytes) {
    dynconv::g_cpu_smem_optin = bytes > 0 ? bytes : dynconv::kDcSmemOptinSm90;
}

//! Test hook (CPU reference library): 0 runs the kernels as deform_conv_forward does without a workspace
//! (NCHW gather, untransposed weights); 1 (the default) with the plugin's workspace.
extern "C" void dynconv_cpuref_deform_conv_set_workspace(int on) { dynconv::g_cpu_workspace = on != 0; }

//! Test hook (CPU reference library): the params the spec's fields map to, as 12 ints
//! (kh, kw, sh, sw, ph, pw, dh, dw, groups, offset_groups, with_mask, with_bias; kh/kw are 0 until shapes
//! are known). Returns 0, or -1 with the field error in `err`.
extern "C" int dynconv_cpuref_deform_conv_params(const dynconv::FieldValue* fields, int n_fields, int* out12, char* err,
                                                 int errlen) {
    using namespace dynconv;
    try {
        const OpTable* t = find_op_table("deform_conv2d");
        if (!t) throw std::runtime_error("no deform_conv2d table in this build");
        Attrs a;
        std::string e;
        if (!parse_fields(*t, fields, n_fields, &a, &e)) throw std::runtime_error(e);
        const DeformConvParams p = deform_conv_params(a);
        const int v[12] = {p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.dh, p.dw, p.groups, p.offset_groups, p.with_mask, p.with_bias};
        for (int k = 0; k < 12; ++k) out12[k] = v[k];
        return 0;
    } catch (const std::exception& ex) {
        if (err && errlen > 0) std::snprintf(err, size_t(errlen), "%s", ex.what());
        return -1;
    }
}
