"""Map the original authors' PyTorch modules onto dynconv's layers (weights carried over, same outputs).

The authors' code is not pip-installable, so modules are recognised by duck typing: the class name
plus the exact submodule structure, parameter shapes and options of the released code. A module whose
class name matches but whose structure or options dynconv cannot reproduce exactly is left alone and
logged at WARNING with the reason; every mapped module is logged at INFO.

What is mapped (class name, origin -> dynconv layer):

- ``involution`` (d-li14/involution, mmcv ``ConvModule`` form; reduction 4, 16 channels per group,
  padding ``(k-1)//2``, no dilation) -> :class:`~dynconv.plugins.involution.Involution`
  (``conv1.conv`` -> ``reduce``, ``conv1.bn`` -> ``norm``, ``conv2.conv`` -> ``span``).
- ``DDFPack`` (theFoxofSky/ddfnet) -> :class:`~dynconv.plugins.ddf.DDFPack` (identical keys except the
  channel FilterNorm's learnable ``std`` -> ``gamma``; the spatial FilterNorm's fixed gain is copied).
  Refused: ``head != 1`` (the official op implements one head only), ``gen_kernel_size > 1`` (a
  depthwise conv in the spatial branch), a ``running_mean`` FilterNorm, a spatial FilterNorm with
  ``running_std``, a channel FilterNorm without it.
- ``DRConv2d`` (shallowtoil/DRConv-PyTorch, paper form) -> :class:`~dynconv.plugins.drconv.DRConv2d`
  (``conv_guide`` -> ``guide``, ``conv_kernel.{1,3}`` -> ``filter_generator.{1,3}``). Refused: kwargs
  other than stride/padding/dilation, string padding, grouped or non-zero-padded guide convs.
- ``DRConv`` (megvii-research/DRConv, official; ``forward(inputs, mask, Alpha, ...)`` with the region
  mask computed by the enclosing block) -> :class:`~dynconv.export.official_megvii.RoutedRegionConv`
  (same keys: the routed filter bank ``weight``, ``bias``, ``routing_fc``; the mask, nearest-resized
  to the output size, becomes a one-hot guide of the DRConv op). Refused: a routing layer other than
  ``Linear(C, groups_num*num_W)`` with bias, non-int or string geometry.
- ``SelectiveKernel`` (timm; ``SelectiveKernelConv`` in old releases) ->
  :class:`~dynconv.plugins.skconv.SKConv2d` with ``select_bias`` as the source (``paths.i.conv/bn`` ->
  ``branches.i.0/1``, ``attn.fc_reduce/bn/fc_select`` -> ``squeeze.0/squeeze.1/select``). Refused:
  ``split_input=True`` (each path sees a slice of the input channels), a kernel/dilation layout other
  than dynconv's (3x3 with dilation ``1+i``, or kernel ``3+2i`` undilated; so no module-level
  dilation), padding other than ``d*(k-1)//2`` (timm pads asymmetrically-rounded for stride >= 3),
  anti-aliasing/drop layers, activations other than ReLU.
- ``Dynamic_conv2d`` (kaijieshi7/Dynamic-convolution-Pytorch) ->
  :class:`~dynconv.plugins.dynamic_conv.DynamicConv2d`: ``attention.fc1/fc2`` 1x1 conv weights become
  the Linear weights (a missing bias becomes zero), ``temperature`` is copied from the module's
  ``attention.temperature`` as it is now (the annealing schedule is the user's). Refused: string
  padding, non-square kernels that disagree with ``kernel_size``.
- ``CondConv2d`` (timm) -> :class:`~dynconv.plugins.dynamic_conv.CondConv2d` built with
  ``external_routing=True``: both take ``forward(x, routing_weights)`` with ``routing_weights [N, K]``
  computed by the enclosing block, so callers need no change. Expert weights ``[K, O*C/g*kh*kw]`` are
  reshaped to ``[K, O, C/g, kh, kw]``. Refused: TF-"same" padding computed at run time
  (``dynamic_padding=True``; dynconv convolutions take a fixed symmetric padding).

- ``DCNv3`` / ``DCNv3_pytorch`` (OpenGVLab/InternImage, NHWC) -> :class:`~dynconv.plugins.dcnv3.DCNv3`
  (identical keys; the LayerNorm eps is copied). Refused: offset branches other than
  DWConv -> LayerNorm -> GELU (the only ``norm_layer``/``act_layer`` InternImage releases use).
- ``DCNv4`` (OpenGVLab/DCNv4, FlashInternImage) -> :class:`~dynconv.plugins.dcnv3.DCNv4` (identical keys;
  ``output_bias`` follows the checkpoint; ``forward(x, shape)`` on ``[N, H*W, C]`` tokens as the original).

dynconv's own classes of the same names (``DDFPack``, ``DRConv2d``, ``CondConv2d``, ``DCNv3``, ``DCNv4``)
are never touched.
"""

from __future__ import annotations

import logging
import numbers
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..plugins.dcnv3 import DCNv3, DCNv4
from ..plugins.ddf import DDFPack
from ..plugins.drconv import DRConv2d
from ..plugins.dynamic_conv import CondConv2d, DynamicConv2d
from ..plugins.involution import Involution
from ..plugins.skconv import SKConv2d
from .official_megvii import RoutedRegionConv

log = logging.getLogger(__name__)

_DYNCONV_CLASSES = (Involution, DDFPack, DRConv2d, SKConv2d, DynamicConv2d, CondConv2d, DCNv3, DCNv4)


class Unmappable(Exception):
    """The module looks like an author's module but dynconv cannot reproduce it exactly (message: why)."""


def _require(condition: object, reason: str) -> None:
    if not condition:
        raise Unmappable(reason)


# ----- structural checks ------------------------------------------------------------------------------
def _child(module: nn.Module, name: str) -> nn.Module:
    child = getattr(module, name, None)
    _require(isinstance(child, nn.Module), f"no submodule '{name}'")
    return child


def _pair(value: object, what: str) -> tuple[int, int]:
    """``value`` as an (int, int) pair; strings ('same', 'valid') and other forms are refused."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise Unmappable(f"{what}={value!r} is not an int or an (int, int) pair")


def _conv(conv: nn.Module, what: str, *, in_channels: int | None = None, out_channels: int | None = None,
          kernel: int | tuple[int, int] | None = None, groups: int | None = 1, bias: bool | None = None,
          stride: int | None = None, pointwise: bool = False) -> nn.Conv2d:
    """``conv`` if it is a plain ``nn.Conv2d`` with the given properties (None: any)."""
    _require(isinstance(conv, nn.Conv2d) and type(conv).forward is nn.Conv2d.forward,
             f"{what} is a {type(conv).__name__}, not a plain nn.Conv2d")
    _require(conv.padding_mode == "zeros", f"{what} uses padding_mode={conv.padding_mode!r}")
    _require(not isinstance(conv.padding, str), f"{what} uses padding={conv.padding!r}")
    checks = {"in_channels": (conv.in_channels, in_channels), "out_channels": (conv.out_channels, out_channels),
              "groups": (conv.groups, groups), "bias": (conv.bias is not None, bias)}
    if kernel is not None:
        checks["kernel_size"] = (tuple(conv.kernel_size), kernel if isinstance(kernel, tuple) else (kernel, kernel))
    if stride is not None:
        checks["stride"] = (tuple(conv.stride), (stride, stride))
    for key, (got, want) in checks.items():
        _require(want is None or got == want, f"{what} has {key}={got}, expected {want}")
    if pointwise:
        _require(tuple(conv.kernel_size) == (1, 1) and tuple(conv.padding) == (0, 0)
                 and tuple(conv.dilation) == (1, 1), f"{what} is not a 1x1 convolution")
    return conv


def _batch_norm(norm: nn.Module, what: str, channels: int, allow_act: bool = False) -> _BatchNorm:
    """``norm`` if it is an affine, tracking 2-D batch norm of ``channels`` features.

    ``allow_act``: timm's ``BatchNormAct2d`` (a BatchNorm2d with ``act``/``drop`` children, applied
    after the normalisation) is accepted; the caller checks those children.
    """
    plain = isinstance(norm, (nn.BatchNorm2d, nn.SyncBatchNorm)) and type(norm).forward in (
        nn.BatchNorm2d.forward, nn.SyncBatchNorm.forward)
    timm_act = allow_act and isinstance(norm, nn.BatchNorm2d) and type(norm).__name__ == "BatchNormAct2d"
    _require(plain or timm_act, f"{what} is a {type(norm).__name__}, not a BatchNorm2d")
    _require(norm.num_features == channels, f"{what} has {norm.num_features} features, expected {channels}")
    _require(norm.affine and norm.track_running_stats and norm.running_mean is not None,
             f"{what} is not affine with running statistics")
    return norm


def _is_identity(module: object) -> bool:
    return module is None or type(module) is nn.Identity or (isinstance(module, nn.Sequential) and len(module) == 0)


def _only_children(module: nn.Module, allowed: Iterable[str], what: str) -> None:
    extra = sorted(set(dict(module.named_children())) - set(allowed))
    _require(not extra, f"{what} has unexpected submodules {extra}")


def _relu(module: object, what: str) -> None:
    _require(type(module) is nn.ReLU, f"{what} is {type(module).__name__}, not ReLU")


# ----- weights ----------------------------------------------------------------------------------------
def _load(dst: nn.Module, src: nn.Module, renames: Iterable[tuple[str, str | None]],
          extra: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Give ``dst`` the dtype/device/mode of ``src`` and load ``src``'s state, key prefixes renamed.

    A rename to None drops the source keys (``extra`` supplies them converted). Every source key must
    be covered by a rename (else the source has state dynconv would ignore), and ``dst`` must end up
    fully loaded with matching shapes.
    """
    first = next(iter(src.parameters()))
    dst.to(device=first.device, dtype=first.dtype)
    renames = list(renames)
    state: dict[str, torch.Tensor] = {}
    for key, value in src.state_dict().items():
        rule = next(((src_prefix, dst_prefix) for src_prefix, dst_prefix in renames if key.startswith(src_prefix)),
                    None)
        _require(rule is not None, f"unexpected parameter or buffer '{key}'")
        if rule[1] is not None:
            state[rule[1] + key[len(rule[0]):]] = value
    state.update(extra or {})
    expected = dst.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    _require(not missing and not unexpected, f"state does not line up (missing {missing}, unexpected {unexpected})")
    for key, value in expected.items():
        _require(state[key].shape == value.shape,
                 f"'{key}' has shape {tuple(state[key].shape)}, dynconv expects {tuple(value.shape)}")
    dst.load_state_dict(state, strict=True)
    return dst.train(src.training)


def _copy_norm_options(dst: _BatchNorm, src: _BatchNorm) -> None:
    dst.eps, dst.momentum = src.eps, src.momentum


def _int_attr(module: nn.Module, name: str) -> int:
    value = getattr(module, name, None)
    _require(isinstance(value, numbers.Integral) and not isinstance(value, bool), f"'{name}' is {value!r}, not an int")
    return int(value)


# ----- converters -------------------------------------------------------------------------------------
def from_official_involution(module: nn.Module) -> Involution:
    """d-li14/involution ``involution(channels, kernel_size, stride)`` -> :class:`Involution`."""
    k, stride, channels = (_int_attr(module, n) for n in ("kernel_size", "stride", "channels"))
    group_channels, groups = _int_attr(module, "group_channels"), _int_attr(module, "groups")
    _require(k % 2 == 1, f"kernel_size={k} is even (dynconv centres odd windows)")
    _require(stride >= 1 and group_channels >= 1 and groups * group_channels == channels,
             f"channels={channels} is not groups={groups} x group_channels={group_channels}")
    _only_children(module, ("conv1", "conv2", "avgpool", "unfold"), "the module")
    conv1, conv2 = _child(module, "conv1"), _child(module, "conv2")
    _only_children(conv1, ("conv", "bn", "activate"), "conv1")
    _only_children(conv2, ("conv",), "conv2 (no norm or activation expected)")
    _require(tuple(getattr(conv1, "order", ("conv", "norm", "act"))) == ("conv", "norm", "act"),
             f"conv1 applies its layers in order {getattr(conv1, 'order', None)}")
    reduce = _conv(_child(conv1, "conv"), "conv1.conv", in_channels=channels, bias=False, pointwise=True, stride=1)
    hidden = reduce.out_channels
    norm = _batch_norm(_child(conv1, "bn"), "conv1.bn", hidden)
    _relu(_child(conv1, "activate"), "conv1.activate")
    _conv(_child(conv2, "conv"), "conv2.conv", in_channels=hidden, out_channels=k * k * groups, bias=True,
          pointwise=True, stride=1)
    if stride > 1:
        pool = _child(module, "avgpool")
        _require(type(pool) is nn.AvgPool2d and _pair(pool.kernel_size, "avgpool.kernel_size") == (stride, stride)
                 and _pair(pool.stride, "avgpool.stride") == (stride, stride)
                 and _pair(pool.padding, "avgpool.padding") == (0, 0),
                 f"avgpool is not AvgPool2d({stride}, {stride})")
    unfold = getattr(module, "unfold", None)
    if unfold is not None:  # the unfold form; the CUDA form has none
        _require(type(unfold) is nn.Unfold
                 and _pair(unfold.kernel_size, "unfold.kernel_size") == (k, k)
                 and _pair(unfold.dilation, "unfold.dilation") == (1, 1)
                 and _pair(unfold.padding, "unfold.padding") == ((k - 1) // 2,) * 2
                 and _pair(unfold.stride, "unfold.stride") == (stride, stride),
                 f"unfold is not Unfold({k}, 1, {(k - 1) // 2}, {stride})")
    _require(1 <= hidden <= channels and channels // (channels // hidden) == hidden,
             f"conv1 width {hidden} is not channels // r for any integer r")
    layer = Involution(channels, k, stride, reduction_ratio=channels // hidden, group_channels=group_channels)
    _copy_norm_options(layer.norm, norm)
    return _load(layer, module, [("conv1.conv.", "reduce."), ("conv1.bn.", "norm."), ("conv2.conv.", "span.")])


def _filter_norm(fn: nn.Module, what: str, filter_type: str, channels: int) -> None:
    _require(type(fn).__name__ == "FilterNorm", f"{what} is a {type(fn).__name__}, not a FilterNorm")
    got_type, got_channels = getattr(fn, "filter_type", None), getattr(fn, "in_channels", None)
    _require(got_type == filter_type, f"{what} has filter_type {got_type!r}")
    _require(got_channels == channels, f"{what} has in_channels {got_channels}")
    # the official attributes are spelt runing_std / runing_mean
    running_mean = getattr(fn, "runing_mean", getattr(fn, "running_mean", False))
    _require(not running_mean, f"{what} uses running_mean (a learnt offset dynconv's FilterNorm has not)")


def from_official_ddf(module: nn.Module) -> DDFPack:
    """theFoxofSky/ddfnet ``DDFPack`` -> :class:`DDFPack`."""
    k, stride, dilation, head = (_int_attr(module, n) for n in ("kernel_size", "stride", "dilation", "head"))
    combine = getattr(module, "kernel_combine", None)
    _require(combine in ("mul", "add"), f"kernel_combine={combine!r}")
    _require(k % 2 == 1 and k >= 3, f"kernel_size={k} is not odd and >= 3")
    _require(head == 1, f"head={head} (the official DDF op implements head=1 only)")
    _only_children(module, ("spatial_branch", "channel_branch"), "the module")
    spatial, channel = _child(module, "spatial_branch"), _child(module, "channel_branch")
    _require(type(spatial) is nn.Sequential and len(spatial) == 2,
             "spatial_branch is not [Conv1x1, FilterNorm] (gen_kernel_size > 1 adds a depthwise conv)")
    gen = _conv(spatial[0], "spatial_branch.0", out_channels=head * k * k, bias=True, pointwise=True, stride=stride)
    in_channels = gen.in_channels
    _filter_norm(spatial[1], "spatial_branch.1", "spatial", head)
    _require(not getattr(spatial[1], "runing_std", getattr(spatial[1], "running_std", False))
             and isinstance(getattr(spatial[1], "std", None), numbers.Real),
             "spatial_branch.1 uses a learnt running_std (dynconv's spatial FilterNorm has a fixed gain)")
    _require(type(channel) is nn.Sequential and len(channel) == 5,
             "channel_branch is not [GAP, Conv1x1, ReLU, Conv1x1, FilterNorm]")
    _require(type(channel[0]) is nn.AdaptiveAvgPool2d and channel[0].output_size in (1, (1, 1)),
             "channel_branch.0 is not AdaptiveAvgPool2d(1)")
    squeeze = _conv(channel[1], "channel_branch.1", in_channels=in_channels, bias=True, pointwise=True, stride=1)
    mid = squeeze.out_channels
    _relu(channel[2], "channel_branch.2")
    _conv(channel[3], "channel_branch.3", in_channels=mid, out_channels=in_channels * k * k, bias=True,
          pointwise=True, stride=1)
    _filter_norm(channel[4], "channel_branch.4", "channel", in_channels)
    std = getattr(channel[4], "std", None)
    _require(isinstance(std, torch.Tensor) and tuple(std.shape) == (in_channels * k * k,),
             "channel_branch.4 has no learnt running_std of C*k*k values")
    layer = DDFPack(in_channels, k, stride, dilation, head, se_ratio=(mid + 0.5) / in_channels,
                    kernel_combine=combine)
    layer.spatial_branch[1].gain = float(spatial[1].std)
    return _load(layer, module, [("spatial_branch.0.", "spatial_branch.0."), ("channel_branch.1.", "channel_branch.1."),
                                 ("channel_branch.3.", "channel_branch.3."),
                                 ("channel_branch.4.std", "channel_branch.4.gamma")])


def from_official_drconv(module: nn.Module) -> DRConv2d:
    """shallowtoil/DRConv-PyTorch ``DRConv2d`` -> :class:`DRConv2d`."""
    m = _int_attr(module, "region_num")
    _only_children(module, ("conv_kernel", "conv_guide", "corr"), "the module")
    guide = _conv(_child(module, "conv_guide"), "conv_guide", out_channels=m, bias=True)
    kernel = _pair(tuple(guide.kernel_size), "conv_guide.kernel_size")
    _require(kernel[0] == kernel[1], f"conv_guide has a non-square kernel {kernel}")
    stride, padding, dilation = tuple(guide.stride), _pair(tuple(guide.padding), "padding"), tuple(guide.dilation)
    kwargs = getattr(module, "kwargs", {})
    _require(isinstance(kwargs, dict) and set(kwargs) <= {"stride", "padding", "dilation"},
             f"kwargs {sorted(kwargs) if isinstance(kwargs, dict) else kwargs!r} go beyond stride/padding/dilation")
    for key, value in kwargs.items():
        _require(_pair(value, key) == {"stride": stride, "padding": padding, "dilation": dilation}[key],
                 f"kwargs {key}={value!r} differs from conv_guide's")
    c = guide.in_channels
    gen = _child(module, "conv_kernel")
    _require(type(gen) is nn.Sequential and len(gen) == 4, "conv_kernel is not [AdaptiveAvgPool, Conv, Sigmoid, Conv]")
    _require(type(gen[0]) is nn.AdaptiveAvgPool2d and _pair(gen[0].output_size, "pool size") == kernel,
             f"conv_kernel.0 is not AdaptiveAvgPool2d({kernel})")
    _conv(gen[1], "conv_kernel.1", in_channels=c, out_channels=m * m, bias=True, pointwise=True, stride=1)
    _require(type(gen[2]) is nn.Sigmoid, "conv_kernel.2 is not Sigmoid")
    last = _conv(gen[3], "conv_kernel.3", in_channels=m * m, groups=m, bias=True, pointwise=True, stride=1)
    _require(last.out_channels % (m * c) == 0, f"conv_kernel.3 width {last.out_channels} is not a multiple of m*C")
    layer = DRConv2d(c, last.out_channels // (m * c), kernel, m, stride, padding, dilation)
    return _load(layer, module, [("conv_guide.", "guide."), ("conv_kernel.1.", "filter_generator.1."),
                                 ("conv_kernel.3.", "filter_generator.3.")])


def from_megvii_drconv(module: nn.Module) -> RoutedRegionConv:
    """megvii-research/DRConv ``DRConv`` (region mask from outside, routed filter bank) -> :class:`RoutedRegionConv`."""
    c, o = _int_attr(module, "in_channels"), _int_attr(module, "out_channels")
    m, experts = _int_attr(module, "groups_num"), _int_attr(module, "num_W")
    kernel, stride = _pair(module.kernel_size, "kernel_size"), _pair(module.stride, "stride")
    padding, dilation = _pair(module.padding, "padding"), _pair(module.dilation, "dilation")
    _only_children(module, ("routing_fc", "deformable_matmul3"), "the module")
    fc = _child(module, "routing_fc")
    _require(type(fc) is nn.Linear and (fc.in_features, fc.out_features) == (c, m * experts) and fc.bias is not None,
             f"routing_fc is not Linear({c}, {m * experts}) with bias")
    layer = RoutedRegionConv(c, o, kernel, stride, padding, dilation, m, experts, module.bias is not None)
    return _load(layer, module, [("weight", "weight"), ("bias", "bias"), ("routing_fc.", "routing_fc.")])


def from_timm_selective_kernel(module: nn.Module) -> SKConv2d:
    """timm ``SelectiveKernel`` (split_input=False) -> :class:`SKConv2d`."""
    _require(getattr(module, "split_input", None) is False,
             "split_input=True (each path convolves a slice of the input channels; SKConv2d feeds all of them)")
    _only_children(module, ("paths", "attn"), "the module")
    paths = _child(module, "paths")
    _require(isinstance(paths, nn.ModuleList) and len(paths) >= 1, "paths is not a non-empty ModuleList")
    m = len(paths)
    convs = []
    for i, path in enumerate(paths):
        _only_children(path, ("conv", "bn", "act", "aa", "drop"), f"paths.{i}")
        conv = _conv(_child(path, "conv"), f"paths.{i}.conv", groups=None, bias=False)
        norm = _batch_norm(_child(path, "bn"), f"paths.{i}.bn", conv.out_channels, allow_act=True)
        _require(_is_identity(getattr(path, "aa", None)) and _is_identity(getattr(norm, "drop", None))
                 and _is_identity(getattr(path, "drop", None)), f"paths.{i} has anti-aliasing or drop layers")
        acts = [a for a in (getattr(norm, "act", None), getattr(path, "act", None)) if not _is_identity(a)]
        _require(len(acts) == 1, f"paths.{i} has {len(acts)} activations, expected one ReLU")
        _relu(acts[0], f"paths.{i} activation")
        convs.append(conv)
    first = convs[0]
    cin, cout, groups, stride = first.in_channels, first.out_channels, first.groups, tuple(first.stride)
    _require(stride[0] == stride[1], f"paths.0 has a non-square stride {stride}")
    for i, conv in enumerate(convs):
        _require((conv.in_channels, conv.out_channels, conv.groups, tuple(conv.stride)) == (cin, cout, groups, stride),
                 f"paths.{i} differs from paths.0 in channels, groups or stride")
    layouts = {"dilated": [(3, 1 + i) for i in range(m)], "undilated": [(3 + 2 * i, 1) for i in range(m)]}
    got = [(conv.kernel_size, conv.dilation) for conv in convs]
    dilated = next((name == "dilated" for name, layout in layouts.items()
                    if got == [((k, k), (d, d)) for k, d in layout]), None)
    _require(dilated is not None, f"kernel/dilation per path {got} is neither 3x3 with dilation 1+i nor "
                                  "(3+2i)x(3+2i) undilated (keep_3x3 with dilation > 1?)")
    for i, conv in enumerate(convs):
        k, d = conv.kernel_size[0], conv.dilation[0]
        _require(tuple(conv.padding) == (d * (k - 1) // 2,) * 2,
                 f"paths.{i}.conv padding {tuple(conv.padding)} is not d*(k-1)//2 = {d * (k - 1) // 2}")
    attn = _child(module, "attn")
    _only_children(attn, ("fc_reduce", "bn", "act", "fc_select"), "attn")
    _require(getattr(attn, "num_paths", m) == m, f"attn.num_paths={getattr(attn, 'num_paths', None)} != {m} paths")
    reduce = _conv(_child(attn, "fc_reduce"), "attn.fc_reduce", in_channels=cout, bias=False, pointwise=True, stride=1)
    hidden = reduce.out_channels
    attn_norm = _batch_norm(_child(attn, "bn"), "attn.bn", hidden)
    _relu(_child(attn, "act"), "attn.act")
    select = _conv(_child(attn, "fc_select"), "attn.fc_select", in_channels=hidden, out_channels=m * cout,
                   pointwise=True, stride=1)
    # reduction > cout makes cout // reduction 0, so the hidden width is exactly min_dim
    layer = SKConv2d(cin, cout, m, stride[0], groups, reduction=cout + 1, min_dim=hidden, dilated=dilated,
                     select_bias=select.bias is not None)
    for i in range(m):
        _copy_norm_options(layer.branches[i][1], paths[i].bn)
    _copy_norm_options(layer.squeeze[1], attn_norm)
    renames = [(f"paths.{i}.conv.", f"branches.{i}.0.") for i in range(m)]
    renames += [(f"paths.{i}.bn.", f"branches.{i}.1.") for i in range(m)]
    renames += [("attn.fc_reduce.", "squeeze.0."), ("attn.bn.", "squeeze.1."), ("attn.fc_select.", "select.")]
    return _load(layer, module, renames)


def from_official_dynamic_conv(module: nn.Module) -> DynamicConv2d:
    """kaijieshi7/Dynamic-convolution-Pytorch ``Dynamic_conv2d`` -> :class:`DynamicConv2d`."""
    experts = _int_attr(module, "K")
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    _require(isinstance(weight, nn.Parameter) and weight.dim() == 5 and weight.shape[0] == experts,
             "weight is not a [K, O, C/g, k, k] parameter")
    _require(bias is None or (isinstance(bias, nn.Parameter) and tuple(bias.shape) == tuple(weight.shape[:2])),
             "bias is not None or a [K, O] parameter")
    groups = _int_attr(module, "groups")
    out_channels, in_channels = weight.shape[1], weight.shape[2] * groups
    _require(getattr(module, "in_planes", in_channels) == in_channels and getattr(module, "out_planes", out_channels)
             == out_channels, "in_planes/out_planes disagree with the weight's shape")
    kernel = tuple(weight.shape[3:])
    _require(_pair(getattr(module, "kernel_size", None), "kernel_size") == kernel,
             f"kernel_size={getattr(module, 'kernel_size', None)!r} disagrees with the weight's {kernel}")
    stride, padding, dilation = (_pair(getattr(module, n, None), n) for n in ("stride", "padding", "dilation"))
    _only_children(module, ("attention",), "the module")
    attention = _child(module, "attention")
    _require(type(attention).__name__ == "attention2d", f"attention is a {type(attention).__name__}, not attention2d")
    _only_children(attention, ("avgpool", "fc1", "fc2"), "attention")
    pool = _child(attention, "avgpool")
    _require(type(pool) is nn.AdaptiveAvgPool2d and pool.output_size in (1, (1, 1)),
             "attention.avgpool is not AdaptiveAvgPool2d(1)")
    fc1 = _conv(_child(attention, "fc1"), "attention.fc1", in_channels=in_channels, pointwise=True, stride=1)
    hidden = fc1.out_channels
    fc2 = _conv(_child(attention, "fc2"), "attention.fc2", in_channels=hidden, out_channels=experts, pointwise=True,
                stride=1)
    temperature = getattr(attention, "temperature", None)
    _require(isinstance(temperature, numbers.Real) and temperature > 0,
             f"attention.temperature={temperature!r} is not a positive number")
    layer = DynamicConv2d(in_channels, out_channels, kernel, stride, padding, dilation, groups, bias is not None,
                          experts, reduction=(hidden + 0.5) / in_channels, temperature=float(temperature))
    _require(layer.fc1.out_features == hidden, f"hidden width {hidden} is not representable")
    like = dict(dtype=weight.dtype, device=weight.device)
    extra = {"fc1.weight": fc1.weight.detach()[:, :, 0, 0],
             "fc1.bias": fc1.bias.detach() if fc1.bias is not None else torch.zeros(hidden, **like),
             "fc2.weight": fc2.weight.detach()[:, :, 0, 0],
             "fc2.bias": fc2.bias.detach() if fc2.bias is not None else torch.zeros(experts, **like)}
    return _load(layer, module, [("weight", "weight"), ("bias", "bias"), ("attention.", None)], extra)


def from_timm_condconv(module: nn.Module) -> CondConv2d:
    """timm ``CondConv2d`` -> :class:`CondConv2d` with ``external_routing=True`` (same forward(x, routing_weights))."""
    _require(getattr(module, "dynamic_padding", None) is False,
             "dynamic_padding=True (TF 'same' padding computed from the input size at run time)")
    experts, groups = _int_attr(module, "num_experts"), _int_attr(module, "groups")
    in_channels, out_channels = _int_attr(module, "in_channels"), _int_attr(module, "out_channels")
    kernel = _pair(getattr(module, "kernel_size", None), "kernel_size")
    stride, padding, dilation = (_pair(getattr(module, n, None), n) for n in ("stride", "padding", "dilation"))
    _require(in_channels % groups == 0, f"in_channels={in_channels} not divisible by groups={groups}")
    numel = out_channels * in_channels // groups * kernel[0] * kernel[1]
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    _require(isinstance(weight, nn.Parameter) and tuple(weight.shape) == (experts, numel),
             f"weight is not a [K, O*C/g*kh*kw] = [{experts}, {numel}] parameter")
    _require(bias is None or (isinstance(bias, nn.Parameter) and tuple(bias.shape) == (experts, out_channels)),
             "bias is not None or a [K, O] parameter")
    _only_children(module, (), "the module")
    layer = CondConv2d(in_channels, out_channels, kernel, stride, padding, dilation, groups, bias is not None,
                       experts, external_routing=True)
    extra = {"weight": weight.detach().reshape(experts, out_channels, in_channels // groups, *kernel)}
    return _load(layer, module, [("weight", None), ("bias", "bias")], extra)


def _dcn_geometry(module: nn.Module) -> dict:
    """Constructor arguments shared by InternImage's DCNv3 and DCNv4 (same attribute names as dynconv's)."""
    args = {name: _int_attr(module, name) for name in ("channels", "kernel_size", "stride", "pad", "dilation", "group")}
    offset_scale = getattr(module, "offset_scale", None)
    _require(isinstance(offset_scale, numbers.Real), f"'offset_scale' is {offset_scale!r}, not a number")
    args.update(offset_scale=float(offset_scale), remove_center=bool(int(getattr(module, "remove_center", 0))),
                center_feature_scale=bool(getattr(module, "center_feature_scale", False)))
    return args


def _same_depthwise(conv: nn.Module, what: str, channels: int) -> nn.Conv2d:
    conv = _conv(conv, what, in_channels=channels, out_channels=channels, groups=channels, bias=True, stride=1)
    k = conv.kernel_size[0]
    _require(tuple(conv.kernel_size) == (k, k) and k % 2 == 1 and tuple(conv.padding) == ((k - 1) // 2,) * 2
             and tuple(conv.dilation) == (1, 1), f"{what} is not an odd, same-padded, undilated square conv")
    return conv


def from_internimage_dcnv3(module: nn.Module) -> DCNv3:
    """InternImage ``DCNv3`` / ``DCNv3_pytorch`` -> :class:`DCNv3` (the state dicts are key-for-key equal)."""
    args = _dcn_geometry(module)
    dw = _child(module, "dw_conv")
    _require(isinstance(dw, nn.Sequential) and len(dw) == 3, "dw_conv is not (DWConv, norm, activation)")
    conv = _same_depthwise(dw[0], "dw_conv.0", args["channels"])
    norm = dw[1][1] if isinstance(dw[1], nn.Sequential) and len(dw[1]) == 2 else None
    _require(isinstance(norm, nn.LayerNorm) and norm.elementwise_affine,
             "dw_conv.1 is not a channels-last LayerNorm ('LN')")
    _require(type(dw[2]) is nn.GELU and dw[2].approximate == "none", "dw_conv.2 is not GELU")
    layer = DCNv3(dw_kernel_size=conv.kernel_size[0], **args)
    layer.dw_conv[1][1].eps = norm.eps
    return _load(layer, module, [("", "")])


def from_official_dcnv4(module: nn.Module) -> DCNv4:
    """OpenGVLab ``DCNv4`` -> :class:`DCNv4` (key-for-key equal state dicts)."""
    args = _dcn_geometry(module)
    without_pointwise = bool(getattr(module, "without_pointwise", False))
    dw = getattr(module, "offset_mask_dw", None)
    dw_kernel_size = None
    if dw is not None:
        dw_kernel_size = _same_depthwise(dw, "offset_mask_dw", args["channels"]).kernel_size[0]
    output_bias = without_pointwise or getattr(_child(module, "output_proj"), "bias", None) is not None
    layer = DCNv4(dw_kernel_size=dw_kernel_size, output_bias=output_bias, without_pointwise=without_pointwise, **args)
    return _load(layer, module, [("", "")])


CONVERTERS: dict[str, tuple[str, Callable[[nn.Module], nn.Module]]] = {
    "involution": ("d-li14/involution", from_official_involution),
    "DDFPack": ("theFoxofSky/ddfnet", from_official_ddf),
    "DRConv2d": ("shallowtoil/DRConv-PyTorch", from_official_drconv),
    "DRConv": ("megvii-research/DRConv", from_megvii_drconv),
    "SelectiveKernel": ("timm", from_timm_selective_kernel),
    "SelectiveKernelConv": ("timm", from_timm_selective_kernel),
    "Dynamic_conv2d": ("kaijieshi7/Dynamic-convolution-Pytorch", from_official_dynamic_conv),
    "CondConv2d": ("timm", from_timm_condconv),
    "DCNv3": ("OpenGVLab/InternImage", from_internimage_dcnv3),
    "DCNv3_pytorch": ("OpenGVLab/InternImage", from_internimage_dcnv3),
    "DCNv4": ("OpenGVLab/DCNv4", from_official_dcnv4),
}


def map_official_modules(model: nn.Module) -> list[str]:
    """Swap, in place, every submodule recognised as an author's module for the dynconv layer.

    Returns the dotted names replaced (the root itself is never replaced). Near-matches (right class
    name, structure dynconv cannot reproduce exactly) stay and are logged at WARNING with the reason.
    """
    replaced: list[str] = []
    for name, module in list(model.named_modules()):
        entry = CONVERTERS.get(type(module).__name__)
        if entry is None or isinstance(module, _DYNCONV_CLASSES):
            continue
        if not name:
            log.warning("the model itself is a %s, which is never replaced: wrap it in a parent module "
                        "(e.g. nn.Sequential(model)) to have it mapped", type(module).__name__)
            continue
        if any(name.startswith(done + ".") for done in replaced):
            continue
        origin, convert = entry
        label = f"{name} ({type(module).__module__}.{type(module).__qualname__})"
        try:
            with torch.no_grad():
                layer = convert(module)
        except Unmappable as exc:
            log.warning("%s looks like %s's %s but was left unmapped: %s", label, origin, type(module).__name__, exc)
            continue
        except Exception as exc:  # a same-named module of another shape; never let it stop the export
            log.warning("%s looks like %s's %s but was left unmapped: %s: %s", label, origin, type(module).__name__,
                        type(exc).__name__, exc)
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer)
        log.info("mapped %s (%s) onto dynconv %s", label, origin, type(layer).__name__)
        replaced.append(name)
    return replaced
