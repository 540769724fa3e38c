#include "drconv/drconv_op.h"

#include <climits>

#include "common/cpu_exec.h"
#include "drconv/drconv_tiled.h"

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
    // 32-bit limits of the kernels' indexing: pixel lists, tiles, the reduction length, grid.y.
    require(x[0] * p->Ho * p->Wo < INT_MAX / 2 && x[0] * p->m < INT_MAX / 2 && x[1] * p->kh * p->kw < INT_MAX &&
                p->O / 16 < 65535,
            "DynconvDRConv: tensor too large for 32-bit pixel/tile indexing");
    return {x[0], p->O, p->Ho, p->Wo};
}

namespace {

using ListExec = CpuBlockExec<NoAcc, kDrChunk>;

void list_pixels(const DrconvParams& p, const float* guide, const DrLists& l, int bn) {
    const long long chunks = drconv_chunks(p);
    DrChunkSmem sm;
    for (int n = 0; n < p.N; ++n)
        for (long long c = 0; c < chunks; ++c) {
            ListExec ex;
            ex.each([&](int t, NoAcc&) { dr_chunk_regions(p, guide, l, int(c), n, t, sm); });
            ex.each([&](int t, NoAcc&) { dr_chunk_count(p, l, int(c), n, t, sm); });
        }
    CpuBlockExec<DrNoAcc, kDrChunk> scan;
    auto scan_sm = std::make_unique<DrScanSmem>();
    dr_scan_block(p, l, bn, *scan_sm, scan);
    for (int n = 0; n < p.N; ++n)
        for (long long c = 0; c < chunks; ++c) {
            ListExec ex;
            ex.each([&](int t, NoAcc&) { dr_chunk_recall(p, l, int(c), n, t, sm); });
            ex.each([&](int t, NoAcc&) { dr_chunk_scatter(p, l, int(c), n, t, sm); });
        }
}

template <class Cfg>
void run_gemm(const DrconvParams& p, const float* x, const float* filters, float* out, const DrLists& l) {
    run_cpu_grid<DrGemmSmem<Cfg>, CpuBlockExec<TileAcc<Cfg>, Cfg::kThreads>>(
        drconv_max_tiles(p, Cfg::BN), (p.O + Cfg::BM - 1) / Cfg::BM,
        [&](int bx, int by, auto& sm, auto& ex) { drconv_gemm_block<Cfg, float>(p, x, filters, out, l, bx, by, sm, ex); });
}

template <class Cfg>
void run_mma(const DrconvParams& p, const float* x, const float* filters, float* out, const DrLists& l) {
    run_cpu_grid<DrMmaSmem<Cfg>, DrMmaExecCpu<Cfg>>(
        drconv_max_tiles(p, Cfg::BN), (p.O + Cfg::BM - 1) / Cfg::BM,
        [&](int bx, int by, auto& sm, auto& ex) { drconv_mma_block<Cfg, float>(p, x, filters, out, l, bx, by, sm, ex); });
}

Shape run(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out, bool fp16_io) {
    DrconvParams p = drconv_params(a);
    Shape o = drconv_shapes(shapes, &p);
    if (!out) return o;
    const DrKernel kernel = drconv_kernel_choice(p, fp16_io, g_cpu_sm_count);
    std::vector<int> workspace(static_cast<size_t>(drconv_workspace_ints(p)));
    const DrLists lists = drconv_lists(p, workspace.data());
    list_pixels(p, in[1], lists, drconv_tile_pixels(kernel));
    switch (kernel) {
    case DrKernel::kFmaLarge: run_gemm<DrTileLarge>(p, in[0], in[2], out, lists); break;
    case DrKernel::kFmaLargeW: run_gemm<DrTileLargeW>(p, in[0], in[2], out, lists); break;
    case DrKernel::kFmaSmall: run_gemm<DrTileSmall>(p, in[0], in[2], out, lists); break;
    case DrKernel::kMmaWide: run_mma<DrMmaTileWide>(p, in[0], in[2], out, lists); break;
    case DrKernel::kMmaTall: run_mma<DrMmaTileTall>(p, in[0], in[2], out, lists); break;
    case DrKernel::kMmaNarrow: run_mma<DrMmaTileNarrow>(p, in[0], in[2], out, lists); break;
    case DrKernel::kMmaShort: run_mma<DrMmaTileShort>(p, in[0], in[2], out, lists); break;
    }
    return o;
}

} // namespace

Shape drconv_run_cpu(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in, float* out) {
    return run(a, shapes, in, out, false);
}

Shape drconv_run_cpu_fp16(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in,
                          float* out) {
    return run(a, shapes, in, out, true);
}

} // namespace dynconv
