"""Spec of the region-select convolution behind DRConv (Chen et al., CVPR 2021), paper form.

Filter layout (what a C++ kernel reads directly): ``filters`` is the contiguous 6-D tensor
``[N, m, O, C, kh, kw]``; the filter of sample n, region t is the ordinary conv weight
``filters[n, t]`` of shape ``[O, C, kh, kw]``, element
``filters[((((n*m + t)*O + o)*C + c)*kh + u)*kw + v]``. It is a free view of the paper's
filter-generator output ``[N, m*O*C, kh, kw]`` (channel ``(t*O + o)*C + c``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..spec import AttrSpec, OpSpec, TensorSpec, conv_out, require


def _output_size(shape: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[Any, Any]:
    kh, kw = attrs["kernel_size"]
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return conv_out(shape[2], kh, sh, ph, ph, dh), conv_out(shape[3], kw, sw, pw, pw, dw)


def _output_shape(shapes: Sequence[Sequence[Any]], attrs: Mapping[str, Any]) -> list:
    x, filters = shapes[0], shapes[2]
    ho, wo = _output_size(x, attrs)
    return [(x[0], filters[2], ho, wo)]


def _check_shapes(shapes: Sequence[Sequence[int]], attrs: Mapping[str, Any]) -> None:
    x, guide, filters = shapes
    name = DRCONV.name
    m = attrs["region_num"]
    kh, kw = attrs["kernel_size"]
    require(len(x) == 4, f"{name}: input must be 4-D NCHW, got shape {list(x)}")
    require(len(guide) == 4, f"{name}: guide must be 4-D [N, m, Ho, Wo], got shape {list(guide)}")
    require(len(filters) == 6, f"{name}: filters must be 6-D [N, m, O, C, kh, kw], got shape {list(filters)}")
    ho, wo = _output_size(x, attrs)
    require(ho > 0 and wo > 0, f"{name}: input {x[2]}x{x[3]} is too small for the window (output {ho}x{wo})")
    want = [x[0], m, filters[2], x[1], kh, kw]
    require(list(filters) == want, f"{name}: filters shape {list(filters)} does not match the expected "
                                   f"[N, m, O, C, kh, kw] = {want} (region_num={m}, kernel_size={[kh, kw]})")
    want = [x[0], m, ho, wo]
    require(list(guide) == want, f"{name}: guide shape {list(guide)} does not match the expected "
                                 f"[N, m, Ho, Wo] = {want}")


DRCONV = OpSpec(
    name="DynconvDRConv",
    torch_name="drconv",
    doc=("out[n,o,i,j] = sum_{c,u,v} filters[n, t, o, c, u, v] * x[n, c, i*sh - ph + u*dh, j*sw - pw + v*dw], "
         "t = argmax_t guide[n, t, i, j] (the first maximum wins on ties), zero padding. "
         "Ho = floor((H + 2*ph - dh*(kh-1) - 1)/sh) + 1 (the convolution rule; Wo alike)."),
    inputs=(
        TensorSpec("input", "[N, C, H, W]", "feature map"),
        TensorSpec("guide", "[N, m, Ho, Wo]", "guide logits; each pixel uses the region of its largest logit"),
        TensorSpec("filters", "[N, m, O, C, kh, kw]", "per-sample filters; filters[n, t] is region t's conv weight"),
    ),
    outputs=(TensorSpec("output", "[N, O, Ho, Wo]"),),
    attributes=(
        AttrSpec("kernel_size", "ints", [3, 3], "kernel (h, w): the filters' last two dims", length=2, minimum=1),
        AttrSpec("stride", "ints", [1, 1], "stride (h, w)", length=2, minimum=1),
        AttrSpec("padding", "ints", [0, 0], "zero padding on both sides (h, w)", length=2, minimum=0),
        AttrSpec("dilation", "ints", [1, 1], "dilation (h, w)", length=2, minimum=1),
        AttrSpec("region_num", "int", 8, "number of regions m (guide channels, filters dim 1)", minimum=1),
    ),
    output_shape=_output_shape,
    check_shapes=_check_shapes,
)
