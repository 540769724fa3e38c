"""The access tracer of the CPU executor (planted patterns with known counters) and the performance model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dynconv.plugins.perfmodel import H200, trace_op, trace_planted
from dynconv.plugins.perfmodel.__main__ import main
from dynconv.plugins.perfmodel.cases import BENCH_OPS
from dynconv.plugins.perfmodel.resources import kernel_key, occupancy, parse_ptxas
from dynconv.plugins.perfmodel.roofline import yardstick_bound

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


@pytest.mark.parametrize("fp16", [False, True])
def test_dcn_bilinear_sample_counts_are_exact(fp16):
    """FP32 path: every (pixel, tap, channel) sample is computed once per launch (one block covers up to 256
    output channels). The FP16 tensor-core path still samples once per 128-channel tile: exactly twice at
    Cout = 160 (a kernel that samples twice, with a known answer)."""
    n, cin, h, w, cout = 1, 16, 6, 7, 160
    lcs = trace_op("deform_conv2d", _dcn_inputs(n, cin, h, w, cout, np.random.default_rng(0)), DCN_ATTRS,
                   fp16=fp16, picks=10**6)
    (lc,) = lcs
    assert lc.blocks_traced == lc.blocks_total
    needed = n * h * w * 9 * cin
    assert lc.samples == (2 * needed if fp16 else needed)
    # the math's multiply-adds: FP32 FMAs on the FMA path, 16x16x16 MMAs (padded tiles) on the tensor-core path
    if fp16:
        assert lc.kernel == "dcn_mma_128x64" and lc.mma * 4096 >= n * h * w * cout * cin * 9
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
