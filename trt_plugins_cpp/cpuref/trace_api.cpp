// extern "C" tracing API of libdynconv_cpuref.so (dynconv.plugins.perfmodel): runs a sample of the blocks
// of each kernel launch an op makes, with the block bodies the CUDA kernels compile, under the access
// counter of common/trace_counter.h, and returns the counters as JSON.
//
// Scaling: blocks of one launch do the same work on different tiles, so the counters of the traced blocks
// (spread evenly over the grid) times blocks_total / blocks_traced estimate the launch; the DRAM footprint
// is reported for the traced blocks only (the model takes the compulsory bytes from the tensor sizes).
// FP16 launches are traced on _Float16 copies of the inputs so addresses have the GPU's element size.
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cpu_exec.h"
#include "common/fields.h"
#include "common/trace_counter.h"
#include "cpuref/ops.h"
#include "drconv/drconv_tiled.h"

using namespace dynconv;

namespace {

//! 256-byte aligned storage of n elements (as cudaMalloc gives: sector and bank counts depend on it).
template <typename T>
struct AlignedArray {
    std::vector<T> storage;
    T* data = nullptr;
    explicit AlignedArray(int64_t n) : storage(static_cast<size_t>(n) + 256 / sizeof(T), T(0)) {
        data = storage.data();
        while (reinterpret_cast<uintptr_t>(data) % 256) ++data;
    }
};

//! Host buffers of one element type: the inputs converted from FP32, and the output.
template <typename T>
struct Buffers {
    std::vector<std::unique_ptr<AlignedArray<T>>> in;
    AlignedArray<T> out_array;
    T* out;
    Buffers(const std::vector<const float*>& src, const std::vector<Shape>& shapes, int64_t out_elems)
        : out_array(out_elems), out(out_array.data) {
        for (size_t k = 0; k < src.size(); ++k) {
            int64_t n = shapes[k].empty() ? 0 : 1;
            for (int64_t d : shapes[k]) n *= d;
            in.push_back(n ? std::make_unique<AlignedArray<T>>(n) : nullptr);
            for (int64_t e = 0; e < n; ++e) in.back()->data[e] = static_cast<T>(src[k][e]);
        }
    }
    const T* ptr(size_t k) const { return in[k] ? in[k]->data : nullptr; }
};

//! Up to `picks` block indices, one in each of `picks` equal strata of [0, total). The position inside stratum k
//! is the fractional part of (k + 1) x the golden ratio: never the stratum's start or centre, which for grids of
//! several images fall on image boundaries (top-row tiles, whose gathers touch fewer sectors), and spread so
//! that successive picks see different rows of an image.
std::vector<long long> pick_blocks(long long total, int picks) {
    std::vector<long long> r;
    if (total <= 0) return r;
    if (total <= picks) {
        for (long long b = 0; b < total; ++b) r.push_back(b);
        return r;
    }
    constexpr double kGolden = 0.6180339887498949;
    for (int k = 0; k < picks; ++k) {
        const double frac = (k + 1) * kGolden - static_cast<long long>((k + 1) * kGolden);
        r.push_back(static_cast<long long>((k + frac) * static_cast<double>(total) / picks));
    }
    return r;
}

struct LaunchTrace {
    std::string kernel;
    long long gx = 0, gy = 0, blocks_total = 0, blocks_traced = 0;
    int threads = 256;
    long long smem_bytes = 0;
    std::string counters;
};

std::string launch_json(const LaunchTrace& l) {
    return "{\"kernel\":\"" + l.kernel + "\",\"grid\":[" + std::to_string(l.gx) + "," + std::to_string(l.gy) +
           "],\"threads\":" + std::to_string(l.threads) + ",\"smem_bytes\":" + std::to_string(l.smem_bytes) +
           ",\"blocks_total\":" + std::to_string(l.blocks_total) + ",\"blocks_traced\":" +
           std::to_string(l.blocks_traced) + ",\"counters\":" + l.counters + "}";
}

//! Traces body(bx, by, smem, exec) on up to `picks` blocks of the first `active` blocks of a gx x gy grid
//! (block b = by * gx' + bx over the active columns gx' = active / gy).
template <class Smem, class Exec, class Body>
LaunchTrace trace_grid(const std::string& kernel, long long gx, long long gy, long long active_gx, int picks, Body&& body) {
    LaunchTrace l;
    l.kernel = kernel;
    l.gx = gx;
    l.gy = gy;
    l.blocks_total = active_gx * gy;
    l.smem_bytes = sizeof(Smem);
    AccessCounter counter;
    auto sm = std::make_unique<Smem>();
    {
        TraceScope scope(&counter);
        for (long long b : pick_blocks(l.blocks_total, picks)) {
            Exec ex;
            body(int(b % active_gx), int(b / active_gx), *sm, ex);
            counter.flush();
            ++l.blocks_traced;
        }
    }
    l.counters = counter.json();
    return l;
}

//! Per-item kernels (one thread per work item, 256-thread blocks): traces `item(idx)` for the items of
//! up to 8 * `picks` blocks (their data-dependent gathers vary more from block to block; a block is cheap).
template <class Item>
LaunchTrace trace_items(const std::string& kernel, long long items, int picks, Item&& item) {
    LaunchTrace l;
    l.kernel = kernel;
    l.gx = (items + 255) / 256;
    l.gy = 1;
    l.blocks_total = l.gx;
    AccessCounter counter;
    {
        TraceScope scope(&counter);
        for (long long b : pick_blocks(l.gx, 8 * picks)) {
            counter.phase();
            for (int t = 0; t < 256 && b * 256 + t < items; ++t) {
                trace_thread(t);
                item(b * 256 + t);
            }
            counter.flush();
            ++l.blocks_traced;
        }
    }
    l.counters = counter.json();
    return l;
}

// ---- deformable convolution -----------------------------------------------------------------------------

//! A launch of the NHWC-copy block for params q (run in full untraced first: the next launch reads dst).
template <typename T>
LaunchTrace trace_dc_copy(const char* name, const DeformConvParams& q, const T* src, T* dst, int picks) {
    using Exec = CpuBlockExec<DcNoAcc, DcNhwcTile::kThreads>;
    auto body = [&](int bx, int by, auto& sm, auto& ex) { deform_conv_nhwc_block<T>(q, src, dst, bx, by, sm, ex); };
    run_cpu_grid<DcNhwcSmem<T>, Exec>(dc_nhwc_grid_x(q), dc_nhwc_grid_y(q), body);
    return trace_grid<DcNhwcSmem<T>, Exec>(name, dc_nhwc_grid_x(q), dc_nhwc_grid_y(q), dc_nhwc_grid_x(q), picks, body);
}

//! The FP32-FMA tiles' three launches: the weight transpose, the NHWC copy of the input, then the tile.
template <class Cfg, typename T>
std::vector<LaunchTrace> trace_dc_fma(const char* name, const DeformConvParams& p, const DcPtrs<T>& io, int picks) {
    AlignedArray<T> wt(int64_t(p.Cout) * (p.Cin / p.groups) * p.kh * p.kw), xt(int64_t(p.N) * p.Cin * p.H * p.W);
    std::vector<LaunchTrace> r;
    r.push_back(trace_dc_copy<T>("dcn_wt", dc_weight_transpose_params(p), io.weight, wt.data, picks));
    r.push_back(trace_dc_copy<T>("dcn_nhwc", p, io.x, xt.data, picks));
    r.push_back(trace_grid<DcSmem<Cfg>, CpuBlockExec<DcAcc<Cfg>, Cfg::kThreads>>(
        name, dc_grid_x<Cfg>(p), dc_grid_y<Cfg>(p), dc_grid_x<Cfg>(p), picks,
        [&](int bx, int by, auto& sm, auto& ex) { deform_conv_block<Cfg, T>(p, io, wt.data, xt.data, bx, by, sm, ex); }));
    return r;
}

//! The slab kernels' two launches: the NHWC copy of the input (run in full untraced first, as the slab
//! launch samples it), then the slab GEMM.
template <class Cfg, typename T>
std::vector<LaunchTrace> trace_dc_slab(const char* name, const DeformConvParams& p, const DcPtrs<T>& io, int picks) {
    AlignedArray<T> xt(int64_t(p.N) * p.Cin * p.H * p.W);
    std::vector<LaunchTrace> r;
    r.push_back(trace_dc_copy<T>("dcn_nhwc", p, io.x, xt.data, picks));
    r.push_back(trace_grid<DcSlabSmem<Cfg>, CpuMmaExec<MmaWarpAccCpu<Cfg::WM, Cfg::WN>, Cfg::kWarps, Cfg::kThreads>>(
        name, dc_grid_x<Cfg>(p), dc_grid_y<Cfg>(p), dc_grid_x<Cfg>(p), picks, [&](int bx, int by, auto& sm, auto& ex) {
            deform_conv_slab_block<Cfg, true, T>(p, io, xt.data, bx, by, sm, ex);
        }));
    return r;
}

template <typename T>
std::vector<LaunchTrace> trace_deform_conv(const Attrs& a, const std::vector<Shape>& shapes,
                                           const std::vector<const float*>& in, bool fp16, int picks) {
    DeformConvParams p = deform_conv_params(a);
    deform_conv_shapes(shapes, &p);
    Buffers<T> b(in, shapes, int64_t(p.N) * p.Cout * p.Ho * p.Wo);
    const DcPtrs<T> io{b.ptr(0), b.ptr(1), b.ptr(2), p.with_mask ? b.ptr(3) : nullptr, p.with_bias ? b.ptr(4) : nullptr,
                       b.out};
    switch (deform_conv_kernel_choice(p, fp16, kDcSmemOptinSm90, g_cpu_sm_count)) {
    case DcKernel::kFma256W: return trace_dc_fma<DcTile256W, T>("dcn_fma_256x128", p, io, picks);
    case DcKernel::kFma128W: return trace_dc_fma<DcTile128W, T>("dcn_fma_128x256", p, io, picks);
    case DcKernel::kFmaLargeW: return trace_dc_fma<DcTileLargeW, T>("dcn_fma_64x256", p, io, picks);
    case DcKernel::kFma256: return trace_dc_fma<DcTile256, T>("dcn_fma_256x64", p, io, picks);
    case DcKernel::kFma128: return trace_dc_fma<DcTile128, T>("dcn_fma_128x64", p, io, picks);
    case DcKernel::kFmaLarge: return trace_dc_fma<DcTileLarge, T>("dcn_fma_64x64", p, io, picks);
    case DcKernel::kFmaMedium: return trace_dc_fma<DcTileMedium, T>("dcn_fma_16x128", p, io, picks);
    case DcKernel::kFmaSmall: return trace_dc_fma<DcTileSmall, T>("dcn_fma_4x256", p, io, picks);
    case DcKernel::kSlabWide: return trace_dc_slab<DcSlabWide, T>("dcn_slab_256x128", p, io, picks);
    case DcKernel::kSlabMid: return trace_dc_slab<DcSlabMid, T>("dcn_slab_128x128", p, io, picks);
    case DcKernel::kSlabTall: return trace_dc_slab<DcSlabTall, T>("dcn_slab_64x128", p, io, picks);
    case DcKernel::kSlabMid64: return trace_dc_slab<DcSlabMid64, T>("dcn_slab_128x64", p, io, picks);
    case DcKernel::kSlabCompact: return trace_dc_slab<DcSlabCompact, T>("dcn_slab_64x64", p, io, picks);
    case DcKernel::kSlabTall256: return trace_dc_slab<DcSlabTall256, T>("dcn_slab_64x256", p, io, picks);
    }
    return {};
}

// ---- DRConv ----------------------------------------------------------------------------------------------

template <typename T>
std::vector<LaunchTrace> trace_drconv(const Attrs& a, const std::vector<Shape>& shapes,
                                      const std::vector<const float*>& in, bool fp16, int picks) {
    DrconvParams p = drconv_params(a);
    drconv_shapes(shapes, &p);
    Buffers<T> b(in, shapes, int64_t(p.N) * p.O * p.Ho * p.Wo);
    const T *x = b.ptr(0), *guide = b.ptr(1), *filters = b.ptr(2);
    T* out = b.out;
    const DrKernel kernel = drconv_kernel_choice(p, fp16, g_cpu_sm_count);
    const int bn = drconv_tile_pixels(kernel);
    AlignedArray<int> ws(drconv_workspace_ints(p));  // the plugin workspace: sector counts depend on its alignment
    const DrLists l = drconv_lists(p, ws.data);
    const long long chunks = drconv_chunks(p);
    using ListExec = CpuBlockExec<NoAcc, kDrChunk>;
    std::vector<LaunchTrace> r;
    auto count_chunk = [&](int c, int n, auto& sm, auto& ex) {
        ex.each([&](int t, NoAcc&) { dr_chunk_regions(p, guide, l, c, n, t, sm); });
        ex.each([&](int t, NoAcc&) { dr_chunk_count(p, l, c, n, t, sm); });
    };
    auto scatter_chunk = [&](int c, int n, auto& sm, auto& ex) {
        ex.each([&](int t, NoAcc&) { dr_chunk_recall(p, l, c, n, t, sm); });
        ex.each([&](int t, NoAcc&) { dr_chunk_scatter(p, l, c, n, t, sm); });
    };
    // the traced launches run only the picked blocks: every chunk also runs untraced, so the scan and the
    // GEMM see complete lists
    auto run_every_chunk = [&](auto body) {
        for (int n = 0; n < p.N; ++n)
            for (long long c = 0; c < chunks; ++c) {
                DrChunkSmem sm;
                ListExec ex;
                body(int(c), n, sm, ex);
            }
    };
    r.push_back(trace_grid<DrChunkSmem, ListExec>("drconv_count", chunks, p.N, chunks, picks, count_chunk));
    run_every_chunk(count_chunk);
    r.push_back(trace_grid<DrScanSmem, CpuBlockExec<DrNoAcc, kDrChunk>>("drconv_scan", 1, 1, 1, 1,
        [&](int, int, auto& sm, auto& ex) { dr_scan_block(p, l, bn, sm, ex); }));
    run_every_chunk(scatter_chunk);
    r.push_back(trace_grid<DrChunkSmem, ListExec>("drconv_scatter", chunks, p.N, chunks, picks, scatter_chunk));
    const long long tiles = l.tiles[static_cast<long long>(p.N) * p.m];
    auto gemm = [&](auto cfg, const char* name, auto mma) -> LaunchTrace {
        using Cfg = decltype(cfg);
        const long long gy = (p.O + Cfg::BM - 1) / Cfg::BM, gx = drconv_max_tiles(p, Cfg::BN);
        if constexpr (decltype(mma)::value)
            return trace_grid<DrMmaSmem<Cfg>, DrMmaExecCpu<Cfg>>(
                name, gx, gy, tiles, picks,
                [&](int bx, int by, auto& sm, auto& ex) { drconv_mma_block<Cfg, T>(p, x, filters, out, l, bx, by, sm, ex); });
        else
            return trace_grid<DrGemmSmem<Cfg>, CpuBlockExec<TileAcc<Cfg>, Cfg::kThreads>>(
                name, gx, gy, tiles, picks,
                [&](int bx, int by, auto& sm, auto& ex) { drconv_gemm_block<Cfg, T>(p, x, filters, out, l, bx, by, sm, ex); });
    };
    switch (kernel) {
    case DrKernel::kFmaLarge: r.push_back(gemm(DrTileLarge{}, drconv_kernel_name(kernel), std::false_type{})); break;
    case DrKernel::kFmaLargeW: r.push_back(gemm(DrTileLargeW{}, drconv_kernel_name(kernel), std::false_type{})); break;
    case DrKernel::kFmaSmall: r.push_back(gemm(DrTileSmall{}, drconv_kernel_name(kernel), std::false_type{})); break;
    case DrKernel::kMmaWide: r.push_back(gemm(DrMmaTileWide{}, drconv_kernel_name(kernel), std::true_type{})); break;
    case DrKernel::kMmaTall: r.push_back(gemm(DrMmaTileTall{}, drconv_kernel_name(kernel), std::true_type{})); break;
    case DrKernel::kMmaNarrow: r.push_back(gemm(DrMmaTileNarrow{}, drconv_kernel_name(kernel), std::true_type{})); break;
    case DrKernel::kMmaShort: r.push_back(gemm(DrMmaTileShort{}, drconv_kernel_name(kernel), std::true_type{})); break;
    }
    return r;
}

// ---- per-item kernels ------------------------------------------------------------------------------------

//! Resident threads of an H200 (132 SMs x 2048): sizes the work plans of the kernels that depend on it.
constexpr long long kH200ResidentThreads = kSmCountH200 * 2048LL;

//! DDF / involution (common/pixel_filter_strip.h): the launch the kernel makes for this window, named
//! `op` for the row-sharing strips of the benchmark (the resource table's entry), op_r1 for one-row strips
//! (sh != dh) and op_any for the one-output-per-thread fallback.
template <bool kFc, typename T, typename Generic>
LaunchTrace trace_strip(const std::string& op, const StripGeom& g, const T* x, const T* f, const T* fc, int add, T* out,
                        int picks, Generic&& generic_item) {
    if (!strip_applies(g)) {
        const long long total = static_cast<long long>(g.N) * g.C * g.Ho * g.Wo;
        return trace_items(op + "_any", total, picks, [&](long long idx) { generic_item(idx, total <= 0xffffffffLL); });
    }
    const StripPlan plan = strip_plan(g, kH200ResidentThreads, int(sizeof(T)));
    const long long items = strip_item_count(g, plan);
    const bool narrow = items <= 0xffffffffLL;
    if (plan.cols == 2)  // pair items (FP16): op_pair
        return trace_items(op + "_pair", items, picks, [&](long long idx) {
            strip_item_pairs<kStripK, kFc>(x, f, fc, add, out, g, plan.cpt, idx, narrow);
        });
    auto strip = [&](auto rows) {
        constexpr int R = decltype(rows)::value;
        return trace_items(R == kStripRows ? op : op + "_r1", items, picks, [&](long long idx) {
            strip_item<kStripK, R, kFc>(x, f, fc, add, out, g, plan.cpt, idx, narrow);
        });
    };
    return plan.rows == kStripRows ? strip(std::integral_constant<int, kStripRows>{}) : strip(std::integral_constant<int, 1>{});
}

template <typename T>
std::vector<LaunchTrace> trace_ddf(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in,
                                   int picks) {
    DdfParams p = ddf_params(a);
    ddf_shapes(shapes, &p);
    Buffers<T> b(in, shapes, static_cast<long long>(p.N) * p.C * p.Ho * p.Wo);
    return {trace_strip<true>("ddf", ddf_geom(p), b.ptr(0), b.ptr(2), b.ptr(1), p.add, b.out, picks,
                              [&](long long idx, bool narrow) { ddf_item(b.ptr(0), b.ptr(1), b.ptr(2), b.out, p, idx, narrow); })};
}

template <typename T>
std::vector<LaunchTrace> trace_involution(const Attrs& a, const std::vector<Shape>& shapes,
                                          const std::vector<const float*>& in, int picks) {
    InvolutionParams p = involution_params(a);
    involution_shapes(shapes, &p);
    Buffers<T> b(in, shapes, static_cast<long long>(p.N) * p.C * p.Ho * p.Wo);
    return {trace_strip<false>("involution", involution_geom(p), b.ptr(0), b.ptr(1), static_cast<const T*>(nullptr), 0,
                               b.out, picks,
                               [&](long long idx, bool narrow) { involution_item(b.ptr(0), b.ptr(1), b.out, p, idx, narrow); })};
}

//! The GPU's V-wide neighbour read (one access of V elements) done as scalar math.
template <int V>
struct TraceVecLoad {
    template <typename T>
    void operator()(const T* ptr, float w, float (&acc)[V]) const {
        if (TraceSink* s = trace_sink()) s->access(__FILE__, __LINE__, TraceSpace::kGlobal, TraceKind::kGather, false, ptr, V * int(sizeof(T)), true);
        for (int k = 0; k < V; ++k) acc[k] += w * to_float(ptr[k]);
    }
};
template <int V>
struct TraceVecStore {
    template <typename T>
    void operator()(T* ptr, const float (&acc)[V]) const {
        DYNCONV_TRACE_ACCESS(kGlobal, true, ptr, V * int(sizeof(T)));
        for (int k = 0; k < V; ++k) ptr[k] = from_float<T>(acc[k]);
    }
};

//! Resident threads of an H200 (132 SMs x 2048), which size the kernel's vector-width plan (dcnv3_plan).
constexpr long long kDcnv3ResidentThreads = 132LL * 2048;

template <typename T, int V, bool kVec>
LaunchTrace trace_dcnv3_v(const Dcnv3Params& p, const Buffers<T>& b, int picks) {
    const int chunks = (p.group_channels + V - 1) / V;
    const long long total = static_cast<long long>(p.N) * p.Ho * p.Wo * p.group * chunks;
    T* out = b.out;
    const std::string name = "dcnv3_v" + std::to_string(V) + (kVec ? "" : "_scalar");
    if (p.kh == 3 && p.kw == 3) {  // staged blocks (offsets/masks via shared memory), as many as trace_items traces
        const long long blocks = (total + kDcnv3BlockItems - 1) / kDcnv3BlockItems;
        return trace_grid<Dcnv3Smem, CpuBlockExec<Dcnv3NoAcc, kDcnv3BlockItems>>(
            name, blocks, 1, blocks, 8 * picks, [&](int bx, int, auto& sm, auto& ex) {
                dcnv3_block<V, kVec>(b.ptr(0), b.ptr(1), b.ptr(2), out, p, chunks, total, bx, true, sm, ex,
                                     TraceVecLoad<V>{}, TraceVecStore<V>{});
            });
    }
    return trace_items(name, total, picks, [&](long long idx) {
        dcnv3_item<V, 0, kVec>(b.ptr(0), b.ptr(1), b.ptr(2), out, p, chunks, idx, true, TraceVecLoad<V>{}, TraceVecStore<V>{});
    });
}

template <typename T>
std::vector<LaunchTrace> trace_dcnv3(const Attrs& a, const std::vector<Shape>& shapes, const std::vector<const float*>& in,
                                     int picks) {
    Dcnv3Params p = dcnv3_params(a);
    dcnv3_shapes(shapes, &p);
    const long long slots = static_cast<long long>(p.N) * p.Ho * p.Wo * p.group;
    Buffers<T> b(in, shapes, slots * p.group_channels);
    const Dcnv3Plan plan = dcnv3_plan(p.group_channels, int(sizeof(T)), 16, slots, kDcnv3ResidentThreads);
    if (plan.vec) {
        if (sizeof(T) == 2 && plan.v == 8) return {trace_dcnv3_v<T, 8, true>(p, b, picks)};
        if (plan.v == 4) return {trace_dcnv3_v<T, 4, true>(p, b, picks)};
        return {trace_dcnv3_v<T, 2, true>(p, b, picks)};
    }
    if (plan.v == 4) return {trace_dcnv3_v<T, 4, false>(p, b, picks)};
    return {trace_dcnv3_v<T, 1, false>(p, b, picks)};
}

template <typename T>
std::vector<LaunchTrace> trace_op(const std::string& op, const Attrs& a, const std::vector<Shape>& shapes,
                                  const std::vector<const float*>& in, bool fp16, int picks) {
    if (op == "deform_conv2d") return trace_deform_conv<T>(a, shapes, in, fp16, picks);
    if (op == "drconv") return trace_drconv<T>(a, shapes, in, fp16, picks);
    if (op == "ddf") return trace_ddf<T>(a, shapes, in, picks);
    if (op == "involution") return trace_involution<T>(a, shapes, in, picks);
    if (op == "dcnv3") return trace_dcnv3<T>(a, shapes, in, picks);
    throw std::runtime_error("no access tracer for op " + op);
}

// ---- planted patterns (known answers for the counter tests) ---------------------------------------------

struct PlantedSmem {
    alignas(128) float a[32 * 33];
};

//! One block of 256 threads (8 warps) running pattern `name` on an aligned global buffer g.
LaunchTrace trace_planted(const std::string& name) {
    static std::vector<float> storage(64 * 256 + 64);
    float* g = storage.data();
    while (reinterpret_cast<uintptr_t>(g) % 128) ++g;
    using Exec = CpuBlockExec<NoAcc, 256>;
    auto run = [&](auto phase) {
        return trace_grid<PlantedSmem, Exec>(name, 1, 1, 1, 1, [&](int, int, PlantedSmem& sm, Exec& ex) {
            ex.each([&](int t, NoAcc&) { phase(t, sm); });
        });
    };
    if (name == "coalesced") return run([&](int t, PlantedSmem&) { (void)DYNCONV_LDG(g + t); });
    if (name == "strided") return run([&](int t, PlantedSmem&) { (void)DYNCONV_LDG(g + 8 * t); });
    if (name == "broadcast") return run([&](int t, PlantedSmem&) { (void)DYNCONV_LDG(g + t / 32); });
    if (name == "half_inactive") return run([&](int t, PlantedSmem&) { (void)DYNCONV_LDG_IF(t % 2 == 0, g + t, 0.f); });
    if (name == "bank_conflict_32") return run([&](int t, PlantedSmem& sm) { DYNCONV_STS(&sm.a[(t % 32) * 32], 1.f); });
    if (name == "bank_padded") return run([&](int t, PlantedSmem& sm) { DYNCONV_STS(&sm.a[(t % 32) * 33], 1.f); });
    if (name == "bank_2way") return run([&](int t, PlantedSmem& sm) { (void)DYNCONV_LDS(&sm.a[2 * (t % 32)]); });
    if (name == "shared_float4") return run([&](int t, PlantedSmem&sm) { DYNCONV_TRACE_ACCESS(kShared, false, &sm.a[4 * (t % 32)], 16); });
    if (name == "shared_broadcast") return run([&](int t, PlantedSmem& sm) { (void)DYNCONV_LDS(&sm.a[t / 32]); });
    throw std::runtime_error("unknown planted pattern " + name);
}

void set_error(char* err, int errlen, const std::string& msg) {
    if (err && errlen > 0) std::snprintf(err, static_cast<size_t>(errlen), "%s", msg.c_str());
}

//! Keeps `s` until the calling thread's next trace call; returns it as a C string.
const char* emit(std::string s) {
    static thread_local std::string last;
    last = std::move(s);
    return last.c_str();
}

std::string launches_json(const std::vector<LaunchTrace>& ls) {
    std::string r = "[";
    for (size_t k = 0; k < ls.size(); ++k) r += (k ? "," : "") + launch_json(ls[k]);
    return r + "]";
}

} // namespace

extern "C" {

//! Traces the launches `op` makes on the given FP32 inputs (layout as dynconv_cpuref_run), as the FP16
//! kernels when fp16_io != 0; at most `picks` blocks per launch. Returns the JSON list of launches (valid
//! until the thread's next trace call), or null with a one-line message in `err`.
const char* dynconv_cpuref_trace(const char* op, const FieldValue* fields, int n_fields, int n_inputs,
                                 const float* const* data, const int* ranks, const int64_t* dims, int fp16_io, int picks,
                                 char* err, int errlen) {
    try {
        const OpTable* t = find_op_table(op);
        if (!t) { set_error(err, errlen, std::string("unknown op ") + op); return nullptr; }
        Attrs a;
        std::string e;
        if (!parse_fields(*t, fields, n_fields, &a, &e)) { set_error(err, errlen, e); return nullptr; }
        std::vector<Shape> shapes(n_inputs);
        std::vector<const float*> ptrs(n_inputs);
        for (int k = 0; k < n_inputs; ++k) {
            shapes[k].assign(dims + 8 * k, dims + 8 * k + ranks[k]);
            ptrs[k] = data[k];
        }
        const std::vector<LaunchTrace> ls = fp16_io ? trace_op<_Float16>(t->torch_name, a, shapes, ptrs, true, picks)
                                                    : trace_op<float>(t->torch_name, a, shapes, ptrs, false, picks);
        return emit(launches_json(ls));
    } catch (const std::exception& ex) {
        set_error(err, errlen, ex.what());
        return nullptr;
    }
}

//! Counters of a planted access pattern (see trace_planted) as a one-launch JSON list.
const char* dynconv_cpuref_trace_planted(const char* name, char* err, int errlen) {
    try {
        return emit(launches_json({trace_planted(name)}));
    } catch (const std::exception& ex) {
        set_error(err, errlen, ex.what());
        return nullptr;
    }
}

} // extern "C"
