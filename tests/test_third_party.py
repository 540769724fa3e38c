"""Mapping torchvision/mmcv deformable convolutions onto dynconv: fakes here, the real libraries where installed."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.utils import _pair

from dynconv.export import ExportOptions, export_model
from dynconv.export import third_party
from dynconv.export.third_party import (from_mmcv, from_torchvision, map_modules, map_third_party_modules,
                                        patch_functional_deform_conv)
from dynconv.plugins.deform_conv import (DEFORM_CONV2D, DeformConv2d, ExternalOffsetDeformConv2d,
                                         ModulatedDeformConv2d, deform_conv2d)
from parity import assert_close_scaled, custom_nodes
from test_op_deform_conv import naive_deform_conv


# ----- stand-ins that follow the libraries' documented attributes and forward() -------------------
class FakeTorchvisionDeformConv2d(nn.Module):
    """torchvision.ops.DeformConv2d's attributes; forward = the naive torchvision-rule loops."""

    def __init__(self, cin, cout, k, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = _pair(stride), _pair(padding), _pair(dilation), groups
        self.weight = nn.Parameter(torch.randn(cout, cin // groups, *_pair(k)))
        self.bias = nn.Parameter(torch.randn(cout)) if bias else None

    def forward(self, input, offset, mask=None):
        out = naive_deform_conv(input, offset, self.weight.detach(), None if self.bias is None else self.bias.detach(),
                                self.stride, self.padding, self.dilation, mask)
        return torch.from_numpy(out).float()


class FakeMMCVDeformConv2d(nn.Module):
    """mmcv.ops.DeformConv2d: no bias attribute, ``deform_groups``; forward(x, offset)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, dilation=1, groups=1, deform_groups=1, bias=False):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = cin, cout, _pair(k)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.groups, self.deform_groups = groups, deform_groups
        self.weight = nn.Parameter(torch.randn(cout, cin // groups, *self.kernel_size))

    def forward(self, x, offset):
        out = naive_deform_conv(x, offset, self.weight.detach(), None, self.stride, self.padding, self.dilation, None)
        return torch.from_numpy(out).float()


class FakeMMCVDeformConv2dPack(FakeMMCVDeformConv2d):
    """mmcv.ops.DeformConv2dPack: ``conv_offset`` with 2*dg*kh*kw channels."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        channels = self.deform_groups * 2 * self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset = nn.Conv2d(self.in_channels, channels, self.kernel_size, self.stride, self.padding,
                                     self.dilation, bias=True)
        nn.init.normal_(self.conv_offset.weight, std=0.3)

    def forward(self, x):
        return super().forward(x, self.conv_offset(x))


class FakeMMCVModulatedDeformConv2d(nn.Module):
    """mmcv.ops.ModulatedDeformConv2d: optional bias, forward(x, offset, mask)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, dilation=1, groups=1, deform_groups=1, bias=True):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = cin, cout, _pair(k)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.groups, self.deform_groups = groups, deform_groups
        self.weight = nn.Parameter(torch.randn(cout, cin // groups, *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.randn(cout))
        else:
            self.register_parameter("bias", None)

    def forward(self, x, offset, mask):
        bias = None if self.bias is None else self.bias.detach()
        out = naive_deform_conv(x, offset, self.weight.detach(), bias, self.stride, self.padding, self.dilation, mask)
        return torch.from_numpy(out).float()


class FakeMMCVModulatedDeformConv2dPack(FakeMMCVModulatedDeformConv2d):
    """mmcv.ops.ModulatedDeformConv2dPack: chunk into three, offsets = cat(o1, o2), mask = sigmoid."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        channels = self.deform_groups * 3 * self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset = nn.Conv2d(self.in_channels, channels, self.kernel_size, self.stride, self.padding,
                                     self.dilation, bias=True)
        nn.init.normal_(self.conv_offset.weight, std=0.3)

    def forward(self, x):
        o1, o2, mask = torch.chunk(self.conv_offset(x), 3, dim=1)
        return super().forward(x, torch.cat((o1, o2), dim=1), torch.sigmoid(mask))


FAKE_MMCV = [(FakeMMCVModulatedDeformConv2dPack, from_mmcv), (FakeMMCVDeformConv2dPack, from_mmcv),
             (FakeMMCVModulatedDeformConv2d, from_mmcv), (FakeMMCVDeformConv2d, from_mmcv)]
FAKE_ALL = [(FakeTorchvisionDeformConv2d, from_torchvision), *FAKE_MMCV]


class OffsetHead(nn.Module):
    """A model that predicts offsets/mask itself and calls an explicit-offset deformable layer."""

    def __init__(self, layer, og, k, with_mask, stride=1, padding=1, dilation=1):
        super().__init__()
        kk = _pair(k)[0] * _pair(k)[1]
        self.offset = nn.Conv2d(4, 2 * og * kk, k, stride, padding, dilation)
        self.mask = nn.Conv2d(4, og * kk, k, stride, padding, dilation) if with_mask else None
        self.layer = layer

    def forward(self, x):
        if self.mask is None:
            return self.layer(x, self.offset(x))
        return self.layer(x, self.offset(x), torch.sigmoid(self.mask(x)))


def _mapped_matches(model, x, classes):
    with torch.no_grad():
        before = model(x)
    names = map_modules(model, classes)
    with torch.no_grad():
        after = model(x)
    assert_close_scaled(after, before, 1e-5)
    return names


# ----- torchvision-like -------------------------------------------------------------------------
@pytest.mark.parametrize("with_mask, bias", [(True, True), (False, False)])
def test_torchvision_like_layer_is_mapped_with_same_weights(with_mask, bias):
    layer = FakeTorchvisionDeformConv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2,
                                        bias=bias)
    model = OffsetHead(layer, 2, (3, 2), with_mask, (2, 1), (1, 0), (1, 2)).eval()
    names = _mapped_matches(model, torch.randn(2, 4, 9, 8), FAKE_ALL)
    assert names == ["layer"]
    new = model.layer
    assert type(new) is ExternalOffsetDeformConv2d
    assert (new.stride, new.padding, new.dilation, new.groups) == ((2, 1), (1, 0), (1, 2), 2)
    assert torch.equal(new.weight, layer.weight) and (new.bias is None) == (not bias)
    assert new.offset_groups is None  # torchvision infers offset groups from the offset


def test_mapping_keeps_training_mode_device_and_dtype():
    layer = FakeTorchvisionDeformConv2d(4, 4, 3, padding=1).double().train()
    model = OffsetHead(layer, 1, 3, False)
    map_modules(model, FAKE_ALL)
    assert model.layer.training and model.layer.weight.dtype == torch.float64


# ----- mmcv-like --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, expected_type, bias", [
    (FakeMMCVModulatedDeformConv2dPack, ModulatedDeformConv2d, True),
    (FakeMMCVModulatedDeformConv2dPack, ModulatedDeformConv2d, False),
    (FakeMMCVDeformConv2dPack, DeformConv2d, False),
])
def test_mmcv_like_pack_layers_are_mapped(cls, expected_type, bias):
    layer = cls(4, 6, 3, stride=(1, 2), padding=1, dilation=(2, 1), groups=2, deform_groups=2, bias=bias)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), layer, nn.ReLU()).eval()
    names = _mapped_matches(model, torch.randn(2, 3, 9, 10), FAKE_ALL)
    assert names == ["1"]
    assert type(model[1]) is expected_type and model[1].offset_groups == 2
    assert torch.equal(model[1].conv_offset.weight, layer.conv_offset.weight)
    assert torch.equal(model[1].conv_offset.bias, layer.conv_offset.bias)


@pytest.mark.parametrize("cls, with_mask", [(FakeMMCVDeformConv2d, False), (FakeMMCVModulatedDeformConv2d, True)])
def test_mmcv_like_explicit_offset_layers_are_mapped(cls, with_mask):
    layer = cls(4, 4, 3, padding=1, deform_groups=2)
    model = OffsetHead(layer, 2, 3, with_mask).eval()
    assert _mapped_matches(model, torch.randn(1, 4, 7, 6), FAKE_ALL) == ["layer"]
    assert type(model.layer) is ExternalOffsetDeformConv2d and model.layer.offset_groups == 2


def test_nested_models_and_several_layers():
    model = nn.Sequential(
        nn.Sequential(FakeMMCVModulatedDeformConv2dPack(4, 4, 3, padding=1), nn.ReLU()),
        FakeMMCVDeformConv2dPack(4, 4, 3, padding=1, deform_groups=4),
    ).eval()
    names = _mapped_matches(model, torch.randn(1, 4, 8, 8), FAKE_ALL)
    assert names == ["0.0", "1"]


def test_subclass_overriding_forward_is_left_alone():
    class Custom(FakeMMCVModulatedDeformConv2dPack):
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(Custom(4, 4, 3, padding=1)).eval()
    assert map_modules(model, FAKE_ALL) == []
    assert type(model[0]) is Custom


def test_root_module_is_not_replaced():
    layer = FakeMMCVModulatedDeformConv2dPack(4, 4, 3, padding=1)
    assert map_modules(layer, FAKE_ALL) == []


def test_mapped_model_exports_one_plugin_node_per_layer():
    model = nn.Sequential(FakeMMCVModulatedDeformConv2dPack(4, 4, 3, padding=1, deform_groups=2),
                          FakeMMCVDeformConv2dPack(4, 4, 3, stride=2, padding=1)).eval()
    map_modules(model, FAKE_ALL)
    proto = export_model(model, (torch.randn(1, 4, 8, 8),), ExportOptions(target="trt"))
    nodes = custom_nodes(proto)
    assert [n.op_type for n in nodes] == [DEFORM_CONV2D.name] * 2


# ----- discovery and the functional patch, with the libraries faked or absent ------------------------
def test_discovery_uses_whatever_is_importable(monkeypatch):
    fakes = {"torchvision.ops": types.SimpleNamespace(DeformConv2d=FakeTorchvisionDeformConv2d),
             "mmcv.ops": types.SimpleNamespace(ModulatedDeformConv2dPack=FakeMMCVModulatedDeformConv2dPack,
                                               DeformConv2dPack=FakeMMCVDeformConv2dPack)}
    monkeypatch.setattr(third_party, "_import", fakes.get)
    model = nn.Sequential(FakeMMCVDeformConv2dPack(4, 4, 3, padding=1),
                          OffsetHead(FakeTorchvisionDeformConv2d(4, 4, 3, padding=1), 1, 3, True)).eval()
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        before = model(x)
    assert map_third_party_modules(model) == ["0", "1.layer"]
    with torch.no_grad():
        assert_close_scaled(model(x), before, 1e-5)


def test_nothing_happens_without_the_libraries(monkeypatch):
    monkeypatch.setattr(third_party, "_import", lambda name: None)
    model = nn.Sequential(FakeMMCVDeformConv2dPack(4, 4, 3, padding=1))
    assert map_third_party_modules(model) == []
    assert type(model[0]) is FakeMMCVDeformConv2dPack
    with patch_functional_deform_conv() as patched:
        assert patched == []


def test_authors_modules_are_mapped_after_the_libraries(monkeypatch):
    from test_official_modules import involution

    fakes = {"mmcv.ops": types.SimpleNamespace(DeformConv2dPack=FakeMMCVDeformConv2dPack)}
    monkeypatch.setattr(third_party, "_import", fakes.get)
    model = nn.Sequential(involution(16, 3, 1), FakeMMCVDeformConv2dPack(16, 16, 3, padding=1))
    assert map_third_party_modules(model) == ["1", "0"]  # library layers first, then the authors' modules
    assert type(model[1]) is DeformConv2d
    assert type(model[0]).__name__ == "Involution"
    monkeypatch.setattr(third_party, "_import", lambda name: None)
    model = nn.Sequential(involution(16, 3, 1))
    assert map_third_party_modules(model) == ["0"]  # no library needed for them


def test_import_failures_are_swallowed():
    assert third_party._import("dynconv_no_such_module.ops") is None


def test_functional_patch_routes_and_restores(monkeypatch):
    original = object()
    tv_ops = types.ModuleType("torchvision.ops")
    tv_ops.deform_conv2d = original
    tv_deform = types.ModuleType("torchvision.ops.deform_conv")
    tv_deform.deform_conv2d = original
    fakes = {"torchvision.ops": tv_ops, "torchvision.ops.deform_conv": tv_deform}
    monkeypatch.setattr(third_party, "_import", fakes.get)
    with patch_functional_deform_conv() as patched:
        assert patched == ["torchvision.ops.deform_conv2d", "torchvision.ops.deform_conv.deform_conv2d"]
        assert tv_ops.deform_conv2d is deform_conv2d and tv_deform.deform_conv2d is deform_conv2d
    assert tv_ops.deform_conv2d is original and tv_deform.deform_conv2d is original


def test_functional_patch_restores_after_an_error(monkeypatch):
    tv_ops = types.ModuleType("torchvision.ops")
    tv_ops.deform_conv2d = original = object()
    monkeypatch.setattr(third_party, "_import", {"torchvision.ops": tv_ops}.get)
    with pytest.raises(RuntimeError):
        with patch_functional_deform_conv():
            raise RuntimeError("boom")
    assert tv_ops.deform_conv2d is original


def test_real_environment_without_torchvision_maps_nothing():
    try:
        import torchvision  # noqa: F401
    except Exception:
        model = nn.Sequential(DeformConv2d(4, 4, 3, padding=1))
        assert map_third_party_modules(model) == []
        with patch_functional_deform_conv() as patched:
            assert patched == []
    else:
        pytest.skip("torchvision is installed; covered by the real-library tests")


# ----- the real libraries (skipped where absent) ------------------------------------------------------
def test_real_torchvision_module_is_mapped():
    tv = pytest.importorskip("torchvision")
    layer = tv.ops.DeformConv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    model = OffsetHead(layer, 2, (3, 2), True, (2, 1), (1, 0), (1, 2)).eval()
    nn.init.normal_(model.offset.weight, std=0.5)
    x = torch.randn(2, 4, 9, 8)
    with torch.no_grad():
        before = model(x)
    assert map_third_party_modules(model) == ["layer"]
    assert type(model.layer) is ExternalOffsetDeformConv2d
    with torch.no_grad():
        assert_close_scaled(model(x), before, 1e-5)
    proto = export_model(model, (x,), ExportOptions(target="trt"))
    assert [n.op_type for n in custom_nodes(proto)] == [DEFORM_CONV2D.name]


def test_real_torchvision_functional_is_patched_for_export():
    tv = pytest.importorskip("torchvision")

    class Calls(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 4, 3, 3))
            self.offset = nn.Conv2d(4, 18, 3, padding=1)

        def forward(self, x):
            return tv.ops.deform_conv2d(x, self.offset(x), self.weight, padding=(1, 1))

    model, x = Calls().eval(), torch.randn(1, 4, 7, 7)
    with torch.no_grad():
        before = model(x)
    with patch_functional_deform_conv() as patched:
        assert "torchvision.ops.deform_conv2d" in patched
        with torch.no_grad():
            assert_close_scaled(model(x), before, 1e-5)
        proto = export_model(model, (x,), ExportOptions(target="trt"))
    assert [n.op_type for n in custom_nodes(proto)] == [DEFORM_CONV2D.name]
    assert tv.ops.deform_conv2d is not deform_conv2d


def test_real_mmcv_modules_are_mapped():
    mmcv_ops = pytest.importorskip("mmcv.ops")
    model = nn.Sequential(mmcv_ops.ModulatedDeformConv2dPack(4, 4, 3, padding=1, deform_groups=2),
                          mmcv_ops.DeformConv2dPack(4, 4, 3, padding=1)).eval()
    for m in model:
        nn.init.normal_(m.conv_offset.weight, std=0.3)
    x = torch.randn(1, 4, 8, 8)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, x = model.to(device), x.to(device)
    with torch.no_grad():
        before = model(x)
    assert map_third_party_modules(model) == ["0", "1"]
    with torch.no_grad():
        after = model(x)
    assert_close_scaled(after.cpu(), before.cpu(), 1e-4)
    assert np.isfinite(after.cpu().numpy()).all()
