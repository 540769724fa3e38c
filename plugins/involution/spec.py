"""Spec of the involution aggregation (Li et al., CVPR 2021), the core op behind RedNet."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..spec import AttrSpec, OpSpec, TensorSpec, conv_out, require


def _output_size(shape: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any]:
    kh, kw = attrs["kernel_size"]
    return (conv_out(shape[2], kh, attrs["stride"][0], attrs["padding"][0], attrs["padding"][0], attrs["dilation"][0]),
            conv_out(shape[3], kw, attrs["stride"][1], attrs["padding"][1], attrs["padding"][1], attrs["dilation"][1]))


def _output_shape(shapes: Sequence[Sequence[Any]], attrs: Mapping[str, Any]) -> list:
    x = shapes[0]
    ho, wo = _output_size(x, attrs)
    return [(x[0], x[1], ho, wo)]


def _check_shapes(shapes: Sequence[Sequence[int]], attrs: Mapping[str, Any]) -> None:
    x, w = shapes
    name = INVOLUTION.name
    require(len(x) == 4, f"{name}: input must be 4-D NCHW, got shape {list(x)}")
    require(len(w) == 4, f"{name}: weight must be 4-D [N, groups*kh*kw, Ho, Wo], got shape {list(w)}")
    g = attrs["groups"]
    kh, kw = attrs["kernel_size"]
    require(x[1] % g == 0, f"{name}: channels {x[1]} are not divisible by groups={g}")
    ho, wo = _output_size(x, attrs)
    require(ho > 0 and wo > 0, f"{name}: input {x[2]}x{x[3]} is too small for the window (output {ho}x{wo})")
    want = [x[0], g * kh * kw, ho, wo]
    require(list(w) == want, f"{name}: weight shape {list(w)} does not match the expected {want} "
                             f"(N, groups*kh*kw, Ho, Wo)")


INVOLUTION = OpSpec(
    name="DynconvInvolution",
    torch_name="involution",
    doc=("out[n,c,i,j] = sum_{u,v} weight[n, g(c)*kh*kw + u*kw + v, i, j] * "
         "x[n, c, i*sh - ph + u*dh, j*sw - pw + v*dw], g(c) = c // (C/groups), zero padding. "
         "Ho = floor((H + 2*ph - dh*(kh-1) - 1)/sh) + 1 (the convolution rule; Wo alike)."),
    inputs=(
        TensorSpec("input", "[N, C, H, W]", "feature map"),
        TensorSpec("weight", "[N, groups*kh*kw, Ho, Wo]", "per-pixel kernels, channel = g*kh*kw + u*kw + v"),
    ),
    outputs=(TensorSpec("output", "[N, C, Ho, Wo]"),),
    attributes=(
        AttrSpec("kernel_size", "ints", [7, 7], "kernel height and width", length=2, minimum=1),
        AttrSpec("stride", "ints", [1, 1], "stride (h, w)", length=2, minimum=1),
        AttrSpec("padding", "ints", [3, 3], "zero padding on both sides (h, w)", length=2, minimum=0),
        AttrSpec("dilation", "ints", [1, 1], "dilation (h, w)", length=2, minimum=1),
        AttrSpec("groups", "int", 1, "kernel groups; channels of group g share kernel g", minimum=1),
    ),
    output_shape=_output_shape,
    check_shapes=_check_shapes,
    shape_derived=("groups",),  # weight.shape[1] // (kh*kw)
)
