"""Every bundled example network exports in both flavours; the reference flavour matches PyTorch."""

from __future__ import annotations

import pytest
import torch

from dynconv.export import ExportOptions, export_model
from dynconv.export.examples import EXAMPLES, build_example
from dynconv.export.reference_graph import record_calls
from dynconv.export.postprocess import validate_custom_node
from parity import assert_close_scaled, custom_nodes, run_onnxruntime

CUSTOM_FREE = {"dynamic_conv", "condconv", "skconv"}


def test_examples_are_deterministic():
    a, xa = build_example("mixed")
    b, xb = build_example("mixed")
    with torch.no_grad():
        assert torch.equal(a(xa), b(xb))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_trt_flavour_has_one_node_per_call(name):
    model, x = build_example(name)
    calls = record_calls(model, (x,))
    assert (len(calls) == 0) == (name in CUSTOM_FREE)
    proto = export_model(model, (x,), ExportOptions(target="trt", dynamic=("batch",)))
    nodes = custom_nodes(proto)
    assert [n.op_type for n in nodes] == [c.spec.name for c in calls]
    for node in nodes:
        validate_custom_node(node)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_reference_flavour_matches_pytorch(name):
    model, x = build_example(name)
    proto = export_model(model, (x,), ExportOptions(target="onnx", dynamic=("batch", "height", "width")))
    assert not custom_nodes(proto)
    for shape in [tuple(x.shape), (2, 3, 48, 80)]:
        inp = torch.randn(shape)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(proto, [inp.numpy()])[0], model(inp))


@pytest.mark.parametrize("target", ["trt", "onnx"])
def test_mixed_example_torchscript_exporter(target):
    model, x = build_example("mixed")
    proto = export_model(model, (x,), ExportOptions(target=target, exporter="torchscript", dynamic=("batch",)))
    if target == "trt":
        assert len(custom_nodes(proto)) == len(record_calls(model, (x,)))
    else:
        assert not custom_nodes(proto)
        with torch.no_grad():
            assert_close_scaled(run_onnxruntime(proto, [x.numpy()])[0], model(x))


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_reference_flavour_uses_standard_deform_conv_at_opset_19(exporter):
    model, x = build_example("dcnv2")
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter=exporter, opset=19, dynamic=("batch",)))
    assert [n.op_type for n in proto.graph.node].count("DeformConv") == 2
    assert not custom_nodes(proto) and proto.ir_version == 9
    batch = torch.randn(2, *x.shape[1:])
    with torch.no_grad():
        assert_close_scaled(run_onnxruntime(proto, [batch.numpy()])[0], model(batch))
