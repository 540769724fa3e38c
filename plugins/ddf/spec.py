"""Spec of the decoupled dynamic filter (DDF; Zhou et al., CVPR 2021), the core op of DDF-ResNet.

Output-size rule (our definition): ``Ho = ceil(H/s)``, the convolution rule with padding
``r*d`` (``r = (k-1)/2``), i.e. windows centred at ``(i*s, j*s)``. The official CUDA kernel sizes its
output ``floor(H/s)`` while its own spatial branch (1x1 conv, stride s) yields ``ceil(H/s)``, so it
only works when H and W are divisible by the stride; for those sizes both rules coincide and every
output value is identical.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..spec import AttrSpec, OpSpec, TensorSpec, conv_out, require


def output_size(size: Any, attrs: Mapping[str, Any]) -> Any:
    """``ceil(size/s)``: the conv rule with pad ``d*(k-1)/2`` on both sides (symbolic-safe)."""
    k, s, d = attrs["kernel_size"], attrs["stride"], attrs["dilation"]
    pad = d * (k - 1) // 2
    return conv_out(size, k, s, pad, pad, d)


def _output_shape(shapes: Sequence[Sequence[Any]], attrs: Mapping[str, Any]) -> list:
    x = shapes[0]
    return [(x[0], x[1], output_size(x[2], attrs), output_size(x[3], attrs))]


def _check_shapes(shapes: Sequence[Sequence[int]], attrs: Mapping[str, Any]) -> None:
    x, fc, fs = shapes
    name = DDF.name
    k = attrs["kernel_size"]
    require(k % 2 == 1, f"{name}: kernel_size must be odd (windows are centred), got {k}")
    require(len(x) == 4, f"{name}: input must be 4-D NCHW, got shape {list(x)}")
    require(len(fc) == 4, f"{name}: channel_filter must be 4-D [N, C, k, k], got shape {list(fc)}")
    require(len(fs) == 4, f"{name}: spatial_filter must be 4-D [N, k*k, Ho, Wo], got shape {list(fs)}")
    want_fc = [x[0], x[1], k, k]
    require(list(fc) == want_fc, f"{name}: channel_filter shape {list(fc)} does not match the expected "
                                 f"{want_fc} (N, C, k, k)")
    ho, wo = output_size(x[2], attrs), output_size(x[3], attrs)
    want_fs = [x[0], k * k, ho, wo]
    require(list(fs) == want_fs, f"{name}: spatial_filter shape {list(fs)} does not match the expected "
                                 f"{want_fs} (N, k*k, ceil(H/stride), ceil(W/stride))")


DDF = OpSpec(
    name="DynconvDDF",
    torch_name="ddf",
    doc=("out[n,c,i,j] = sum_{u,v} x[n, c, i*s + (u-r)*d, j*s + (v-r)*d] * F[n,c,u,v,i,j], r = (k-1)/2, "
         "F = spatial_filter[n, u*k+v, i, j] * channel_filter[n,c,u,v] (combine='mul') or their sum "
         "(combine='add'); taps outside the image contribute 0 in both modes. "
         "Ho = ceil(H/s) = floor((H + 2*r*d - d*(k-1) - 1)/s) + 1 (Wo alike); equals the official "
         "kernel's floor(H/s) when H % s == 0, which the official code requires. "
         "Multi-head DDF is this op on x reshaped to [N*head, C/head, H, W]."),
    inputs=(
        TensorSpec("input", "[N, C, H, W]", "feature map"),
        TensorSpec("channel_filter", "[N, C, k, k]", "per-sample, per-channel kernel (shared by all pixels)"),
        TensorSpec("spatial_filter", "[N, k*k, Ho, Wo]", "per-pixel kernel shared by all channels, channel = u*k + v"),
    ),
    outputs=(TensorSpec("output", "[N, C, Ho, Wo]"),),
    attributes=(
        AttrSpec("kernel_size", "int", 3, "odd kernel size k (square window)", minimum=1),
        AttrSpec("dilation", "int", 1, "dilation d", minimum=1),
        AttrSpec("stride", "int", 1, "stride s", minimum=1),
        AttrSpec("combine", "str", "mul", "how the two filters combine", choices=("mul", "add")),
    ),
    output_shape=_output_shape,
    check_shapes=_check_shapes,
)
