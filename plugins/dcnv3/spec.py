"""Spec of the DCNv3 core op (InternImage, Wang et al., CVPR 2023); DCNv4's core op maps onto it.

DCNv3 and DCNv4 (Xiong et al., CVPR 2024) share one sampling rule and differ only in what feeds it:
DCNv3 passes separate ``offset`` and softmax-normalised ``mask`` tensors; DCNv4 packs both into one
``offset_mask`` tensor ``[N, Ho, Wo, pad8(G*P*3)]`` laid out per group as ``[2P offsets (x, y) | P
mask]`` and applies no softmax. Splitting that tensor (:func:`dynconv.plugins.dcnv3.split_offset_mask`,
Slice/Reshape in ONNX) yields exactly this op's inputs, so one spec and one plugin serve both.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..spec import AttrSpec, OpSpec, TensorSpec, conv_out, require


def num_points(attrs: Mapping[str, Any]) -> int:
    """Sampling points per group: ``P = kh*kw - remove_center``."""
    kh, kw = attrs["kernel_size"]
    return kh * kw - attrs["remove_center"]


def _output_size(shape: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any]:
    (kh, kw), (sh, sw) = attrs["kernel_size"], attrs["stride"]
    (ph, pw), (dh, dw) = attrs["padding"], attrs["dilation"]
    return conv_out(shape[1], kh, sh, ph, ph, dh), conv_out(shape[2], kw, sw, pw, pw, dw)


def _output_shape(shapes: Sequence[Sequence[Any]], attrs: Mapping[str, Any]) -> list:
    x = shapes[0]
    ho, wo = _output_size(x, attrs)
    return [(x[0], ho, wo, x[3])]


def _check_shapes(shapes: Sequence[Sequence[int]], attrs: Mapping[str, Any]) -> None:
    x, offset, mask = shapes
    name = DCNV3.name
    kh, kw = attrs["kernel_size"]
    g, cg = attrs["group"], attrs["group_channels"]
    require(not attrs["remove_center"] or (kh % 2 == 1 and kw % 2 == 1 and kh * kw > 1),
            f"{name}: remove_center=1 needs an odd kernel_size larger than 1x1 (it drops the centre tap), "
            f"got {[kh, kw]}")
    require(len(x) == 4, f"{name}: input must be 4-D NHWC [N, H, W, group*group_channels], got shape {list(x)}")
    require(x[3] == g * cg, f"{name}: input has {x[3]} channels but group*group_channels = {g}*{cg} = {g * cg}")
    ho, wo = _output_size(x, attrs)
    require(ho > 0 and wo > 0, f"{name}: input {x[1]}x{x[2]} is too small for the window (output {ho}x{wo})")
    p = num_points(attrs)
    for tensor, got, channels, meaning in (("offset", offset, g * p * 2, "group*P*2"),
                                           ("mask", mask, g * p, "group*P")):
        want = [x[0], ho, wo, channels]
        require(list(got) == want, f"{name}: {tensor} shape {list(got)} does not match the expected {want} "
                                   f"(N, Ho, Wo, {meaning}) with P = kh*kw - remove_center = {p}")


DCNV3 = OpSpec(
    name="DynconvDCNv3",
    torch_name="dcnv3",
    layout="NHWC",
    doc=("out[n,oh,ow,g*Cg+c] = sum_p mask[n,oh,ow,g*P+p] * bilinear(x[n,:,:,g*Cg+c], ly, lx) with "
         "lx = ow*sw - pw + hw + (i*dw - hw + offset[n,oh,ow,(g*P+p)*2])*offset_scale, "
         "ly = oh*sh - ph + hh + (j*dh - hh + offset[n,oh,ow,(g*P+p)*2+1])*offset_scale, "
         "hw = dw*(kw-1)//2, hh = dh*(kh-1)//2; point p enumerates taps (i over kw outer, j over kh inner, "
         "p = i*kh + j), skipping the centre (kw//2, kh//2) when remove_center=1; bilinear reads 0 outside "
         "the image. Ho = floor((H + 2*ph - dh*(kh-1) - 1)/sh) + 1 (Wo alike). NHWC throughout. "
         "DCNv4: split its offset_mask per group as [2P offsets | P mask] (trailing pad channels dropped)."),
    inputs=(
        TensorSpec("input", "[N, H, W, G*Cg]", "value map, channels-last, group g owns channels g*Cg..g*Cg+Cg-1"),
        TensorSpec("offset", "[N, Ho, Wo, G*P*2]", "per group, per point (dx, dy) in pixels (x first)"),
        TensorSpec("mask", "[N, Ho, Wo, G*P]", "per group, per point weight, used as is (DCNv3 softmaxes it before)"),
    ),
    outputs=(TensorSpec("output", "[N, Ho, Wo, G*Cg]"),),
    attributes=(
        AttrSpec("kernel_size", "ints", [3, 3], "kernel height and width (kh, kw)", length=2, minimum=1),
        AttrSpec("stride", "ints", [1, 1], "stride (h, w)", length=2, minimum=1),
        AttrSpec("padding", "ints", [1, 1], "zero padding on both sides (h, w)", length=2, minimum=0),
        AttrSpec("dilation", "ints", [1, 1], "dilation (h, w)", length=2, minimum=1),
        AttrSpec("group", "int", 1, "number of groups G (offsets and mask per group)", minimum=1),
        AttrSpec("group_channels", "int", None, "channels per group Cg", minimum=1),
        AttrSpec("offset_scale", "float", 1.0, "scales the regular grid around the window centre and the offsets"),
        AttrSpec("remove_center", "int", 0, "1 drops the centre tap (P = kh*kw - 1; odd kernels only)", choices=(0, 1)),
    ),
    output_shape=_output_shape,
    check_shapes=_check_shapes,
    shape_derived=("group", "group_channels"),  # mask.shape[-1] // P, input.shape[-1] // group
)
