"""The access tracer of the CPU executor (planted patterns with known counters) and the performance model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dynconv.plugins.perfmodel import H200, trace_op, trace_planted
from dynconv.plugins.perfmodel.__main__ import main
from dynconv.plugins.perfmodel.cases import BENCH_OPS, inside_corners, min_gather_sectors
from dynconv.plugins.perfmodel.resources import kernel_key, occupancy, parse_ptxas
from dynconv.plugins.perfmodel.roofline import design_floor, op_floor, yardstick_bound

# pattern -> (instructions, active lanes, units, ideal units, distinct bytes, DRAM read bytes); one block of
# 256 threads = 8 warps; global units are 32-byte sectors, shared units are wavefronts.
PLANTED = {
    "coalesced": (8, 256, 32, 32, 1024, 1024),       # g[t]: 4 sectors per warp
    "strided": (8, 256, 256, 32, 1024, 8192),        # g[8t]: one sector per lane, 1/8 efficiency
    "broadcast": (8, 256, 8, 8, 32, 32),             # g[t/32]: one address per warp
    "half_inactive": (8, 128, 32, 16, 512, 1024),    # odd lanes predicated off: half of each sector used
    "bank_conflict_32": (8, 256, 256, 8, 1024, 0),   # s[32*lane]: all lanes in bank 0 -> 32 wavefronts
    "bank_padded": (8, 256, 8, 8, 1024, 0),          # s[33*lane]: conflict-free
    "bank_2way": (8, 256, 16, 8, 1024, 0),           # s[2*lane]: 2 words per bank
    "shared_float4": (8, 256, 32, 32, 4096, 0),      # float4 per lane: 4 quarter-warp phases, conflict-free
    "shared_broadcast": (8, 256, 8, 8, 32, 0),       # one word per warp
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_pattern_counters(name):
    lc = trace_planted(name)
    (site,) = lc.sites
    got = (site.instructions, site.lanes, site.units, site.ideal, site.bytes, lc.dram_read_bytes)
    assert got == PLANTED[name]


def test_planted_conflict_and_efficiency_summaries():
    assert trace_planted("bank_conflict_32").bank_conflict_factor() == 32.0
    assert trace_planted("bank_padded").bank_conflict_factor() == 1.0
    assert trace_planted("strided").sector_efficiency() == pytest.approx(1 / 8)
    assert trace_planted("coalesced").sector_efficiency() == 1.0


def test_unknown_planted_pattern_is_a_clear_error():
    from dynconv.plugins.errors import DynconvError
    with pytest.raises(DynconvError, match="unknown planted pattern"):
        trace_planted("nope")


def _dcn_inputs(n, cin, h, w, cout, rng):
    return [rng.standard_normal((n, cin, h, w)).astype(np.float32),
            rng.standard_normal((cout, cin, 3, 3)).astype(np.float32),
            rng.standard_normal((n, 18, h, w)).astype(np.float32), rng.random((n, 9, h, w)).astype(np.float32),
            rng.standard_normal(cout).astype(np.float32)]


DCN_ATTRS = dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, offset_groups=1, with_mask=1, with_bias=1)


@pytest.mark.parametrize("fp16, cout, tiles", [(False, 160, 1), (True, 160, 1), (True, 272, 2)])
def test_dcn_bilinear_sample_counts_are_exact(fp16, cout, tiles):
    """Every (pixel, tap, channel) sample is computed once per output-channel tile of a launch, and one tile
    covers up to 256 output channels on both paths: once at Cout = 160, exactly twice at Cout = 272 (a
    kernel that samples twice, with a known answer). The FP16 path first copies the input to NHWC."""
    n, cin, h, w = 1, 16, 6, 7
    lcs = trace_op("deform_conv2d", _dcn_inputs(n, cin, h, w, cout, np.random.default_rng(0)), DCN_ATTRS,
                   fp16=fp16, picks=10**6)
    if fp16:
        assert [lc.kernel for lc in lcs] == ["dcn_nhwc", "dcn_slab_256x128"]
    lc = lcs[-1]
    assert lc.blocks_traced == lc.blocks_total
    needed = n * h * w * 9 * cin
    assert lc.samples == tiles * needed
    # the math's multiply-adds: FP32 FMAs on the FMA path, 16x16x16 MMAs (padded tiles) on the tensor-core path
    if fp16:
        assert lc.mma * 4096 >= n * h * w * cout * cin * 9
    else:
        assert lc.kernel == "dcn_fma_256x64" and lc.fma >= n * h * w * cout * cin * 9


@pytest.mark.parametrize("label", [b.label for b in BENCH_OPS])
def test_bench_ops_trace_on_a_small_shape(label):
    bench = next(b for b in BENCH_OPS if b.label == label)
    inputs, attrs = bench.make((1, 32, 9, 10), np.random.default_rng(0))
    for lc in trace_op(bench.op, inputs, attrs, fp16=True, picks=2):
        assert 0 < lc.blocks_traced <= lc.blocks_total
        assert any(s.space == "global" and s.store for s in lc.sites) or lc.kernel == "drconv_scan"
        assert 0 < lc.sector_efficiency() <= 1.0


def test_ptxas_parsing_and_occupancy():
    text = ("ptxas info    : Compiling entry function '_Z3ddfI6__halfEvv' for 'sm_90'\n"
            "    0 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads\n"
            "ptxas info    : Used 128 registers, used 1 barriers, 40960 bytes smem, 400 bytes cmem[0]\n")
    assert kernel_key("void dynconv::(anonymous namespace)::ddf_kernel<__half>(...)") == ("ddf", "fp16")
    table = parse_ptxas(text.replace("_Z3ddfI6__halfEvv", "_ZN7dynconv10ddf_kernelI6__halfEEvv"))
    (entry,) = table.values()
    assert entry == {"registers": 128, "smem_bytes": 40960, "spill_bytes": 16}
    # 128 regs x 256 threads = 32768 registers: 2 blocks of 256 threads per SM (25% of 2048 threads)
    assert occupancy(entry, 256, H200) == (2, 0.25)


def test_yardsticks():
    conv = yardstick_bound("conv", (1, 256, 100, 152), True, H200)
    dw = yardstick_bound("depthwise", (1, 256, 100, 152), True, H200)
    act = 256 * 100 * 152
    assert conv.terms["dram"] == pytest.approx(2 * (2 * act + 256 * 256 * 9) / 4.8e12)
    assert dw.seconds < conv.seconds


def test_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert main(["--shapes", "1x32x8x9", "--precision", "fp16", "--ops", "dcnv2", "ddf", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["op"] for r in rows] == ["dcnv2", "ddf"]
    for r in rows:
        for key in ("op", "kernel", "precision", "shape", "bank_conflict_factor", "sector_efficiency",
                    "sample_redundancy", "predicted_us", "bound_us", "ratio", "target"):
            assert key in r
        assert r["ratio"] == pytest.approx(r["predicted_us"] / r["bound_us"])
    assert "dcnv2" in capsys.readouterr().out


def test_cli_rejects_bad_shape(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--shapes", "1x30x8"])
    assert e.value.code == 2
    assert "NxCxHxW" in capsys.readouterr().err


@pytest.mark.parametrize("label, fp16", [("dcnv2", True), ("dcnv2", False), ("dcnv3", True), ("dcnv3", False)])
def test_gather_floor_bounds_the_traced_gather(label, fp16):
    """The design floor's gather term is a lower bound of the kernels' traced gather sectors. With offsets in
    (0, 0.5) and no padding the in-image corner count has a closed form."""
    bench = next(b for b in BENCH_OPS if b.label == label)
    n, c, h, w = 2, 32, 7, 9
    rng = np.random.default_rng(3)
    inputs, attrs = bench.make((n, c, h, w), rng)
    out = (slice(None), slice(None), slice(0, h - 2), slice(0, w - 2)) if label == "dcnv2" else \
        (slice(None), slice(0, h - 2), slice(0, w - 2))
    offset, mask = (2, 3) if label == "dcnv2" else (1, 2)
    inputs[mask] = np.ascontiguousarray(inputs[mask][out])
    inputs[offset] = rng.uniform(0.05, 0.45, inputs[offset][out].shape).astype(np.float32)
    attrs = {**attrs, "padding": [0, 0]}
    traced = sum(s.units * lc.scale for lc in trace_op(bench.op, inputs, attrs, fp16=fp16, picks=10**6)
                 for s in lc.sites if s.gather)
    # rows floor(pos) = y + i and y + i + 1 of a sample; only the second can leave the image (at the last row)
    rows = sum(1 + (y + i + 1 <= h - 1) for y in range(h - 2) for i in range(3))
    cols = sum(1 + (x + j + 1 <= w - 1) for x in range(w - 2) for j in range(3))
    vectors = 1 if label == "dcnv2" else c // 16
    assert inside_corners(label, inputs, attrs) == n * rows * cols * vectors
    floor = min_gather_sectors(label, inputs, attrs, fp16)
    assert floor == n * rows * cols * vectors * -(-(c if label == "dcnv2" else 16) * (2 if fp16 else 4) // 32)
    assert 0 < floor <= traced
    assert min_gather_sectors("ddf", inputs, attrs, fp16) is None


def test_inside_corners_at_the_border():
    """Offsets of 0.25 with padding 1: the taps over the padding lose the corners outside the image."""
    bench = next(b for b in BENCH_OPS if b.label == "dcnv2")
    inputs, attrs = bench.make((1, 16, 4, 5), np.random.default_rng(0))
    inputs[2] = np.full_like(inputs[2], 0.25)
    # rows: positions y-1+i+0.25 for y in 0..3, i in 0..2: floor rows -1..3, each contributes rows lo and lo+1
    rows = sum(((0 <= lo < 4) + (0 <= lo + 1 < 4)) for y in range(4) for i in range(3) for lo in [y - 1 + i])
    cols = sum(((0 <= lo < 5) + (0 <= lo + 1 < 5)) for x in range(5) for j in range(3) for lo in [x - 1 + j])
    assert inside_corners("dcnv2", inputs, attrs) == rows * cols


def test_design_floor_terms():
    op = op_floor(1e6, 1e9, True, H200)
    design = design_floor(op, 1e9, True, 1000, H200)
    assert design.terms["mma.sync work"] == pytest.approx(op.terms["work"] / H200.mma_sync_fraction)
    assert design.terms["gather sectors"] == pytest.approx(1000 / (4 * H200.sms * H200.clock_hz))
    assert design.seconds >= op.seconds
    assert design_floor(op_floor(1e6, 1e9, False, H200), 1e9, False, None, H200).terms.keys() == {"bytes", "work"}


def test_smooth_guide_regions_are_blobs_and_the_iid_guide_scatters_them():
    from dynconv.plugins.perfmodel.cases import smooth_guide

    def same_region_neighbours(guide: np.ndarray) -> float:
        region = guide.argmax(1)
        return float(np.mean(region[..., 1:] == region[..., :-1]))

    rng = np.random.default_rng(0)
    smooth = smooth_guide(rng, 2, 4, 56, 56)
    assert smooth.shape == (2, 4, 56, 56) and smooth.dtype == np.float32
    assert same_region_neighbours(smooth) > 0.85
    assert same_region_neighbours(rng.standard_normal((2, 4, 56, 56))) < 0.35
    regions = np.bincount(smooth.argmax(1).ravel(), minlength=4) / smooth[:, 0].size
    assert regions.min() > 0.1  # every region holds a share of the map


def test_sm_fill_counts_the_busiest_sm():
    from dynconv.plugins.perfmodel.roofline import sm_fill

    assert sm_fill(132, H200) == 1.0 and sm_fill(264, H200) == 1.0
    assert sm_fill(49, H200) == pytest.approx(49 / 132)
    assert sm_fill(133, H200) == pytest.approx(133 / 264)  # one block more: a second wave
    assert sm_fill(392, H200) == pytest.approx(392 / 396)


def test_a_grid_smaller_than_the_gpu_takes_longer_per_block():
    from dataclasses import replace

    from dynconv.plugins.perfmodel import predict_launch

    lc = trace_planted("bank_conflict_32")
    full = predict_launch(replace(lc, blocks_total=H200.sms, blocks_traced=1), H200, 0.0)
    part = predict_launch(replace(lc, blocks_total=H200.sms // 4, blocks_traced=1), H200, 0.0)
    # a quarter of the blocks: a quarter of the shared-memory work, on a quarter of the SMs
    assert part.terms["l1tex"] == pytest.approx(full.terms["l1tex"])
    assert part.limiter == "l1tex"


def test_global_sectors_and_shared_wavefronts_share_the_l1tex_data_path():
    from dynconv.plugins.perfmodel import predict_launch
    from dynconv.plugins.perfmodel.counters import LaunchCounters, SiteCounters

    def site(space: str, units: int) -> SiteCounters:
        return SiteCounters(site=f"k.cu:{units}", space=space, gather=False, store=False, instructions=units, lanes=32,
                            units=units, ideal=units, bytes=32 * units, worst=1.0)

    def launch(*sites: SiteCounters) -> LaunchCounters:
        return LaunchCounters(kernel="k", grid=(H200.sms, 1), threads=256, smem_bytes=0, blocks_total=H200.sms,
                              blocks_traced=1, fma=0, mma=0, samples=0, descriptors=0, dram_read_bytes=0,
                              dram_write_bytes=0, sites=list(sites))

    clock = H200.clock_hz  # one block per SM: each SM runs the traced block's accesses
    both = predict_launch(launch(site("global", 4000), site("shared", 1000)), H200, 0.0)
    assert both.limiter == "l1tex"
    assert both.terms["l1tex"] == pytest.approx((4000 / 4 + 1000) / clock)
    assert predict_launch(launch(site("global", 4000)), H200, 0.0).terms["l1tex"] == pytest.approx(1000 / clock)
    assert predict_launch(launch(site("shared", 1000)), H200, 0.0).terms["l1tex"] == pytest.approx(1000 / clock)


@pytest.mark.parametrize("shape, fp16, kernel", [
    ((8, 128, 28, 28), True, "dcnv3_v8"),   # 50K slots: 100K 8-channel items >= 132 x 2048 / 8
    ((8, 128, 28, 28), False, "dcnv3_v4"),  # FP32: 16-byte vectors are 4 channels
    ((1, 64, 56, 56), True, "dcnv3_v4"),    # 12.5K slots: 25K 8-channel items are too few, 50K 4-channel ones do
    ((1, 64, 14, 14), True, "dcnv3_v2"),    # 784 slots: none reaches it: the smallest vector, the most items
])
def test_dcnv3_item_width_follows_the_resident_thread_share(shape, fp16, kernel):
    """DCNv3's items take the widest vector whose item count reaches 1/8 of the H200's resident threads
    (dcnv3_plan), not all of them: wide items re-read each slot's offsets and masks fewer times."""
    bench = next(b for b in BENCH_OPS if b.label == "dcnv3")
    inputs, attrs = bench.make(shape, np.random.default_rng(0))
    (lc,) = trace_op(bench.op, inputs, attrs, fp16=fp16, picks=1)
    assert lc.kernel == kernel
