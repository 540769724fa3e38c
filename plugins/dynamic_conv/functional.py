"""Mixture-of-experts convolution (DynamicConv / CondConv) as one static conv: dynamic batch, standard ONNX.

With per-sample routing ``pi[N, K]`` and expert weights ``W[K, O, C/g, kh, kw]``, biases ``b[K, O]``::

    y[n] = conv(x[n], sum_e pi[n,e] W_e) + sum_e pi[n,e] b_e = sum_e pi[n,e] (conv(x[n], W_e) + b_e)

(exact by linearity). The right-hand side is one ordinary Conv with K*O output channels, a Reshape,
a Mul by ``pi`` and a ReduceSum over experts: no batch-folded grouped conv, so the batch stays dynamic.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import DynconvError


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, routing: torch.Tensor,
           groups: int) -> None:
    if x.dim() != 4 or weight.dim() != 5:
        raise DynconvError(f"mixture_conv2d: need input [N, C, H, W] and weight [K, O, C/groups, kh, kw], "
                           f"got {list(x.shape)} and {list(weight.shape)}")
    k, o, cg = weight.shape[:3]
    if groups < 1 or o % groups != 0 or x.shape[1] != cg * groups:
        raise DynconvError(f"mixture_conv2d: input channels {x.shape[1]} / output channels {o} do not fit "
                           f"groups={groups} and weight {list(weight.shape)}")
    if routing.dim() != 2 or routing.shape[1] != k or routing.shape[0] != x.shape[0]:
        raise DynconvError(f"mixture_conv2d: routing must be [N, K] = {[x.shape[0], k]}, got {list(routing.shape)}")
    if bias is not None and list(bias.shape) != [k, o]:
        raise DynconvError(f"mixture_conv2d: bias must be [K, O] = {[k, o]}, got {list(bias.shape)}")


def mixture_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, routing: torch.Tensor,
                   stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                   dilation: int | Sequence[int] = 1, groups: int = 1) -> torch.Tensor:
    """``y[n] = sum_e routing[n, e] * (conv(x[n], weight[e]) + bias[e])``.

    Args:
        x: ``[N, C, H, W]``.
        weight: ``[K, O, C/groups, kh, kw]`` expert kernels.
        bias: ``[K, O]`` expert biases or ``None``.
        routing: ``[N, K]`` per-sample expert weights (softmax for DynamicConv, sigmoid for CondConv).

    Returns:
        ``[N, O, Ho, Wo]`` (the ordinary conv output size). Costs K convolutions; output channels are
        ordered group-major (group, expert, channel) so every expert keeps its channel groups.
    """
    if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
        _check(x, weight, bias, routing, groups)
    k, o = weight.shape[0], weight.shape[1]
    per_group = o // groups
    stacked = weight.reshape(k, groups, per_group, *weight.shape[2:]).transpose(0, 1).reshape(k * o, *weight.shape[2:])
    stacked_bias = None if bias is None else bias.reshape(k, groups, per_group).transpose(0, 1).reshape(k * o)
    y = F.conv2d(x, stacked, stacked_bias, stride, padding, dilation, groups)
    y = y.reshape(y.shape[0], groups, k, per_group, y.shape[-2], y.shape[-1])
    y = (y * routing.reshape(routing.shape[0], 1, k, 1, 1, 1)).sum(2)
    return y.reshape(y.shape[0], o, y.shape[-2], y.shape[-1])


def aggregate_experts(weight: torch.Tensor, bias: torch.Tensor | None,
                      routing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample kernels ``[N, O, C/g, kh, kw]`` and biases ``[N, O]``: ``sum_e routing[n, e] * W_e``."""
    w = torch.einsum("nk,koc...->noc...", routing, weight)
    b = None if bias is None else routing @ bias
    return w, b
