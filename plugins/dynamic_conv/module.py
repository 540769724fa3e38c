"""DynamicConv (Chen et al., CVPR 2020) and CondConv (Yang et al., NeurIPS 2019) layers, standard ONNX only."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from ..errors import DynconvError
from .functional import aggregate_experts, mixture_conv2d


class _ExpertConv2d(nn.Module):
    """K expert kernels ``[K, O, C/g, kh, kw]`` (+ biases ``[K, O]``), each initialised like ``nn.Conv2d``."""

    def __init__(self, name: str, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int], padding: int | tuple[int, int], dilation: int | tuple[int, int],
                 groups: int, bias: bool, num_experts: int) -> None:
        super().__init__()
        if num_experts < 1:
            raise DynconvError(f"{name}: num_experts must be >= 1, got {num_experts}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise DynconvError(f"{name}: in_channels={in_channels} and out_channels={out_channels} "
                               f"must be divisible by groups={groups}")
        self.in_channels, self.out_channels, self.num_experts = in_channels, out_channels, num_experts
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation, self.groups = _pair(padding), _pair(dilation), groups
        shape = (num_experts, out_channels, in_channels // groups, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(num_experts, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.weight[0, 0].numel()
        for e in range(self.num_experts):
            nn.init.kaiming_uniform_(self.weight[e], a=math.sqrt(5))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def mix(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        return mixture_conv2d(x, self.weight, self.bias, routing, self.stride, self.padding, self.dilation,
                              self.groups)

    def aggregated(self, routing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return aggregate_experts(self.weight, self.bias, routing)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"num_experts={self.num_experts}, bias={self.bias is not None}")


class DynamicConv2d(_ExpertConv2d):
    """Dynamic convolution: ``y = conv(x, sum_e pi_e W_e) + sum_e pi_e b_e`` per sample.

    Attention ``pi = softmax(FC2(ReLU(FC1(GAP(x)))) / temperature)`` ``[N, K]``, FC1: C -> max(int(C*reduction), 1).
    The paper anneals ``temperature`` from 30 to 1 during the first epochs (set the attribute);
    inference uses 1. Computed as K static convs mixed by ``pi`` (exact; dynamic batch in ONNX).
    Shapes: ``[N, C, H, W] -> [N, O, Ho, Wo]`` by the conv rule.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True, num_experts: int = 4,
                 reduction: float = 0.25, temperature: float = 1.0) -> None:
        super().__init__("DynamicConv2d", in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, num_experts)
        if not temperature > 0:
            raise DynconvError(f"DynamicConv2d: temperature must be > 0, got {temperature}")
        hidden = max(int(in_channels * reduction), 1)
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, num_experts)
        self.temperature = float(temperature)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """``pi [N, K]``, rows sum to 1."""
        logits = self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3)))))
        return torch.softmax(logits / self.temperature, dim=1)

    def aggregated_weight(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample kernel ``[N, O, C/g, kh, kw]`` and bias ``[N, O]`` (eager checking path)."""
        return self.aggregated(self.attention(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x, self.attention(x))


class CondConv2d(_ExpertConv2d):
    """Conditionally parameterised convolution: ``y = conv(x, sum_e r_e W_e) + sum_e r_e b_e`` per sample.

    Routing ``r = sigmoid(Linear(GAP(x)))`` ``[N, K]`` (not normalised), or given to ``forward(x, routing_weights)``
    (as in EfficientNet-CondConv, where one routing is shared by a block's layers; build with
    ``external_routing=True`` to drop the internal routing layer). Computed as K static convs mixed by ``r``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True, num_experts: int = 4,
                 external_routing: bool = False) -> None:
        super().__init__("CondConv2d", in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, num_experts)
        self.routing = None if external_routing else nn.Linear(in_channels, num_experts)

    def routing_weights(self, x: torch.Tensor) -> torch.Tensor:
        """``sigmoid(Linear(GAP(x)))`` ``[N, K]``."""
        if self.routing is None:
            raise DynconvError("CondConv2d was built with external_routing=True: pass routing_weights [N, K]")
        return torch.sigmoid(self.routing(x.mean(dim=(2, 3))))

    def aggregated_weight(self, x: torch.Tensor, routing_weights: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample kernel ``[N, O, C/g, kh, kw]`` and bias ``[N, O]`` (eager checking path)."""
        return self.aggregated(self.routing_weights(x) if routing_weights is None else routing_weights)

    def forward(self, x: torch.Tensor, routing_weights: torch.Tensor | None = None) -> torch.Tensor:
        routing = self.routing_weights(x) if routing_weights is None else routing_weights
        return self.mix(x, routing)
