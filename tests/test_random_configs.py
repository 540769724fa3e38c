"""Seeded random configurations of every core op, beyond the hand-picked grids: kernel sizes 1-7 (square
and not), strides, dilations and paddings up to 3, group and offset-group splits, region counts, odd maps.

For each: the PyTorch op (float64) against the naive loops written from the authors' kernels
(``real_config_naive``; DCNv1/v2 also against torchvision), the C++ CPU reference (the kernels' block
bodies, FP32 and FP16-I/O paths) against the PyTorch op, and a few through the onnx flavour in
onnxruntime at a different size than exported (dynamic batch/height/width).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import real_config_naive as naive
import test_cpp_cpuref as cpuref
import dynconv.plugins as P
from dynconv.export import ExportOptions, export_model
from dynconv.export import op_models
from parity import assert_close_scaled, run_onnxruntime

OPS = ("deform_conv2d", "dcnv3", "ddf", "involution", "drconv")
PER_OP = 24


def _window_fits(size: int, k: int, s: int, p: int, d: int) -> bool:
    return naive.conv_out(size, k, s, p, p, d) >= 1


def _draw(op: str, rng: np.random.Generator) -> tuple[dict, tuple[int, int, int, int], list]:
    """One valid configuration: (attrs, (N, C, H, W), extra inputs of test_cpp_cpuref._inputs)."""
    pick = lambda values: values[int(rng.integers(len(values)))]  # noqa: E731
    while True:
        k = [pick([1, 2, 3, 3, 3, 5, 7]), pick([1, 3, 3, 5])]
        k = [k[0], k[0]] if rng.random() < 0.6 else k
        s, d = [pick([1, 1, 2, 3]), pick([1, 2])], [pick([1, 1, 2, 3]), pick([1, 2])]
        p = [pick([0, 1, 2, 3]), pick([0, 1, 2])]
        n, h, w = pick([1, 2, 3]), int(rng.integers(3, 19)), int(rng.integers(3, 19))
        if op == "ddf":  # DDF pads by the window's own half-extent: (k - 1) * d / 2 on each side
            kk, dd, ss = pick([1, 3, 3, 5, 7]), pick([1, 2]), pick([1, 2])
            if all(_window_fits(v, kk, ss, dd * (kk - 1) // 2, dd) for v in (h, w)):
                return (dict(kernel_size=kk, dilation=dd, stride=ss, combine=pick(["mul", "add"])),
                        (n, pick([1, 3, 8, 16, 19]), h, w), [])
            continue
        if not (_window_fits(h, k[0], s[0], p[0], d[0]) and _window_fits(w, k[1], s[1], p[1], d[1])):
            continue
        conv = dict(stride=s, padding=p, dilation=d)
        if op == "involution":
            g = pick([1, 2, 3, 4])
            return {**conv, "kernel_size": k, "groups": g}, (n, g * pick([1, 2, 5, 16]), h, w), []
        if op == "drconv":
            return ({**conv, "kernel_size": k, "region_num": pick([1, 2, 3, 8])}, (n, pick([1, 3, 8, 16]), h, w),
                    [pick([1, 5, 16, 33, 64, 130])])
        if op == "dcnv3":
            g, gc = pick([1, 2, 3, 4]), pick([1, 2, 3, 4, 5, 8, 16, 32])
            center = int(k[0] * k[1] > 1 and k[0] % 2 == 1 and k[1] % 2 == 1 and rng.random() < 0.3)
            return ({**conv, "kernel_size": k, "group": g, "group_channels": gc, "remove_center": center,
                     "offset_scale": pick([0.5, 1.0, 2.0])}, (n, g * gc, h, w), [])
        g, og = pick([1, 1, 2, 4]), pick([1, 2, 4])
        cin = math.lcm(g, og) * pick([1, 2, 5, 8])
        return ({**conv, "groups": g, "offset_groups": og}, (n, cin, h, w),
                [g * pick([1, 3, 16, 40, 64, 96]), k[0], k[1], pick([0, 1]), pick([0, 1])])


def _cases() -> list:
    rng = np.random.default_rng(20261201)
    return [pytest.param(op, *_draw(op, rng), id=f"{op}-{i}") for op in OPS for i in range(PER_OP)]


CASES = _cases()


def _naive(op: str, arrays: list, attrs: dict) -> np.ndarray:
    a = [None if t is None else t.astype(np.float64) for t in arrays]
    s = P.get_spec(op).normalize(attrs)
    if op == "deform_conv2d":
        return naive.deform_conv2d(*a, s["stride"], s["padding"][:2], s["dilation"], s["groups"], s["offset_groups"])
    if op == "dcnv3":
        return naive.dcnv3_core(*a, s["kernel_size"], s["stride"], s["padding"], s["dilation"], s["group"],
                                s["offset_scale"], bool(s["remove_center"]))
    if op == "ddf":
        return naive.ddf(*a, s["kernel_size"], s["dilation"], s["stride"], s["combine"])
    if op == "involution":
        return naive.involution(*a, s["kernel_size"], s["stride"], s["padding"], s["dilation"], s["groups"])
    return naive.drconv(*a, s["stride"], s["padding"], s["dilation"])


def _arrays(op: str, attrs: dict, dims: tuple, extra: list, seed: int) -> list:
    return cpuref._inputs(op, attrs, *dims, extra, np.random.default_rng(seed))


@pytest.mark.parametrize("op, attrs, dims, extra", CASES)
def test_pytorch_op_matches_the_authors_semantics(op, attrs, dims, extra):
    arrays = _arrays(op, attrs, dims, extra, 1)
    ours = cpuref._reference(op, arrays, attrs)
    assert_close_scaled(ours, _naive(op, arrays, attrs), 1e-9)
    if op == "deform_conv2d":
        torchvision = pytest.importorskip("torchvision")
        x, weight, offset, mask, bias = [None if a is None else torch.from_numpy(a).double() for a in arrays]
        s = P.get_spec(op).normalize(attrs)
        theirs = torchvision.ops.deform_conv2d(x, offset, weight, bias, tuple(s["stride"]), tuple(s["padding"][:2]),
                                               tuple(s["dilation"]), mask)
        assert_close_scaled(ours, theirs.numpy(), 1e-9)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("op, attrs, dims, extra", CASES)
def test_cpp_kernels_match_the_pytorch_op(op, attrs, dims, extra, precision):
    arrays = _arrays(op, attrs, dims, extra, 2)
    if precision == "fp16":
        arrays = [None if a is None else a.astype(np.float16).astype(np.float32) for a in arrays]
    want = cpuref._reference(op, arrays, attrs)
    got = cpuref.run_kernels(op, arrays, attrs, fp16_io=precision == "fp16")
    if precision == "fp16":  # FP16 output, FP32 accumulation
        assert_close_scaled(got.astype(np.float16), want, 1e-2)
    else:
        assert_close_scaled(got, want, 1e-4)


# onnxruntime: the op_models cases (their input factories) at random attributes; NHWC DCNv3 keeps H
# (the named dynamic axes are NCHW's), the others change every dynamic axis.
def _onnx_cases() -> list:
    rng = np.random.default_rng(7)
    pick = lambda values: values[int(rng.integers(len(values)))]  # noqa: E731
    cases = []
    for i in range(4):
        k, s = pick([(3, 3), (1, 3), (5, 5), (3, 5)]), pick([(1, 1), (2, 1), (2, 2)])
        d, p = pick([(1, 1), (1, 2), (2, 1)]), pick([(0, 1), (1, 1), (2, 0)])
        cases += [
            (op_models.deform_conv_case(cout_factor=pick([1, 2]), kernel=k, stride=s, padding=p, dilation=d,
                                        groups=pick([1, 2]), offset_groups=pick([1, 2]), mask=bool(i % 2),
                                        bias=i < 2), 4),
            (op_models.dcnv3_case(kernel=pick([(3, 3), (5, 5), (3, 1)]), stride=s, padding=p, dilation=d,
                                  group_channels=pick([2, 4, 16]), offset_scale=pick([0.5, 2.0]),
                                  remove_center=i % 2), 16),
            (op_models.ddf_case(kernel=pick([1, 3, 5]), stride=pick([1, 2]), dilation=pick([1, 2]),
                                combine=pick(["mul", "add"])), pick([3, 8])),
            (op_models.involution_case(kernel=k, stride=s, padding=p, dilation=d, group_channels=pick([1, 4])), 8),
            (op_models.drconv_case(kernel=k, stride=s, padding=p, dilation=d, region_num=pick([1, 3, 8]),
                                   cout_factor=pick([1, 2])), pick([3, 8])),
        ]
    return [pytest.param(case, c, id=f"{case.label}-c{c}".replace(" ", "_")) for case, c in cases]


@pytest.mark.parametrize("case, channels", _onnx_cases())
def test_onnx_flavour_at_another_size_matches_the_pytorch_op(case, channels):
    model, args = case.model(2, channels, 11, 13, seed=3)
    proto = export_model(model, args, ExportOptions(target="onnx", exporter="torchscript",
                                                    dynamic=("batch", "height", "width")))
    _, other = case.model(3, channels, 11 if case.layout == "NHWC" else 16, 18, seed=4)
    with torch.no_grad():
        want = model(*other).double().numpy()
    assert_close_scaled(run_onnxruntime(proto, [a.numpy() for a in other])[0], want, 1e-5)
