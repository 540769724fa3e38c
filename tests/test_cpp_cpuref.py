"""The C++ per-output math (libdynconv_cpuref.so, shared with the CUDA kernels) vs the PyTorch reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dynconv.plugins as P
from dynconv.plugins import native

# (op, attrs, N, C, H, W, extra) -- extra: DRConv output channels
CASES = {
    "involution": [
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1), 1, 4, 7, 7),
        (dict(kernel_size=[3, 3], stride=[2, 2], padding=[1, 1], dilation=[1, 1], groups=2), 2, 8, 9, 8),
        (dict(kernel_size=[3, 5], stride=[2, 1], padding=[1, 2], dilation=[2, 1], groups=4), 2, 8, 11, 9),
        (dict(kernel_size=[7, 7], stride=[1, 1], padding=[3, 3], dilation=[1, 1], groups=2), 1, 4, 10, 10),
        (dict(kernel_size=[5, 3], stride=[1, 2], padding=[0, 3], dilation=[1, 2], groups=1), 3, 2, 8, 13),
        # strip kernels: 3x3 two-row strips with 20-channel groups (8-channel items, last one partial), odd map
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=2), 2, 40, 7, 11),
        # 3x3 strips with stride == dilation == 2; 5x5 one-row strips with dilation
        (dict(kernel_size=[3, 3], stride=[2, 2], padding=[2, 2], dilation=[2, 2], groups=1), 1, 12, 9, 10),
        (dict(kernel_size=[5, 5], stride=[1, 1], padding=[4, 4], dilation=[2, 2], groups=3), 1, 27, 6, 9),
        # even widths: the pair items of the FP16 kernel (odd and even left padding, W = 2)
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=2), 2, 40, 7, 12),
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 2], dilation=[1, 1], groups=1), 1, 4, 5, 2),
    ],
    "ddf": [
        (dict(kernel_size=3, dilation=1, stride=1, combine="mul"), 1, 4, 7, 7),
        (dict(kernel_size=3, dilation=2, stride=2, combine="add"), 2, 3, 9, 8),
        (dict(kernel_size=5, dilation=1, stride=2, combine="mul"), 2, 5, 11, 10),
        (dict(kernel_size=1, dilation=1, stride=1, combine="add"), 1, 2, 5, 6),
        (dict(kernel_size=3, dilation=2, stride=1, combine="mul"), 3, 4, 8, 5),
        # strip kernels: 20 channels (8-channel items, last one partial), odd map, both combines
        (dict(kernel_size=3, dilation=1, stride=1, combine="add"), 2, 20, 9, 13),
        (dict(kernel_size=3, dilation=1, stride=1, combine="mul"), 1, 19, 10, 7),
        (dict(kernel_size=7, dilation=1, stride=1, combine="mul"), 1, 10, 9, 8),
        # even widths: the pair items of the FP16 kernel
        (dict(kernel_size=3, dilation=1, stride=1, combine="add"), 2, 20, 9, 14),
        (dict(kernel_size=3, dilation=1, stride=1, combine="mul"), 1, 3, 4, 2),
    ],
    "drconv": [
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], region_num=4), 1, 3, 7, 7, 5),
        (dict(kernel_size=[3, 3], stride=[2, 2], padding=[1, 1], dilation=[2, 2], region_num=3), 2, 4, 9, 8, 2),
        (dict(kernel_size=[3, 1], stride=[2, 1], padding=[1, 0], dilation=[1, 1], region_num=2), 2, 2, 11, 6, 3),
        (dict(kernel_size=[1, 1], stride=[1, 1], padding=[0, 0], dilation=[1, 1], region_num=8), 1, 5, 4, 5, 4),
        # several 256-pixel chunks and 64-pixel tiles per (sample, region); 64-channel tiles, partial last one
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], region_num=8), 2, 6, 23, 19, 70),
        (dict(kernel_size=[5, 3], stride=[1, 2], padding=[2, 1], dilation=[1, 1], region_num=3), 1, 7, 30, 21, 17),
        # more (sample, region) pairs than threads in the scan; most regions empty
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], region_num=130), 2, 3, 6, 7, 4),
        # more regions than the listing passes' byte codes hold (> 255): their int fallback
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], region_num=300), 1, 3, 6, 7, 4),
        # FP16: tensor-core tiles of 128 channels (two, the second partial)
        (dict(kernel_size=[3, 3], stride=[2, 1], padding=[1, 1], dilation=[1, 2], region_num=4), 2, 5, 12, 13, 130),
        # FP16 tensor-core tiles with 16-byte filter loads (K % 8 == 0): 128x128 with a K tail (K = 72), partial
        # pixel tiles and paired input loads (3-wide window, even W: chunks start 0, 2, 1 taps into a window
        # row); 64x256 at kernel 5 (K = 200), at 1x1 stride 2 (K = 16), on a tiny image (paired loads)
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], region_num=2), 1, 8, 21, 18, 96),
        (dict(kernel_size=[5, 5], stride=[1, 1], padding=[2, 2], dilation=[1, 1], region_num=3), 1, 8, 9, 10, 64),
        (dict(kernel_size=[1, 1], stride=[2, 2], padding=[0, 0], dilation=[1, 1], region_num=5), 2, 16, 13, 11, 40),
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], region_num=8), 1, 16, 2, 4, 33),
    ],
    # DCNv3: C = group*group_channels, input NHWC; Cg picks the work split (16: 8-wide, 12/4: 4-wide,
    # 6: 2-wide vectors; 5/3/1: scalar path with a tail chunk), 3x3 takes the unrolled path.
    "dcnv3": [
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], group=4, group_channels=16,
              offset_scale=1.0, remove_center=0), 1, 64, 7, 9),
        (dict(kernel_size=[3, 3], stride=[2, 2], padding=[1, 1], dilation=[2, 2], group=2, group_channels=6,
              offset_scale=2.0, remove_center=1), 2, 12, 11, 8),
        (dict(kernel_size=[3, 5], stride=[2, 1], padding=[1, 2], dilation=[1, 2], group=3, group_channels=5,
              offset_scale=0.5, remove_center=0), 2, 15, 9, 13),
        (dict(kernel_size=[5, 3], stride=[1, 2], padding=[2, 0], dilation=[2, 1], group=1, group_channels=12,
              offset_scale=1.0, remove_center=1), 1, 12, 12, 7),
        (dict(kernel_size=[1, 1], stride=[1, 1], padding=[0, 0], dilation=[1, 1], group=2, group_channels=3,
              offset_scale=1.0, remove_center=0), 3, 6, 5, 4),
        (dict(kernel_size=[2, 4], stride=[1, 1], padding=[0, 1], dilation=[1, 1], group=2, group_channels=8,
              offset_scale=1.5, remove_center=0), 2, 16, 6, 9),
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[0, 0], dilation=[1, 1], group=8, group_channels=1,
              offset_scale=1.0, remove_center=0), 1, 8, 5, 6),
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], group=4, group_channels=4,
              offset_scale=2.0, remove_center=1), 2, 16, 6, 5),
        # staged 3x3 blocks: Cg = 8 (one item per slot: 256 slots per block) and Cg = 32 (4 items per slot)
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], group=2, group_channels=8,
              offset_scale=1.0, remove_center=0), 2, 16, 9, 17),
        (dict(kernel_size=[3, 3], stride=[1, 1], padding=[1, 1], dilation=[1, 1], group=2, group_channels=32,
              offset_scale=1.0, remove_center=1), 1, 64, 6, 11),
    ],
    # DCNv2/DCNv1: (attrs, N, Cin, H, W, Cout, kh, kw, with_mask, with_bias). Cout/groups picks the tile
    # (>16: 64x64, 5..16: 16x128, <=4: 4x256); Cin/groups vs Cin/offset_groups and BK=16 exercise the
    # K-loop segments (offset group changes inside a conv group, partial chunks, several output-channel tiles).
    "deform_conv2d": [
        (dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, offset_groups=1), 2, 8, 7, 9, 72, 3, 3, 1, 1),
        (dict(stride=[2, 1], padding=[1, 2], dilation=[1, 2], groups=2, offset_groups=3), 2, 24, 11, 9, 40, 3, 5, 1, 0),
        (dict(stride=[1, 2], padding=[2, 0], dilation=[2, 1], groups=3, offset_groups=1), 1, 36, 12, 13, 12, 5, 3, 0, 1),
        (dict(stride=[2, 2], padding=[2, 2], dilation=[2, 2], groups=1, offset_groups=2), 3, 40, 9, 10, 10, 3, 3, 1, 1),
        (dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=6, offset_groups=6), 2, 6, 8, 5, 6, 3, 3, 0, 0),
        (dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1, offset_groups=5), 1, 5, 6, 7, 7, 1, 1, 1, 1),
        (dict(stride=[1, 1], padding=[0, 1], dilation=[1, 1], groups=1, offset_groups=1), 2, 17, 5, 12, 33, 2, 4, 0, 0),
        (dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=2, offset_groups=4), 2, 16, 13, 15, 4, 3, 3, 1, 0),
        # FP16 tensor-core path: 2 tiles of 128 channels, segments of 20 channels (chunks 16 + 4)
        (dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, offset_groups=2), 2, 40, 9, 11, 160, 3, 3, 1, 1),
        # 64-channel tiles per group, stride 2, segments of 18 channels (chunks 16 + 2)
        (dict(stride=[2, 2], padding=[1, 1], dilation=[1, 1], groups=2, offset_groups=2), 1, 36, 15, 14, 96, 3, 3, 1, 1),
        (dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1, offset_groups=1), 3, 24, 7, 6, 48, 1, 1, 0, 1),
        (dict(stride=[1, 1], padding=[2, 1], dilation=[1, 1], groups=1, offset_groups=1), 1, 8, 8, 9, 64, 5, 3, 1, 0),
    ],
}


def _implemented() -> set[str]:
    return {t["torch_name"] for t in native.op_tables() if t["cpu"]}


def _inputs(op: str, attrs: dict, n: int, c: int, h: int, w: int, extra: list, rng) -> list[np.ndarray]:
    spec = P.get_spec(op)
    norm = spec.normalize(attrs)
    if op == "dcnv3":
        return _dcnv3_inputs(spec, norm, n, c, h, w, rng)
    if op == "deform_conv2d":
        return _deform_conv_inputs(spec, norm, n, c, h, w, extra, rng)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    if op == "involution":
        kh, kw = norm["kernel_size"]
        _, _, ho, wo = spec.infer_shapes([x.shape, None], norm)[0]
        return [x, rng.standard_normal((n, norm["groups"] * kh * kw, ho, wo)).astype(np.float32)]
    if op == "ddf":
        k = norm["kernel_size"]
        _, _, ho, wo = spec.infer_shapes([x.shape, None, None], norm)[0]
        return [x, rng.standard_normal((n, c, k, k)).astype(np.float32),
                rng.standard_normal((n, k * k, ho, wo)).astype(np.float32)]
    if op == "drconv":
        kh, kw = norm["kernel_size"]
        m, o = norm["region_num"], extra[0]
        filters = rng.standard_normal((n, m, o, c, kh, kw)).astype(np.float32)
        _, _, ho, wo = spec.infer_shapes([x.shape, None, filters.shape], norm)[0]
        return [x, rng.standard_normal((n, m, ho, wo)).astype(np.float32), filters]
    raise AssertionError(op)


def _dcnv3_inputs(spec, norm: dict, n: int, c: int, h: int, w: int, rng) -> list[np.ndarray]:
    """NHWC input; offsets of a few pixels (a quarter exact integers: neighbour/border edge cases)."""
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    kh, kw = norm["kernel_size"]
    p = kh * kw - norm["remove_center"]
    _, ho, wo, _ = spec.infer_shapes([x.shape, None, None], norm)[0]
    offset = rng.uniform(-3.0, 3.0, (n, ho, wo, norm["group"] * p * 2)).astype(np.float32)
    exact = rng.random(offset.shape) < 0.25
    offset[exact] = np.round(offset[exact])
    return [x, offset, rng.standard_normal((n, ho, wo, norm["group"] * p)).astype(np.float32)]


def _deform_conv_inputs(spec, norm: dict, n: int, c: int, h: int, w: int, extra: list, rng) -> list:
    """[input, weight, offset, mask|None, bias|None]; offsets of a few pixels, a quarter exact integers."""
    cout, kh, kw, with_mask, with_bias = extra
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((cout, c // norm["groups"], kh, kw)).astype(np.float32)
    _, _, ho, wo = spec.infer_shapes([x.shape, weight.shape, None, None, None], norm)[0]
    og = norm["offset_groups"]
    offset = rng.uniform(-3.0, 3.0, (n, 2 * og * kh * kw, ho, wo)).astype(np.float32)
    exact = rng.random(offset.shape) < 0.25
    offset[exact] = np.round(offset[exact])
    mask = rng.uniform(-0.5, 1.5, (n, og * kh * kw, ho, wo)).astype(np.float32) if with_mask else None
    bias = rng.standard_normal(cout).astype(np.float32) if with_bias else None
    return [x, weight, offset, mask, bias]


def _reference(op: str, arrays: list[np.ndarray], attrs: dict) -> np.ndarray:
    spec = P.get_spec(op)
    norm = spec.normalize(attrs)
    fn = getattr(torch.ops.dynconv, spec.torch_name)
    with torch.no_grad():
        out = fn(*[None if a is None else torch.from_numpy(a.astype(np.float64)) for a in arrays],
                 *[norm[a.name] for a in spec.attributes])
    return out.numpy()


PARAMS = [pytest.param(op, case[0], case[1:5], list(case[5:]), id=f"{op}-{k}")
          for op, cases in CASES.items() for k, case in enumerate(cases)]


def run_kernels(op: str, arrays: list, attrs: dict, fp16_io: bool) -> np.ndarray:
    """The C++ CPU reference (the kernels' block bodies) on ``arrays``, with the spec's presence flags
    of the optional inputs set from which of them are given."""
    spec = P.get_spec(op)
    flags = {s.flag: int(arrays[k] is not None) for k, s in enumerate(spec.inputs) if s.optional and k < len(arrays)}
    return native.run_reference(op, arrays, {**flags, **attrs}, fp16_io=fp16_io)


@pytest.mark.parametrize("op,attrs,dims,extra", PARAMS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cpuref_matches_torch(op, attrs, dims, extra, precision):
    n, c, h, w = dims
    if op not in {s.torch_name for s in P.all_specs()}:
        pytest.skip(f"no spec for {op} yet")
    if op not in _implemented():
        pytest.fail(f"{op} has a spec but no C++ implementation in the CPU reference build")
    rng = np.random.default_rng(abs(hash((op, n, c, h, w))) % 2**32)
    arrays = _inputs(op, attrs, n, c, h, w, extra, rng)
    if precision == "fp16":
        arrays = [None if a is None else a.astype(np.float16).astype(np.float32) for a in arrays]
    ref = _reference(op, arrays, attrs)
    got = run_kernels(op, arrays, attrs, fp16_io=precision == "fp16")
    assert got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))
    if precision == "fp16":
        got = got.astype(np.float16).astype(np.float32)  # FP16 output, FP32 accumulation
        tol = 1e-2 * scale
    else:
        tol = 1e-4 * scale
    err = float(np.abs(got - ref).max())
    assert err <= tol, f"{op} {attrs}: max abs err {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("cout, k, mma", [(72, 3, True), (160, 3, True), (32, 1, True), (24, 3, False), (64, 5, False)])
def test_deform_conv_fp16_engines_use_the_tensor_core_path_where_it_applies(cout, k, mma):
    """FP16 I/O with >= 32 output channels per group and <= 9 taps rounds the samples to FP16 (MMA
    operands); the FP32-FMA tiles do not, so their FP16-I/O result equals the FP32 one bit for bit."""
    rng = np.random.default_rng(cout + k)
    attrs = dict(stride=[1, 1], padding=[k // 2] * 2, dilation=[1, 1], groups=1, offset_groups=1)
    spec = P.get_spec("deform_conv2d")
    arrays = _deform_conv_inputs(spec, spec.normalize(attrs), 1, 16, 7, 8, [cout, k, k, 1, 1], rng)
    arrays = [a.astype(np.float16).astype(np.float32) for a in arrays]
    fields = {"with_mask": 1, "with_bias": 1, **attrs}
    fp32_path = native.run_reference("deform_conv2d", arrays, fields)
    fp16_path = native.run_reference("deform_conv2d", arrays, fields, fp16_io=True)
    diff = float(np.abs(fp16_path - fp32_path).max())
    if mma:
        assert 0 < diff <= 1e-2 * float(np.abs(fp32_path).max())
    else:
        assert diff == 0


@pytest.mark.parametrize("combine", ["mul", "add"])
def test_ddf_outside_taps_ignore_non_finite_channel_filters(combine):
    """Taps outside the image contribute 0 even where the channel filter is inf (the strips skip them, they do
    not multiply by a zero input): the first output row never uses tap row 0, so it stays finite."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 6, 9)).astype(np.float32)
    fc = rng.standard_normal((1, 3, 3, 3)).astype(np.float32)
    fc[:, :, 0, :] = np.inf
    fs = rng.standard_normal((1, 9, 6, 9)).astype(np.float32)
    attrs = dict(kernel_size=3, dilation=1, stride=1, combine=combine)
    got = native.run_reference("ddf", [x, fc, fs], attrs)
    want = np.zeros((3, 9))  # output row 0 by the definition: taps (u, v) inside the image only
    for u in (1, 2):
        for v in range(3):
            for j in range(9):
                if 0 <= j + v - 1 < 9:
                    f = fs[0, 3 * u + v, 0, j] * fc[0, :, u, v] if combine == "mul" else fs[0, 3 * u + v, 0, j] + fc[0, :, u, v]
                    want[:, j] += x[0, :, u - 1, j + v - 1] * f
    np.testing.assert_allclose(got[0, :, 0], want, rtol=1e-5, atol=1e-5)


def test_cpuref_rejects_bad_shapes():
    x = np.zeros((1, 4, 8, 8), np.float32)
    w = np.zeros((1, 9, 7, 7), np.float32)  # wrong spatial size for k=3, p=1
    with pytest.raises(P.DynconvError, match="weight shape"):
        native.run_reference("involution", [x, w], dict(kernel_size=[3, 3], padding=[1, 1]))


@pytest.mark.parametrize("attrs,match", [
    (dict(kernel_size=[3, 3, 3]), "exactly 2 values"),
    (dict(stride=[0, 1]), "below the minimum"),
    (dict(groups=1.5), "must be of type"),
    (dict(bogus=1), "unknown field"),
])
def test_cpp_field_validation(attrs, match):
    with pytest.raises(P.DynconvError, match=match):
        native.check_fields("DynconvInvolution", attrs)


def test_cpp_field_validation_choices_and_required():
    if "ddf" in _implemented():
        with pytest.raises(P.DynconvError, match="not one of"):
            native.check_fields("DynconvDDF", dict(combine="max"))
    for spec in P.all_specs():
        for a in spec.onnx_attributes:
            if a.required:
                with pytest.raises(P.DynconvError, match="required"):
                    native.check_fields(spec.name, {})
                break
