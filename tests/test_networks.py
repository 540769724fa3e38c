"""Published architectures: sizes against the papers, checkpoint layouts, exports (full-size ones are slow)."""

from __future__ import annotations


import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from dynconv.export import ExportOptions, export_model
from dynconv.export.cli import build_parser
from dynconv.export.examples import EXAMPLES, build_example
from dynconv.export.networks import NETWORK_INPUT_SHAPE, NETWORKS
from dynconv.export.networks.checkpoints import load_authors_checkpoint
from dynconv.export.networks.macs import count_macs, count_parameters
from dynconv.export.reference_graph import record_calls
from dynconv.plugins import DynconvError
from dynconv.plugins.dcnv3 import DCNv3, DCNv4
from dynconv.plugins.ddf import DDFPack
from dynconv.plugins.deform_conv import ModulatedDeformConv2d
from dynconv.plugins.drconv import DRConv2d
from dynconv.plugins.dynamic_conv import CondConv2d, DynamicConv2d
from dynconv.plugins.involution import Involution
from dynconv.plugins.skconv import SKConv2d
from parity import assert_close_scaled, custom_nodes, run_onnxruntime

# the dynamic layer of each network and how many the full network has; layers with a core op
# (custom node in the trt flavour) are one custom node per layer
DYNAMIC_LAYERS = {
    "internimage_t": (DCNv3, 30), "flash_internimage_t": (DCNv4, 30), "rednet50": (Involution, 17),
    "ddfnet50": (DDFPack, 16), "resnet50_dcn": (ModulatedDeformConv2d, 13), "drconv_shufflenetv2": (DRConv2d, 32),
    "dy_resnet50": (DynamicConv2d, 52), "condconv_efficientnet_b0": (CondConv2d, 24), "sknet50": (SKConv2d, 16),
}
CUSTOM_FREE = {"dy_resnet50", "condconv_efficientnet_b0", "sknet50"}  # standard ONNX ops only
CI_EXPORTS = {"internimage_t"}  # the reduced export kept in the default run
DETECTION_INPUT = (1, 3, 800, 1344)


def _dynamic_layers(model: torch.nn.Module, kind: type) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m) is kind]


def _macs_at(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:  # shapes only: seconds, not minutes
        return count_macs(model, mode.from_tensor(torch.zeros(shape)))


def _outputs(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def _assert_reference_matches(model: torch.nn.Module, proto, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = _outputs(model(x))
    actual = run_onnxruntime(proto, [x.numpy()])
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert_close_scaled(got, want)


def _assert_one_node_per_layer(model: torch.nn.Module, x: torch.Tensor, name: str, proto) -> None:
    kind, _ = DYNAMIC_LAYERS[name]
    calls = record_calls(model, (x,))
    assert [n.op_type for n in custom_nodes(proto)] == [c.spec.name for c in calls]
    assert len(calls) == len(_dynamic_layers(model, kind))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_size_matches_paper(name):
    model = NETWORKS[name].full()
    kind, count = DYNAMIC_LAYERS[name]
    assert len(_dynamic_layers(model, kind)) == count
    params, macs = count_parameters(model), _macs_at(model, NETWORK_INPUT_SHAPE)
    paper = NETWORKS[name].paper
    if paper is not None and paper.params is not None:
        assert abs(params / paper.params - 1) <= 0.02, f"{params / 1e6:.2f}M params vs {paper.source}"
    if paper is not None and paper.macs is not None:
        assert abs(macs / paper.macs - 1) <= paper.macs_tolerance, f"{macs / 1e9:.3f} GMACs vs {paper.source}"
    assert macs > 0


def test_dcn_backbone_structure():
    """No published size: DCNv2 exactly in the 3x3 convs of c3-c5, and four feature maps out (strides 4..32)."""
    model = NETWORKS["resnet50_dcn"].full()
    dcn = {name for name, m in model.named_modules() if isinstance(m, ModulatedDeformConv2d)}
    three_by_three = {name for name, m in model.named_modules() if name.endswith(".conv2")}
    assert dcn == {name for name in three_by_three if not name.startswith("layer1.")}
    assert all(m.offset_groups == 1 and m.bias is None for m in model.modules() if isinstance(m, ModulatedDeformConv2d))
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        features = model(mode.from_tensor(torch.zeros(1, 3, 224, 224)))
    assert [tuple(f.shape) for f in features] == [(1, 256 * 2 ** i, 56 // 2 ** i, 56 // 2 ** i) for i in range(4)]


def test_dynamic_networks_keep_their_stems_static():
    dy = NETWORKS["dy_resnet50"].full()
    assert type(dy.stem[0].conv) is torch.nn.Conv2d
    assert all(m.num_experts == 4 for m in _dynamic_layers(dy, DynamicConv2d))
    shuffle = NETWORKS["drconv_shufflenetv2"].full()
    assert all(m.region_num == 8 and m.kernel_size == (1, 1) for m in _dynamic_layers(shuffle, DRConv2d))


def test_network_names_are_cli_examples():
    for name in sorted(NETWORKS) + sorted(EXAMPLES):
        assert build_parser().parse_args(["-o", "out.onnx", "--example", name]).example == name
    with pytest.raises(DynconvError, match="unknown example"):
        build_example("resnet50")


def test_cli_lists_the_networks_among_its_examples(tmp_path, capsys):
    from dynconv.export.cli import main  # noqa: PLC0415

    assert main(["--example", "resnet50", "-o", str(tmp_path / "x.onnx")]) != 0
    err = capsys.readouterr().err
    assert "unknown --example" in err and all(name in err for name in NETWORKS)
    assert not (tmp_path / "x.onnx").exists()


def test_networks_are_seeded():
    a, xa = build_example("rednet50", seed=3, reduced=True)
    b, xb = build_example("rednet50", seed=3, reduced=True)
    with torch.no_grad():
        assert torch.equal(a(xa), b(xb))
    assert all(m.span.weight.abs().sum() > 0 for m in _dynamic_layers(a, Involution))


# ----- checkpoint layouts ---------------------------------------------------------------------------
def test_internimage_state_dict_uses_the_authors_keys():
    keys = set(NETWORKS["internimage_t"].full().state_dict())
    for key in ("patch_embed.conv1.weight", "patch_embed.norm1.0.running_var", "patch_embed.norm2.0.weight",
                "levels.2.blocks.17.dcn.dw_conv.1.1.weight", "levels.2.blocks.17.dcn.offset.weight",
                "levels.0.blocks.0.norm1.0.weight", "levels.3.blocks.3.mlp.fc2.bias", "levels.0.norm.0.bias",
                "levels.2.downsample.conv.weight", "levels.2.downsample.norm.1.weight", "conv_head.0.weight",
                "conv_head.1.0.running_mean", "head.weight"):
        assert key in keys, key
    flash = set(NETWORKS["flash_internimage_t"].full().state_dict())
    assert "levels.0.blocks.0.dcn.offset_mask.weight" in flash and "levels.0.blocks.0.mlp.fc2.bias" not in flash
    assert "levels.0.blocks.0.dcn.output_proj.bias" not in flash


def _reloads(name: str, authors_state: dict) -> None:
    model, x = build_example(name, seed=0, reduced=True)
    other, _ = build_example(name, seed=1, reduced=True)
    load_authors_checkpoint(name, other, {"state_dict": authors_state, "meta": {}})
    with torch.no_grad():
        for got, want in zip(_outputs(other(x)), _outputs(model(x))):
            assert torch.equal(got, want)


def test_internimage_checkpoint_loads_as_saved():
    model, _ = build_example("internimage_t", reduced=True)
    _reloads("internimage_t", {"model": model.state_dict()}["model"])


def test_rednet_mmcls_checkpoint_loads():
    """mmcls keys: backbone./head.fc. prefixes; involution as ConvModules conv1.{conv,bn} and conv2.conv."""
    state = build_example("rednet50", reduced=True)[0].state_dict()
    authors = {}
    for key, value in state.items():
        key = key.replace(".reduce.", ".conv1.conv.").replace(".norm.", ".conv1.bn.").replace(".span.", ".conv2.conv.")
        authors["head." + key if key.startswith("fc.") else "backbone." + key] = value
    assert "backbone.layer1.0.conv2.conv1.conv.weight" in authors and "backbone.stem.1.conv2.conv.bias" in authors
    _reloads("rednet50", authors)


def test_ddf_timm_checkpoint_loads():
    state = build_example("ddfnet50", reduced=True)[0].state_dict()
    authors = {k.replace("stem.0.conv.", "conv1.").replace("stem.0.bn.", "bn1.").replace(".gamma", ".std"): v
               for k, v in state.items()}
    assert "layer4.0.conv2.channel_branch.4.std" in authors and "conv1.weight" in authors
    _reloads("ddfnet50", authors)


def test_mmdet_dcn_backbone_checkpoint_loads_and_drops_the_heads():
    state = build_example("resnet50_dcn", reduced=True)[0].state_dict()
    authors = {"backbone." + k.replace("stem.0.conv.", "conv1.").replace("stem.0.bn.", "bn1."): v
               for k, v in state.items()}
    assert "backbone.layer2.0.conv2.conv_offset.weight" in authors
    authors["neck.lateral_convs.0.conv.weight"] = torch.zeros(1)
    _reloads("resnet50_dcn", authors)


def test_sknet_timm_checkpoint_loads():
    state = build_example("sknet50", reduced=True)[0].state_dict()
    renames = [("stem.0.conv.", "conv1."), ("stem.0.bn.", "bn1."), (".conv1.", ".conv1.conv."), (".bn1.", ".conv1.bn."),
               (".conv3.", ".conv3.conv."), (".bn3.", ".conv3.bn."), (".branches.0.0.", ".paths.0.conv."),
               (".branches.0.1.", ".paths.0.bn."), (".branches.1.0.", ".paths.1.conv."),
               (".branches.1.1.", ".paths.1.bn."), (".squeeze.0.", ".attn.fc_reduce."), (".squeeze.1.", ".attn.bn."),
               (".select.", ".attn.fc_select.")]
    authors = {}
    for key, value in state.items():
        for ours, theirs in renames:
            key = key.replace(ours, theirs)
        authors[key] = value
    assert "layer1.0.conv2.paths.1.bn.running_var" in authors and "layer4.0.conv3.conv.weight" in authors
    _reloads("sknet50", authors)


def test_checkpoint_of_another_layout_is_refused():
    model, _ = build_example("rednet50", reduced=True)
    with pytest.raises(DynconvError, match="not a d-li14/involution"):
        load_authors_checkpoint("rednet50", model, {"state_dict": {"backbone.conv1.weight": torch.zeros(1)}})
    with pytest.raises(DynconvError, match="no known checkpoint layout"):
        load_authors_checkpoint("dy_resnet50", model, {})


# ----- exports ----------------------------------------------------------------------------------------
def _reduced_export_cases():
    return [pytest.param(name, marks=() if name in CI_EXPORTS else pytest.mark.slow) for name in sorted(NETWORKS)]


@pytest.mark.parametrize("name", _reduced_export_cases())
def test_reduced_network_exports_and_matches(name):
    """One block per stage, 64x64, TorchScript exporter: reference flavour == PyTorch, one node per layer."""
    model, x = build_example(name, reduced=True)
    options = dict(exporter="torchscript", dynamic=("batch", "height", "width"))
    proto = export_model(model, (x,), ExportOptions(target="onnx", **options))
    assert not custom_nodes(proto)
    _assert_reference_matches(model, proto, (2, 3, 96, 64))
    if name not in CUSTOM_FREE:
        _assert_one_node_per_layer(model, x, name, export_model(model, (x,), ExportOptions(target="trt", **options)))


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_full_network_exports_and_matches(name, exporter):
    """Full depth, dynamic batch/height/width, both flavours; the reference flavour matches PyTorch at
    224x224 (and at 800x1344 for the detection backbones); the trt flavour has one node per layer."""
    model, x = build_example(name)
    options = dict(exporter=exporter, dynamic=("batch", "height", "width"))
    proto = export_model(model, (x,), ExportOptions(target="onnx", **options))
    assert not custom_nodes(proto)
    _assert_reference_matches(model, proto, NETWORK_INPUT_SHAPE)
    if NETWORKS[name].detection:
        _assert_reference_matches(model, proto, DETECTION_INPUT)
    if name not in CUSTOM_FREE:
        trt = export_model(model, (x,), ExportOptions(target="trt", **options))
        _assert_one_node_per_layer(model, x, name, trt)
        assert len(custom_nodes(trt)) == DYNAMIC_LAYERS[name][1]
