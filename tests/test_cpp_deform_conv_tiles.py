"""DCNv1/v2 FP16 kernel choice per device shared-memory limit, through the CPU reference's test hook: every
tensor-core (slab) tile reduces in the same (channel, tap) order with the same FP16 rounding, so the tiles
a smaller device runs give bit-identical results; without room for a slab the FP32-FMA tiles run."""

from __future__ import annotations

import ctypes
from typing import Callable, Iterator

import numpy as np
import pytest

from dynconv.plugins import native

# opt-in shared memory per block: 0 = the default (sm_90), sm_80/87, sm_86/89, sm_75
LIMITS = {"sm_90": 0, "sm_87": 166912, "sm_86": 101376, "sm_75": 65536}
# offset groups of 20 channels: full 16-channel chunks, partial ones, chunks not 8-aligned (scalar paths)
ATTRS = dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, offset_groups=2, with_mask=1, with_bias=1)


def _hook(name: str) -> Callable[[int], None]:
    fn = getattr(native.cpuref_library(), name)
    fn.argtypes = [ctypes.c_int]
    fn.restype = None
    return fn


@pytest.fixture
def set_smem_optin() -> Iterator[Callable[[int], None]]:
    fn = _hook("dynconv_cpuref_deform_conv_set_smem_optin")
    yield fn
    fn(0)


@pytest.fixture
def set_sm_count() -> Iterator[Callable[[int], None]]:
    fn = _hook("dynconv_cpuref_set_sm_count")
    yield fn
    fn(-1)


@pytest.fixture
def largest_tiles(set_sm_count) -> None:
    """The largest tile that fits, as on a device of unlimited SMs (the tests' maps are tiny)."""
    set_sm_count(0)


@pytest.fixture
def set_workspace() -> Iterator[Callable[[int], None]]:
    fn = _hook("dynconv_cpuref_deform_conv_set_workspace")
    yield fn
    fn(1)


def _fp16(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16).astype(np.float32)


def _inputs(cout: int, rng: np.random.Generator, n: int = 2, cin: int = 40, h: int = 7, w: int = 9) -> list:
    taps = 9 * ATTRS["offset_groups"]
    return [_fp16(rng.standard_normal((n, cin, h, w))), _fp16(rng.standard_normal((cout, cin, 3, 3)) * 0.1),
            _fp16(rng.standard_normal((n, 2 * taps, h, w)) * 1.5), _fp16(rng.random((n, taps, h, w))),
            _fp16(rng.standard_normal(cout))]


@pytest.mark.parametrize("cout", [48, 96, 272])
def test_slab_tiles_agree_across_device_limits(cout, set_smem_optin, largest_tiles):
    """48: 64x256 / 64x128 / 64x64 tiles; 96: 128x128 / 128x64 / 64x64; 272: 256x128 (two channel tiles) /
    128x64 / 64x64."""
    arrays = _inputs(cout, np.random.default_rng(cout))
    outs = {}
    for name, limit in LIMITS.items():
        set_smem_optin(limit)
        outs[name] = native.run_reference("deform_conv2d", arrays, ATTRS, fp16_io=True)
    set_smem_optin(0)
    fp32 = native.run_reference("deform_conv2d", arrays, ATTRS)
    for name, out in outs.items():
        np.testing.assert_array_equal(out, outs["sm_90"], err_msg=name)
    assert 0 < float(np.abs(outs["sm_90"] - fp32).max()) <= 1e-2 * float(np.abs(fp32).max())


@pytest.mark.parametrize("cout, fp16_io, cin", [(48, True, 40), (272, True, 40), (12, False, 40), (96, False, 40),
                                                (48, True, 56), (96, True, 56), (24, True, 40), (24, True, 56)])
def test_without_a_workspace_the_result_is_the_same(cout, fp16_io, cin, set_workspace, largest_tiles):
    """No workspace (the mmcv-compat plugin): the slab and FMA tiles sample the NCHW input instead of its NHWC
    copy and the FMA tiles read the weights as given; same sums in the same order, so the same bits. cin 56
    (offset groups of 28): chunks of 12 channels, vector and scalar, in the lane-pair NHWC fill of a 64-row
    (48) and a 128-row (96) slab tile and in the FMA tiles' 4-channel runs (12, 96 FP32; 24 with FP16 I/O,
    below the slabs' 32 channels)."""
    arrays = _inputs(cout, np.random.default_rng(cout), cin=cin)
    with_ws = native.run_reference("deform_conv2d", arrays, ATTRS, fp16_io=fp16_io)
    set_workspace(0)
    np.testing.assert_array_equal(native.run_reference("deform_conv2d", arrays, ATTRS, fp16_io=fp16_io), with_ws)


def test_without_room_for_a_slab_the_fma_tiles_run(set_smem_optin):
    arrays = _inputs(96, np.random.default_rng(0))
    set_smem_optin(48 * 1024)
    fp16_io = native.run_reference("deform_conv2d", arrays, ATTRS, fp16_io=True)
    set_smem_optin(0)
    np.testing.assert_array_equal(fp16_io, native.run_reference("deform_conv2d", arrays, ATTRS))


@pytest.mark.parametrize("cout", [4, 12, 40, 96, 160])
def test_fma_tiles_vector_stores_match_torch(cout):
    """FP32 FMA tiles (4x256 .. 256x64) on an 8x8 map: Ho*Wo % 4 == 0, so the epilogue stores 4-pixel vectors."""
    import torch

    from dynconv.plugins import get_spec

    arrays = _inputs(cout, np.random.default_rng(cout), h=8, w=8)
    got = native.run_reference("deform_conv2d", arrays, ATTRS)
    spec = get_spec("deform_conv2d")
    norm = spec.normalize({k: v for k, v in ATTRS.items() if not k.startswith("with_")})
    with torch.no_grad():
        ref = torch.ops.dynconv.deform_conv2d(*[torch.from_numpy(a.astype(np.float64)) for a in arrays],
                                              *[norm[a.name] for a in spec.attributes]).numpy()
    assert float(np.abs(got - ref).max()) <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def _slab_kernel(cout: int, n: int, h: int, w: int, cin: int = 32) -> str:
    from dynconv.plugins.perfmodel import trace_op

    arrays = _inputs(cout, np.random.default_rng(0), n=n, cin=cin, h=h, w=w)
    return [lc.kernel for lc in trace_op("deform_conv2d", arrays, ATTRS, fp16=True, picks=1)][-1]


@pytest.mark.parametrize("cout, n, h, w, kernel", [
    (128, 8, 28, 28, "dcn_slab_128x64"),    # 49 blocks of 128 pixels would leave 83 of 132 SMs idle
    (128, 1, 100, 152, "dcn_slab_128x128"),  # 119 blocks: halving the tile takes two waves, no gain
    (64, 32, 56, 56, "dcn_slab_64x256"),    # 392 blocks: three waves of 256 or six of 128, a tie
    (64, 2, 40, 40, "dcn_slab_64x64"),      # 13 blocks of 256 pixels; 50 of 64
    (256, 1, 25, 38, "dcn_slab_256x128"),   # the only tile covering 256 channels
    (64, 1, 32766, 2, "dcn_slab_64x256"),    # the tallest map whose corners the slabs pack in 16 bits
    (64, 1, 32767, 2, "dcn_fma_64x256"),     # taller: the (wide) FP32-FMA tile
])
def test_slab_tile_fills_the_sms(cout, n, h, w, kernel):
    assert _slab_kernel(cout, n, h, w) == kernel


def _fma_kernel(cout: int, n: int, h: int, w: int, cin: int = 16) -> str:
    from dynconv.plugins.perfmodel import trace_op

    arrays = _inputs(cout, np.random.default_rng(0), n=n, cin=cin, h=h, w=w)
    return [lc.kernel for lc in trace_op("deform_conv2d", arrays, ATTRS, picks=1)][-1]


@pytest.mark.parametrize("cout, n, h, w, kernel", [
    (256, 1, 100, 152, "dcn_fma_256x128"),  # 119 blocks of 128 pixels fill the SMs once
    (128, 8, 28, 28, "dcn_fma_128x64"),     # 25 blocks of 256 pixels would leave 107 SMs idle
    (64, 32, 56, 56, "dcn_fma_64x256"),     # 392 blocks: three waves of 256 pixels or twelve of 64, a tie
    (40, 2, 9, 9, "dcn_fma_64x64"),
    (12, 2, 9, 9, "dcn_fma_16x128"),        # the channel-narrow tiles have no wide twin
])
def test_fma_tile_fills_the_sms(cout, n, h, w, kernel):
    assert _fma_kernel(cout, n, h, w) == kernel


@pytest.mark.parametrize("cout, h, w", [(40, 7, 9), (96, 8, 8), (160, 7, 9), (272, 8, 8)])
def test_wide_fma_tiles_match_torch_and_the_narrow_tiles_bits(cout, h, w, set_sm_count):
    """The wide FP32 tiles (16x8, 8x16, 8x8 micro-tiles; pixel runs of 4 a row of threads apart) sum every
    output in the narrow tiles' order: same bits, within 1e-4 of torch; 7x9 maps store pixel by pixel, 8x8
    ones as 4-pixel vectors (two images: runs never cross one)."""
    import torch

    from dynconv.plugins import get_spec

    arrays = _inputs(cout, np.random.default_rng(cout + h), n=2, h=h, w=w)
    narrow = native.run_reference("deform_conv2d", arrays, ATTRS)  # tiny map: the narrow tile fills more SMs
    set_sm_count(0)
    wide = native.run_reference("deform_conv2d", arrays, ATTRS)
    np.testing.assert_array_equal(wide, narrow)
    spec = get_spec("deform_conv2d")
    norm = spec.normalize({k: v for k, v in ATTRS.items() if not k.startswith("with_")})
    with torch.no_grad():
        ref = torch.ops.dynconv.deform_conv2d(*[torch.from_numpy(a.astype(np.float64)) for a in arrays],
                                              *[norm[a.name] for a in spec.attributes]).numpy()
    assert float(np.abs(wide - ref).max()) <= 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_wide_fma_tiles_run_where_the_sms_are_not_the_limit(set_sm_count):
    set_sm_count(0)
    assert [_fma_kernel(c, 2, 9, 9) for c in (160, 96, 40, 12)] == [
        "dcn_fma_256x128", "dcn_fma_128x256", "dcn_fma_64x256", "dcn_fma_16x128"]


def test_the_tile_chosen_for_the_sms_gives_the_same_bits(set_sm_count):
    arrays = _inputs(96, np.random.default_rng(5), n=2, cin=40, h=12, w=12)
    filled = native.run_reference("deform_conv2d", arrays, ATTRS, fp16_io=True)  # 288 pixels: five 128x64 tiles
    set_sm_count(0)  # three 128x128 tiles
    np.testing.assert_array_equal(native.run_reference("deform_conv2d", arrays, ATTRS, fp16_io=True), filled)
