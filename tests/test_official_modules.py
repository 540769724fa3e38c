"""The authors' modules (involution, DDF, DRConv, DynamicConv, timm SK/CondConv, InternImage DCNv3,
DCNv4) mapped onto dynconv.

The look-alike classes below are written here from the published structure of each module (class
and attribute names, state_dict keys, forward math); they are not the authors' code. Each mapping is
checked in float64 against the look-alike's own forward, inside a parent module.
"""

from __future__ import annotations

import logging

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dynconv.export import ExportOptions, export_model
from dynconv.export.cli import main
from dynconv.export.official_megvii import RoutedRegionConv
from dynconv.export.official_modules import map_official_modules
from dynconv.export.third_party import map_third_party_modules
from dynconv.plugins import dcnv3 as dyn_dcnv3
from dynconv.plugins import ddf as dyn_ddf
from dynconv.plugins import drconv as dyn_drconv
from dynconv.plugins import dynamic_conv as dyn_dynamic
from dynconv.plugins.involution import Involution
from dynconv.plugins.skconv import SKConv2d
from parity import assert_close_scaled, custom_nodes, run_onnxruntime

ATOL = 1e-10


# ----- look-alikes: d-li14/involution (mmcv ConvModule form) ------------------------------------------
class ConvModule(nn.Module):
    """The part of mmcv's ConvModule the involution uses: conv [-> bn] [-> activate]."""

    def __init__(self, cin, cout, norm=False, act=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=not norm)
        if norm:
            self.bn = nn.BatchNorm2d(cout)
        if act:
            self.activate = nn.ReLU(inplace=True)
        self.order = ("conv", "norm", "act")

    def forward(self, x):
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        if hasattr(self, "activate"):
            x = self.activate(x)
        return x


class involution(nn.Module):  # noqa: N801 (the authors' class name)
    def __init__(self, channels, kernel_size, stride, conv1_norm=True):
        super().__init__()
        self.kernel_size, self.stride, self.channels = kernel_size, stride, channels
        self.group_channels = 16
        self.groups = channels // self.group_channels
        self.conv1 = ConvModule(channels, channels // 4, norm=conv1_norm, act=True)
        self.conv2 = ConvModule(channels // 4, kernel_size * kernel_size * self.groups)
        if stride > 1:
            self.avgpool = nn.AvgPool2d(stride, stride)
        self.unfold = nn.Unfold(kernel_size, 1, (kernel_size - 1) // 2, stride)

    def forward(self, x):
        kern = self.conv2(self.conv1(self.avgpool(x) if self.stride > 1 else x))
        n, _, h, w = kern.shape
        taps = self.kernel_size * self.kernel_size
        kern = kern.reshape(n, self.groups, 1, taps, h, w)
        cols = self.unfold(x).reshape(n, self.groups, self.group_channels, taps, h, w)
        return (kern * cols).sum(3).reshape(n, self.channels, h, w)


# ----- look-alikes: theFoxofSky/ddfnet -------------------------------------------------------------------
class FilterNorm(nn.Module):
    def __init__(self, in_channels, kernel_size, filter_type, nonlinearity="linear", running_std=False,
                 running_mean=False):
        super().__init__()
        self.in_channels, self.filter_type = in_channels, filter_type
        self.runing_std, self.runing_mean = running_std, running_mean  # (sic) as published
        gain = nn.init.calculate_gain(nonlinearity) / kernel_size
        self.std = nn.Parameter(torch.randn(in_channels * kernel_size ** 2) * gain) if running_std else gain
        if running_mean:
            self.mean = nn.Parameter(torch.randn(in_channels * kernel_size ** 2))

    def forward(self, x):
        n = x.shape[0]
        spatial = self.filter_type == "spatial"
        grouped = x.reshape(n, self.in_channels, -1, *x.shape[2:]) if spatial else x.reshape(n, self.in_channels, -1)
        centred = grouped - grouped.mean(2, keepdim=True)
        z = centred / (centred.std(2, keepdim=True) + 1e-10)
        z = z.reshape(x.shape) if spatial else z.reshape(n, -1)
        view = (1, -1, 1, 1) if spatial else (1, -1)
        z = z * (self.std.reshape(view) if self.runing_std else self.std)
        return z + self.mean.reshape(view) if self.runing_mean else z


def ddf_lookalike(x, channel_filter, spatial_filter, k, dilation, stride, combine):
    n, c = x.shape[:2]
    ho, wo = spatial_filter.shape[-2:]
    cols = F.unfold(x, k, dilation, dilation * (k - 1) // 2, stride).reshape(n, c, k * k, ho, wo)
    cf = channel_filter.reshape(n, c, k * k, 1, 1)
    sf = spatial_filter.reshape(n, 1, k * k, ho, wo)
    return (cols * (cf * sf if combine == "mul" else cf + sf)).sum(2)


class DDFPack(nn.Module):
    def __init__(self, in_channels, kernel_size=3, stride=1, dilation=1, head=1, se_ratio=0.2,
                 nonlinearity="relu", gen_kernel_size=1, kernel_combine="mul", spatial_running_mean=False):
        super().__init__()
        k = kernel_size
        self.kernel_size, self.stride, self.dilation, self.head = k, stride, dilation, head
        self.kernel_combine = kernel_combine
        spatial = [nn.Conv2d(in_channels, head * k * k, 1, stride=stride)]
        if gen_kernel_size > 1:
            spatial = [nn.Conv2d(in_channels, in_channels, gen_kernel_size, stride, gen_kernel_size // 2,
                                 groups=in_channels), nn.Conv2d(in_channels, head * k * k, 1)]
        self.spatial_branch = nn.Sequential(
            *spatial, FilterNorm(head, k, "spatial", nonlinearity, running_mean=spatial_running_mean))
        mid = int(in_channels * se_ratio)
        self.channel_branch = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(in_channels, mid, 1), nn.ReLU(True),
            nn.Conv2d(mid, in_channels * k * k, 1),
            FilterNorm(in_channels, k, "channel", nonlinearity, running_std=True))

    def forward(self, x):
        n, c = x.shape[:2]
        k = self.kernel_size
        return ddf_lookalike(x, self.channel_branch(x).reshape(n, c, k, k), self.spatial_branch(x), k,
                             self.dilation, self.stride, self.kernel_combine)


# ----- look-alike: shallowtoil/DRConv-PyTorch --------------------------------------------------------------
class DRConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, region_num=8, **kwargs):
        super().__init__()
        m = self.region_num = region_num
        self.conv_kernel = nn.Sequential(
            nn.AdaptiveAvgPool2d((kernel_size, kernel_size)), nn.Conv2d(in_channels, m * m, 1), nn.Sigmoid(),
            nn.Conv2d(m * m, m * in_channels * out_channels, 1, groups=m))
        self.conv_guide = nn.Conv2d(in_channels, m, kernel_size, **kwargs)
        self.kwargs = kwargs

    def forward(self, x):
        n, c = x.shape[:2]
        filters = self.conv_kernel(x)
        filters = filters.reshape(n, -1, c, *filters.shape[2:])  # per sample [m*O, C, k, k]
        region_out = torch.cat([F.conv2d(x[i:i + 1], filters[i], **self.kwargs) for i in range(n)])
        region_out = region_out.reshape(n, self.region_num, -1, *region_out.shape[2:])
        guide = self.conv_guide(x)
        onehot = F.one_hot(guide.argmax(1), self.region_num).permute(0, 3, 1, 2).to(x.dtype)
        return (region_out * onehot.unsqueeze(2)).sum(1)


# ----- look-alikes: timm SelectiveKernel ---------------------------------------------------------------------
class BatchNormAct2d(nn.BatchNorm2d):
    def __init__(self, features, act=True):
        super().__init__(features)
        self.drop = nn.Identity()
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.drop(super().forward(x)))


class ConvNormAct(nn.Module):
    def __init__(self, cin, cout, kernel_size, stride, dilation, groups):
        super().__init__()
        padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, dilation, groups, bias=False)
        self.bn = BatchNormAct2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class SelectiveKernelAttn(nn.Module):
    def __init__(self, channels, num_paths, attn_channels, select_bias=False):
        super().__init__()
        self.num_paths = num_paths
        self.fc_reduce = nn.Conv2d(channels, attn_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(attn_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn_channels, channels * num_paths, 1, bias=select_bias)

    def forward(self, u):
        z = self.act(self.bn(self.fc_reduce(u.sum(1).mean((2, 3), keepdim=True))))
        logits = self.fc_select(z)
        return logits.reshape(logits.shape[0], self.num_paths, -1, 1, 1).softmax(1)


class SelectiveKernel(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=(3, 5), stride=1, dilation=1, groups=1,
                 attn_channels=8, keep_3x3=True, split_input=False, select_bias=False):
        super().__init__()
        kernels = list(kernel_size)
        if keep_3x3:
            dilations, kernels = [dilation * (k - 1) // 2 for k in kernels], [3] * len(kernels)
        else:
            dilations = [dilation] * len(kernels)
        self.in_channels, self.out_channels, self.split_input = in_channels, out_channels, split_input
        cin = in_channels // len(kernels) if split_input else in_channels
        self.paths = nn.ModuleList([ConvNormAct(cin, out_channels, k, stride, d, groups)
                                    for k, d in zip(kernels, dilations)])
        self.attn = SelectiveKernelAttn(out_channels, len(kernels), attn_channels, select_bias)

    def forward(self, x):
        inputs = x.chunk(len(self.paths), 1) if self.split_input else [x] * len(self.paths)
        u = torch.stack([path(xi) for path, xi in zip(self.paths, inputs)], 1)
        return (u * self.attn(u)).sum(1)


# ----- look-alikes: kaijieshi7/Dynamic-convolution-Pytorch and timm CondConv2d ---------------------------------
class attention2d(nn.Module):  # noqa: N801
    def __init__(self, in_planes, ratio, K, temperature, fc2_bias=True):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        hidden = int(in_planes * ratio) + 1 if in_planes != 3 else K
        self.fc1 = nn.Conv2d(in_planes, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, K, 1, bias=fc2_bias)
        self.temperature = temperature

    def forward(self, x):
        logits = self.fc2(F.relu(self.fc1(self.avgpool(x)))).flatten(1)
        return F.softmax(logits / self.temperature, 1)


def batch_folded_conv(x, mixed_weight, mixed_bias, out_channels, kernel, stride, padding, dilation, groups):
    n = x.shape[0]
    weight = mixed_weight.reshape(n * out_channels, -1, *kernel)
    bias = None if mixed_bias is None else mixed_bias.reshape(-1)
    y = F.conv2d(x.reshape(1, -1, *x.shape[2:]), weight, bias, stride, padding, dilation, groups * n)
    return y.reshape(n, out_channels, *y.shape[2:])


class Dynamic_conv2d(nn.Module):  # noqa: N801
    def __init__(self, in_planes, out_planes, kernel_size, ratio=0.25, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, K=4, temperature=34, fc2_bias=True):
        super().__init__()
        self.in_planes, self.out_planes, self.kernel_size = in_planes, out_planes, kernel_size
        self.stride, self.padding, self.dilation, self.groups, self.K = stride, padding, dilation, groups, K
        self.attention = attention2d(in_planes, ratio, K, temperature, fc2_bias)
        self.weight = nn.Parameter(torch.randn(K, out_planes, in_planes // groups, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.randn(K, out_planes)) if bias else None

    def forward(self, x):
        pi = self.attention(x)
        return batch_folded_conv(x, pi @ self.weight.reshape(self.K, -1), None if self.bias is None else pi @ self.bias,
                                 self.out_planes, (self.kernel_size,) * 2, self.stride, self.padding, self.dilation,
                                 self.groups)


class CondConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1, groups=1,
                 bias=False, num_experts=4, dynamic_padding=False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = (kernel_size, kernel_size), (stride, stride)
        self.padding, self.dilation = (padding, padding), (dilation, dilation)
        self.groups, self.num_experts, self.dynamic_padding = groups, num_experts, dynamic_padding
        numel = out_channels * in_channels // groups * kernel_size * kernel_size
        self.weight = nn.Parameter(torch.randn(num_experts, numel))
        self.bias = nn.Parameter(torch.randn(num_experts, out_channels)) if bias else None

    def forward(self, x, routing_weights):
        return batch_folded_conv(x, routing_weights @ self.weight,
                                 None if self.bias is None else routing_weights @ self.bias, self.out_channels,
                                 self.kernel_size, self.stride, self.padding, self.dilation, self.groups)


class CondBlock(nn.Module):
    """The enclosing block: routing computed once, passed to the conv (as timm's CondConvResidual)."""

    def __init__(self, conv, experts):
        super().__init__()
        self.routing_fn = nn.Linear(conv.in_channels, experts)
        self.conv = conv

    def forward(self, x):
        return self.conv(x, torch.sigmoid(self.routing_fn(x.mean((2, 3)))))


def region_matmul(columns, weight, mask):
    """The official core op's forward: ``out[n,o,i,j] = sum_q columns[n,q,i,j] * weight[n,o,q,mask[n,i,j]]``."""
    index = mask.long()[:, None, None].expand(-1, weight.shape[1], weight.shape[2], -1, -1)  # [N, O, Q, Ho, Wo]
    chosen = torch.gather(weight, 3, index.flatten(3)).reshape(index.shape)
    return (chosen * columns[:, None]).sum(2)


class DRConv(nn.Module):
    """megvii-research/DRConv's layer: routed filter bank, region mask given by the caller."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=True, dilation=1,
                 groups_num=8, num_W=8):  # noqa: N803
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = nn.modules.utils._pair(kernel_size), nn.modules.utils._pair(stride)
        self.padding, self.dilation = nn.modules.utils._pair(padding), nn.modules.utils._pair(dilation)
        self.groups, self.groups_num, self.num_W = groups, groups_num, num_W
        self.weight = nn.Parameter(torch.randn(out_channels * in_channels * self.kernel_size[0] * self.kernel_size[1],
                                               num_W))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.routing_fc = nn.Linear(in_channels, groups_num * num_W)

    def forward(self, inputs, mask, Alpha, use_alpha=False, beta=1.0):  # noqa: N803
        n, _, h, w = inputs.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        coef = 2.0 * torch.sigmoid(self.routing_fc(inputs.reshape(n, inputs.shape[1], -1).mean(-1))) / self.num_W
        weight = F.linear(coef.reshape(-1, self.num_W), self.weight)
        weight = weight.reshape(n, self.groups_num, self.out_channels, -1).permute(0, 2, 3, 1)
        columns = F.unfold(inputs, self.kernel_size, self.dilation, self.padding, self.stride).reshape(n, -1, ho, wo)
        if mask.shape[-2:] != torch.Size([ho, wo]):
            mask = F.interpolate(mask.float().unsqueeze(1), (ho, wo)).squeeze(1)
        out = region_matmul(columns, weight, mask)
        return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1)


class DRBlock(nn.Module):
    """A ShuffleNetV2-style caller: the region mask comes from a guide conv outside the layer."""

    def __init__(self, conv):
        super().__init__()
        self.guide = nn.Conv2d(conv.in_channels, conv.groups_num, 1, bias=False)
        self.conv = conv

    def forward(self, x):
        alpha = torch.softmax(self.guide(x), 1)
        return self.conv(x, alpha.argmax(1), alpha)


# ----- helpers --------------------------------------------------------------------------------------------
def randomized(model, seed=0):
    """float64, eval, every parameter and BN statistic random (nothing left at a symmetric init)."""
    g = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(torch.rand(mod.num_features, generator=g, dtype=torch.float64) - 0.5)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g, dtype=torch.float64) + 0.5)
                mod.num_batches_tracked.fill_(7)
    return model.eval()


def check_mapped(model, x, names, dynconv_type):
    with torch.no_grad():
        before = model(x)
    assert map_third_party_modules(model) == names
    for name in names:
        mapped = model.get_submodule(name)
        assert type(mapped) is dynconv_type
        assert all(p.dtype == torch.float64 for p in mapped.parameters())
    with torch.no_grad():
        after = model(x)
    assert after.shape == before.shape
    torch.testing.assert_close(after, before, atol=ATOL, rtol=0)
    return model


def check_refused(model, x, caplog, reason):
    types_before = [type(m) for m in model.modules()]
    with torch.no_grad():
        before = model(x)
    with caplog.at_level(logging.WARNING, logger="dynconv.export.official_modules"):
        assert map_third_party_modules(model) == []
    assert [type(m) for m in model.modules()] == types_before
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "left unmapped" in warnings[0] and reason in warnings[0], warnings
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=0, rtol=0)


def x64(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----- involution -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels, k, stride, hw", [(16, 7, 1, (9, 11)), (32, 3, 2, (8, 12)), (64, 5, 1, (6, 5))])
def test_involution_is_mapped_exactly(channels, k, stride, hw, caplog):
    model = randomized(nn.Sequential(nn.Conv2d(4, channels, 1), involution(channels, k, stride)))
    with caplog.at_level(logging.INFO, logger="dynconv.export.official_modules"):
        check_mapped(model, x64(2, 4, *hw), ["1"], Involution)
    assert any("mapped 1" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    layer = model[1]
    assert (layer.kernel_size, layer.stride, layer.groups) == (k, stride, channels // 16)
    assert layer.reduce.out_channels == channels // 4


def test_involution_keeps_training_mode_and_norm_options():
    model = randomized(nn.Sequential(involution(16, 3, 1), nn.ReLU()))
    model[0].conv1.bn.eps, model[0].conv1.bn.momentum = 1e-3, 0.03
    model.train()
    x = x64(4, 16, 6, 6)
    with torch.no_grad():
        before = model(x)
    map_third_party_modules(model)
    assert type(model[0]) is Involution and model[0].training
    assert (model[0].norm.eps, model[0].norm.momentum) == (1e-3, 0.03)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=ATOL, rtol=0)


def test_involution_near_misses_are_left_alone(caplog):
    model = randomized(nn.Sequential(involution(16, 3, 1, conv1_norm=False)))
    check_refused(model, x64(1, 16, 5, 5), caplog, "conv1")


def test_unrelated_module_with_an_authors_class_name_is_left_alone(caplog):
    class involution(nn.Module):  # noqa: N801
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    check_refused(randomized(nn.Sequential(involution())), x64(1, 4, 5, 5), caplog, "'kernel_size'")


# ----- DDF ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c, k, stride, dilation, combine, se, nonlin", [
    (8, 3, 1, 1, "mul", 0.2, "relu"), (10, 5, 2, 1, "add", 0.5, "relu"), (6, 3, 1, 2, "mul", 0.34, "linear"),
])
def test_ddf_is_mapped_exactly(c, k, stride, dilation, combine, se, nonlin):
    model = randomized(nn.Sequential(nn.Conv2d(3, c, 1), DDFPack(c, k, stride, dilation, se_ratio=se,
                                                                  nonlinearity=nonlin, kernel_combine=combine)))
    check_mapped(model, x64(2, 3, 8, 10), ["1"], dyn_ddf.DDFPack)
    assert model[1].channel_branch[1].out_channels == int(c * se)


@pytest.mark.parametrize("kwargs, reason", [
    (dict(gen_kernel_size=3), "gen_kernel_size"),
    (dict(spatial_running_mean=True), "running_mean"),
])
def test_ddf_near_misses_are_left_alone(kwargs, reason, caplog):
    model = randomized(nn.Sequential(DDFPack(8, 3, **kwargs)))
    check_refused(model, x64(1, 8, 6, 6), caplog, reason)


# ----- DRConv -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cin, cout, k, m, kwargs, hw", [
    (4, 6, 3, 4, dict(padding=1), (7, 9)),
    (3, 5, 3, 8, dict(stride=2, padding=2, dilation=2), (10, 9)),
    (5, 2, 1, 3, {}, (6, 6)),
])
def test_drconv_is_mapped_exactly(cin, cout, k, m, kwargs, hw):
    model = randomized(nn.Sequential(nn.Identity(), DRConv2d(cin, cout, k, m, **kwargs)))
    check_mapped(model, x64(2, cin, *hw), ["1"], dyn_drconv.DRConv2d)
    layer = model[1]
    assert (layer.region_num, layer.out_channels, layer.kernel_size) == (m, cout, (k, k))


def test_drconv_near_miss_is_left_alone(caplog):
    model = randomized(nn.Sequential(DRConv2d(4, 4, 3, 2, padding="same")))
    check_refused(model, x64(1, 4, 6, 6), caplog, "padding")


@pytest.mark.parametrize("cin, cout, k, kwargs, hw", [
    (4, 6, 1, dict(groups_num=4, num_W=3), (7, 9)),
    (3, 5, 3, dict(stride=2, padding=1, groups_num=8, num_W=8), (10, 9)),
    (5, 2, 3, dict(padding=2, dilation=2, bias=False, groups_num=3, num_W=2), (6, 7)),
])
def test_megvii_drconv_is_mapped_exactly(cin, cout, k, kwargs, hw):
    model = randomized(nn.Sequential(DRBlock(DRConv(cin, cout, k, **kwargs))))
    check_mapped(model, x64(2, cin, *hw), ["0.conv"], RoutedRegionConv)


def test_megvii_drconv_exports_to_the_drconv_node():
    model = randomized(nn.Sequential(DRBlock(DRConv(4, 6, 3, stride=2, padding=1, groups_num=4, num_W=3)))).float()
    x = torch.randn(1, 4, 9, 8)
    with torch.no_grad():
        expected = model(x)
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter="torchscript"))
    assert [n.op_type for n in custom_nodes(export_model(model, (x,), ExportOptions(exporter="torchscript")))] == [
        "DynconvDRConv"]
    assert_close_scaled(run_onnxruntime(proto, [x.numpy()])[0], expected.numpy())


def test_megvii_drconv_near_miss_is_left_alone(caplog):
    conv = DRConv(4, 4, 3, padding=1, groups_num=2, num_W=2)
    conv.routing_fc = nn.Linear(4, 4, bias=False)
    check_refused(randomized(nn.Sequential(DRBlock(conv))), x64(1, 4, 6, 6), caplog, "routing_fc")


# ----- timm SelectiveKernel -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cin, cout, kernels, stride, groups, keep_3x3, attn, select_bias", [
    (8, 8, (3, 5), 1, 1, True, 8, False),
    (8, 16, (3, 5, 7), 2, 4, True, 4, False),
    (6, 6, (3, 5), 1, 2, False, 3, True),
])
def test_selective_kernel_is_mapped_exactly(cin, cout, kernels, stride, groups, keep_3x3, attn, select_bias):
    sk = SelectiveKernel(cin, cout, kernels, stride, groups=groups, attn_channels=attn, keep_3x3=keep_3x3,
                         select_bias=select_bias)
    model = randomized(nn.Sequential(nn.Identity(), sk))
    check_mapped(model, x64(2, cin, 9, 8), ["1"], SKConv2d)
    layer = model[1]
    assert layer.squeeze[0].out_channels == attn
    assert (layer.select.bias is not None) == select_bias


@pytest.mark.parametrize("kwargs, reason", [
    (dict(split_input=True), "split_input"),
    (dict(dilation=2), "kernel/dilation"),
    (dict(stride=3), "padding"),
])
def test_selective_kernel_near_misses_are_left_alone(kwargs, reason, caplog):
    model = randomized(nn.Sequential(SelectiveKernel(8, 8, **kwargs)))
    check_refused(model, x64(1, 8, 9, 9), caplog, reason)


# ----- DynamicConv and CondConv -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cin, cout, k, stride, padding, groups, bias, experts, temperature, fc2_bias", [
    (8, 6, 3, 1, 1, 1, True, 4, 31, True),
    (3, 4, 5, 2, 2, 1, False, 3, 1, True),
    (12, 8, 1, 1, 0, 4, True, 2, 4, False),
])
def test_dynamic_conv_is_mapped_exactly(cin, cout, k, stride, padding, groups, bias, experts, temperature, fc2_bias):
    conv = Dynamic_conv2d(cin, cout, k, stride=stride, padding=padding, groups=groups, bias=bias, K=experts,
                          temperature=temperature, fc2_bias=fc2_bias)
    model = randomized(nn.Sequential(nn.Identity(), conv))
    check_mapped(model, x64(3, cin, 7, 8), ["1"], dyn_dynamic.DynamicConv2d)
    assert model[1].temperature == temperature
    assert model[1].fc1.out_features == (int(cin * 0.25) + 1 if cin != 3 else experts)


def test_dynamic_conv_near_miss_is_left_alone(caplog):
    model = randomized(nn.Sequential(Dynamic_conv2d(4, 4, 3, padding="same")))
    check_refused(model, x64(1, 4, 6, 6), caplog, "padding")


@pytest.mark.parametrize("cin, cout, k, stride, padding, groups, bias, experts", [
    (8, 6, 3, 1, 1, 1, False, 4), (6, 6, 3, 2, 1, 3, True, 3), (4, 8, 1, 1, 0, 1, True, 2),
])
def test_condconv_is_mapped_exactly(cin, cout, k, stride, padding, groups, bias, experts):
    model = randomized(CondBlock(CondConv2d(cin, cout, k, stride, padding, 1, groups, bias, experts), experts))
    check_mapped(model, x64(2, cin, 7, 6), ["conv"], dyn_dynamic.CondConv2d)
    assert model.conv.routing is None


def test_condconv_with_dynamic_padding_is_left_alone(caplog):
    model = randomized(CondBlock(CondConv2d(4, 4, 3, 2, 0, dynamic_padding=True), 4))
    check_refused(model, x64(1, 4, 6, 6), caplog, "dynamic_padding")


# ----- dynconv's own classes, nesting, export -------------------------------------------------------------------------
def test_dynconvs_own_layers_are_not_touched(caplog):
    model = nn.Sequential(dyn_ddf.DDFPack(8), dyn_drconv.DRConv2d(8, 8, 3, 2, padding=1),
                          dyn_dynamic.CondConv2d(8, 8, 3, padding=1), Involution(16, 3))
    with caplog.at_level(logging.WARNING):
        assert map_official_modules(model) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_nested_modules_are_found_and_listed_in_order():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 1)
            self.inv = involution(16, 3, 1)
            self.sk = SelectiveKernel(16, 16, attn_channels=4)
            self.dy = Dynamic_conv2d(16, 8, 3, padding=1)

        def forward(self, x):
            return self.dy(self.sk(self.inv(self.stem(x))))

    model = randomized(nn.Sequential(Block(), DDFPack(8)))
    check_mapped_types = {"0.inv": Involution, "0.sk": SKConv2d, "0.dy": dyn_dynamic.DynamicConv2d,
                          "1": dyn_ddf.DDFPack}
    x = x64(2, 3, 6, 6)
    with torch.no_grad():
        before = model(x)
    assert map_third_party_modules(model) == list(check_mapped_types)
    for name, cls in check_mapped_types.items():
        assert type(model.get_submodule(name)) is cls
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=ATOL, rtol=0)
    assert map_third_party_modules(model) == []  # idempotent


def test_mapped_models_export():
    model = nn.Sequential(nn.Conv2d(3, 16, 1), involution(16, 3, 1), DDFPack(16, 3),
                          SelectiveKernel(16, 16, attn_channels=4)).eval()
    map_third_party_modules(model)
    x = torch.randn(1, 3, 8, 8)
    proto = export_model(model, (x,), ExportOptions(target="onnx"))
    with torch.no_grad():
        assert_close_scaled(run_onnxruntime(proto, [x.numpy()])[0], model(x))


def test_cli_exports_a_pickled_model_with_an_authors_module(tmp_path, capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), involution(16, 3, 2)).eval()
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 12, 10)
    with torch.no_grad():
        expected = model(x)
    path = tmp_path / "model.pt"
    torch.save(model, path)
    common = [str(path), "--input-shape", "1x3x12x10", "--allow-pickle"]
    assert main([*common, "-o", str(tmp_path / "ref.onnx"), "--target", "onnx"]) == 0, capsys.readouterr().err
    assert_close_scaled(run_onnxruntime(onnx.load(tmp_path / "ref.onnx"), [x.numpy()])[0], expected)
    assert main([*common, "-o", str(tmp_path / "trt.onnx")]) == 0, capsys.readouterr().err
    assert [n.op_type for n in custom_nodes(onnx.load(tmp_path / "trt.onnx"))] == ["DynconvInvolution"]


# ----- look-alikes: OpenGVLab InternImage DCNv3_pytorch and DCNv4 -------------------------------------------
class to_channels_last(nn.Module):  # noqa: N801
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class DCNv3_pytorch(nn.Module):  # noqa: N801
    def __init__(self, channels=64, kernel_size=3, dw_kernel_size=None, stride=1, pad=1, dilation=1, group=4,
                 offset_scale=1.0, center_feature_scale=False, remove_center=False, act=nn.GELU):
        super().__init__()
        dw_kernel_size = dw_kernel_size if dw_kernel_size is not None else kernel_size
        self.channels, self.kernel_size, self.dw_kernel_size, self.stride = channels, kernel_size, dw_kernel_size, stride
        self.dilation, self.pad, self.group, self.group_channels = dilation, pad, group, channels // group
        self.offset_scale, self.center_feature_scale, self.remove_center = offset_scale, center_feature_scale, int(remove_center)
        points = kernel_size * kernel_size - self.remove_center
        self.dw_conv = nn.Sequential(
            nn.Conv2d(channels, channels, dw_kernel_size, 1, (dw_kernel_size - 1) // 2, groups=channels),
            nn.Sequential(to_channels_last(), nn.LayerNorm(channels, eps=1e-6)), act())
        self.offset = nn.Linear(channels, group * points * 2)
        self.mask = nn.Linear(channels, group * points)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        if center_feature_scale:
            self.center_feature_scale_proj_weight = nn.Parameter(torch.zeros(group, channels))
            self.center_feature_scale_proj_bias = nn.Parameter(torch.zeros(group))

    def _gate(self, x, x_proj, source):
        scale = F.linear(source, self.center_feature_scale_proj_weight, self.center_feature_scale_proj_bias).sigmoid()
        scale = scale[..., None].repeat(1, 1, 1, 1, self.group_channels).flatten(-2)
        return x * (1 - scale) + x_proj * scale

    def forward(self, x):
        n, h, w, _ = x.shape
        x_proj = self.input_proj(x)
        x1 = self.dw_conv(x.permute(0, 3, 1, 2))
        offset = self.offset(x1)
        mask = self.mask(x1).reshape(n, h, w, self.group, -1).softmax(-1).reshape(n, h, w, -1)
        k = self.kernel_size
        y = dyn_dcnv3.dcnv3_reference(x_proj, offset, mask, (k, k), (self.stride,) * 2, (self.pad,) * 2,
                                      (self.dilation,) * 2, self.group, self.group_channels, self.offset_scale,
                                      self.remove_center)
        if self.center_feature_scale:
            y = self._gate(y, x_proj, x1)
        return self.output_proj(y)


class DCNv4(nn.Module):
    def __init__(self, channels=64, kernel_size=3, stride=1, pad=1, dilation=1, group=4, offset_scale=1.0,
                 dw_kernel_size=None, center_feature_scale=False, remove_center=False, output_bias=True,
                 without_pointwise=False):
        super().__init__()
        self.channels, self.kernel_size, self.stride, self.pad, self.dilation = channels, kernel_size, stride, pad, dilation
        self.group, self.group_channels, self.offset_scale = group, channels // group, offset_scale
        self.dw_kernel_size, self.center_feature_scale = dw_kernel_size, center_feature_scale
        self.remove_center, self.without_pointwise = int(remove_center), without_pointwise
        self.K = kernel_size * kernel_size - self.remove_center
        if dw_kernel_size is not None:
            self.offset_mask_dw = nn.Conv2d(channels, channels, dw_kernel_size, 1, (dw_kernel_size - 1) // 2,
                                            groups=channels)
        self.offset_mask = nn.Linear(channels, int(-(-group * self.K * 3 // 8) * 8))
        if not without_pointwise:
            self.value_proj = nn.Linear(channels, channels)
            self.output_proj = nn.Linear(channels, channels, bias=output_bias)
        if center_feature_scale:
            self.center_feature_scale_proj_weight = nn.Parameter(torch.zeros(group, channels))
            self.center_feature_scale_proj_bias = nn.Parameter(torch.zeros(group))

    def forward(self, input, shape=None):  # noqa: A002 (the original's name)
        n, length, c = input.shape
        h, w = shape
        x = input if self.without_pointwise else self.value_proj(input)
        x = x.reshape(n, h, w, -1)
        om_in = input
        if self.dw_kernel_size is not None:
            om_in = self.offset_mask_dw(input.view(n, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(n, length, c)
        om = self.offset_mask(om_in).reshape(n, h, w, -1)
        g, p = self.group, self.K
        per_group = om[..., :g * p * 3].reshape(n, h, w, g, 3 * p)
        offset = per_group[..., :2 * p].reshape(n, h, w, g * 2 * p)
        mask = per_group[..., 2 * p:].reshape(n, h, w, g * p)
        k = self.kernel_size
        y = dyn_dcnv3.dcnv3_reference(x, offset, mask, (k, k), (self.stride,) * 2, (self.pad,) * 2,
                                      (self.dilation,) * 2, g, self.group_channels, self.offset_scale, self.remove_center)
        if self.center_feature_scale:
            scale = F.linear(y, self.center_feature_scale_proj_weight, self.center_feature_scale_proj_bias).sigmoid()
            scale = scale[..., None].repeat(1, 1, 1, 1, self.group_channels).flatten(-2)
            y = y * (1 - scale) + x * scale
        y = y.reshape(n, length, -1)
        return y if self.without_pointwise else self.output_proj(y)


class TokenBlock(nn.Module):
    """FlashInternImage-style caller: [N, H, W, C] map -> tokens -> DCNv4(tokens, shape) -> map."""

    def __init__(self, layer):
        super().__init__()
        self.dcn = layer

    def forward(self, x):
        n, h, w, c = x.shape
        return self.dcn(x.reshape(n, h * w, c), (h, w)).reshape(n, h, w, -1)


# InternImage-T/L/H stage configurations (channels, group, offset_scale, dw_kernel_size, centre scaling).
@pytest.mark.parametrize("channels, group, scale, dw, cfs, rc", [
    (64, 4, 1.0, None, False, False), (160, 10, 2.0, None, False, True), (64, 2, 1.0, 5, True, False)])
def test_internimage_dcnv3_is_mapped_exactly(channels, group, scale, dw, cfs, rc):
    layer = DCNv3_pytorch(channels, 3, dw, 1, 1, 1, group, scale, cfs, rc)
    model = randomized(nn.Sequential(nn.Linear(channels, channels), layer))
    model[1].dw_conv[1][1].eps = 1e-5
    mapped = check_mapped(model, x64(2, 7, 6, channels), ["1"], dyn_dcnv3.DCNv3)
    assert mapped[1].dw_conv[1][1].eps == 1e-5


@pytest.mark.parametrize("dw, output_bias, without_pointwise, cfs, scale", [
    (None, False, False, False, 1.0), (3, True, False, True, 0.5), (3, False, True, False, 2.0)])
def test_dcnv4_is_mapped_exactly_and_keeps_the_token_call(dw, output_bias, without_pointwise, cfs, scale):
    layer = DCNv4(64, 3, 1, 1, 1, 4, scale, dw, cfs, False, output_bias, without_pointwise)
    model = randomized(TokenBlock(layer))
    mapped = check_mapped(model, x64(2, 5, 7, 64), ["dcn"], dyn_dcnv3.DCNv4)
    assert (getattr(mapped.dcn, "output_proj", None) is None or
            (mapped.dcn.output_proj.bias is not None) == output_bias)


def test_dcnv3_with_another_activation_is_left_alone(caplog):
    model = randomized(nn.Sequential(nn.Identity(), DCNv3_pytorch(32, group=2, act=nn.ReLU)))
    check_refused(model, x64(1, 5, 5, 32), caplog, "dw_conv.2 is not GELU")
