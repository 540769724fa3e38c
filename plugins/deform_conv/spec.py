"""Spec of deformable convolution, DCNv1 (no mask) and DCNv2 (modulated), torchvision's layout."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..spec import AttrSpec, OpSpec, TensorSpec, conv_out, require


def _output_size(x: Sequence[Any], w: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any]:
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return conv_out(x[2], w[2], sh, ph, ph, dh), conv_out(x[3], w[3], sw, pw, pw, dw)


def _output_shape(shapes: Sequence[Sequence[Any] | None], attrs: Mapping[str, Any]) -> list:
    x, w = shapes[0], shapes[1]
    ho, wo = _output_size(x, w, attrs)
    return [(x[0], w[0], ho, wo)]


def _check_shapes(shapes: Sequence[Sequence[int] | None], attrs: Mapping[str, Any]) -> None:
    x, w, offset, mask, bias = (list(s) if s is not None else None for s in shapes)
    name = DEFORM_CONV2D.name
    require(len(x) == 4, f"{name}: input must be 4-D NCHW, got shape {x}")
    require(len(w) == 4, f"{name}: weight must be 4-D [Cout, Cin/groups, kh, kw], got shape {w}")
    g, og = attrs["groups"], attrs["offset_groups"]
    n, cin = x[0], x[1]
    cout, kh, kw = w[0], w[2], w[3]
    require(cin % g == 0, f"{name}: input channels {cin} are not divisible by groups={g}")
    require(cout % g == 0, f"{name}: output channels {cout} (weight.shape[0]) are not divisible by groups={g}")
    require(w[1] * g == cin, f"{name}: weight.shape[1]={w[1]} must be input channels / groups = {cin}/{g}")
    require(cin % og == 0, f"{name}: input channels {cin} are not divisible by offset_groups={og}")
    require(kh > 0 and kw > 0, f"{name}: empty kernel {kh}x{kw} in weight shape {w}")
    ho, wo = _output_size(x, w, attrs)
    require(ho > 0 and wo > 0, f"{name}: input {x[2]}x{x[3]} is too small for the window (output {ho}x{wo})")
    want = [n, 2 * og * kh * kw, ho, wo]
    require(offset == want, f"{name}: offset shape {offset} does not match the expected {want} "
                            f"(N, 2*offset_groups*kh*kw, Ho, Wo)")
    if mask is not None:
        want = [n, og * kh * kw, ho, wo]
        require(mask == want, f"{name}: mask shape {mask} does not match the expected {want} "
                              f"(N, offset_groups*kh*kw, Ho, Wo)")
    if bias is not None:
        require(bias == [cout], f"{name}: bias shape {bias} does not match the expected [{cout}] (Cout)")


DEFORM_CONV2D = OpSpec(
    name="DynconvDeformConv2d",
    torch_name="deform_conv2d",
    doc=("out[n,o,i,j] = bias[o] + sum_{c in group(o)} sum_{u,v} weight[o, c', u, v] * m * "
         "bilinear(x[n,c], i*sh - ph + u*dh + dy, j*sw - pw + v*dw + dx), with k = u*kw + v, "
         "q = g_off(c)*kh*kw + k, (dy, dx) = offset[n, 2q : 2q+2, i, j], m = mask[n, q, i, j] (1 without mask), "
         "g_off(c) = c // (Cin/offset_groups). Bilinear sampling as torchvision: a point is read when "
         "-1 < y < H and -1 < x < W, corners outside the image count 0. "
         "Ho = floor((H + 2*ph - dh*(kh-1) - 1)/sh) + 1 (the convolution rule; Wo alike)."),
    inputs=(
        TensorSpec("input", "[N, Cin, H, W]", "feature map"),
        TensorSpec("weight", "[Cout, Cin/groups, kh, kw]", "convolution weight; its shape gives the kernel size"),
        TensorSpec("offset", "[N, 2*offset_groups*kh*kw, Ho, Wo]",
                   "(dy, dx) per offset group g and tap k = u*kw + v at channels 2*(g*kh*kw + k) + {0, 1}"),
        TensorSpec("mask", "[N, offset_groups*kh*kw, Ho, Wo]", "modulation (DCNv2), channel g*kh*kw + k",
                   optional=True),
        TensorSpec("bias", "[Cout]", "output bias", optional=True),
    ),
    outputs=(TensorSpec("output", "[N, Cout, Ho, Wo]"),),
    attributes=(
        AttrSpec("stride", "ints", [1, 1], "stride (h, w)", length=2, minimum=1),
        AttrSpec("padding", "ints", [0, 0], "zero padding on both sides (h, w)", length=2, minimum=0),
        AttrSpec("dilation", "ints", [1, 1], "dilation (h, w)", length=2, minimum=1),
        AttrSpec("groups", "int", 1, "convolution groups (input and output channels split alike)", minimum=1),
        AttrSpec("offset_groups", "int", 1, "offset groups; input channels of group g share offsets/mask g",
                 minimum=1),
    ),
    output_shape=_output_shape,
    check_shapes=_check_shapes,
)
