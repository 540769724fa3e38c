"""The fast export paths: the graph cleanup, compact reference graphs and the dynamo exporter's
reference splicing (with its fallback)."""

from __future__ import annotations

import contextlib
import functools
import random

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from dynconv.export import ExportOptions, api, export_model
from dynconv.export.postprocess import check_loads_in_onnxruntime, check_model, cleanup, rename_graph_outputs
from dynconv.export.reference_graph import (
    CallOrderMismatch,
    OpCall,
    _export_reference,
    _Reference,
    recording_calls,
    reference_keys,
    small_shapes,
)
from dynconv.plugins.dcnv3 import DCNV3, DCNv3
from dynconv.plugins.ddf import DDF
from dynconv.plugins.deform_conv import DEFORM_CONV2D
from dynconv.plugins.registration import shapes_only
from dynconv.plugins.errors import DynconvError
from dynconv.plugins.involution import INVOLUTION, Involution
from onnx import TensorProto, helper
from parity import assert_close_scaled, run_onnxruntime


def _chain_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    used = helper.make_tensor("used", TensorProto.FLOAT, [4], [1, 2, 3, 4])
    unused = helper.make_tensor("unused", TensorProto.FLOAT, [4], [0, 0, 0, 0])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="n0"),
             helper.make_node("Add", ["a", "used"], ["b"], name="n1"),
             helper.make_node("Sub", ["a", "unused"], ["dead"], name="dead"),
             helper.make_node("Neg", ["dead"], ["dead2"], name="dead2"),
             helper.make_node("Mul", ["b", "a"], ["y"], name="n2")]
    graph = helper.make_graph(nodes, "g", [x], [y], [used, unused],
                              value_info=[helper.make_tensor_value_info("dead", TensorProto.FLOAT, [1, 4]),
                                          helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_cleanup_sorts_and_drops_what_no_output_reads():
    model = _chain_model()
    nodes = list(model.graph.node)
    random.Random(0).shuffle(nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    cleaned = cleanup(model)
    assert [n.name for n in cleaned.graph.node] == ["n0", "n1", "n2"]
    assert [t.name for t in cleaned.graph.initializer] == ["used"]
    assert [v.name for v in cleaned.graph.value_info] == ["b"]
    onnx.checker.check_model(cleaned, full_check=True)


def _involution_call(kernel: int) -> OpCall:
    x, weight = torch.randn(1, 16, 9, 9), torch.randn(1, 2 * kernel * kernel, 9, 9)
    attrs = INVOLUTION.normalize({"kernel_size": kernel, "stride": 1, "padding": kernel // 2, "dilation": 1,
                                  "groups": 2})
    return OpCall(INVOLUTION, [x, weight], attrs)


def _ddf_call(kernel: int) -> OpCall:
    x = torch.randn(1, 8, 9, 9)
    tensors = [x, torch.randn(1, 8, kernel, kernel), torch.randn(1, kernel * kernel, 9, 9)]
    return OpCall(DDF, tensors, DDF.normalize({"kernel_size": kernel, "dilation": 1, "stride": 1,
                                                  "combine": "mul"}))


@pytest.mark.parametrize("make_call", [_involution_call, _ddf_call], ids=["involution", "ddf"])
def test_reference_graph_takes_taps_a_kernel_row_at_a_time(make_call):
    """One Slice and one Gather per kernel row (a kw-times buffer, not a full unfold's kh*kw-times one):
    the graph grows by the same node count per kernel row."""
    sizes = [len(_export_reference(make_call(k), 17).node) for k in (3, 5, 7)]
    assert sizes[2] - sizes[1] == sizes[1] - sizes[0] > 0


def _tiny_involution_net() -> tuple[torch.nn.Module, torch.Tensor]:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 1), Involution(16, kernel_size=3, group_channels=8)).eval()
    return model, torch.randn(1, 3, 12, 12)


def _assert_reference_matches(proto: onnx.ModelProto, model: torch.nn.Module, x: torch.Tensor) -> None:
    assert not any(n.domain == "dynconv" for n in proto.graph.node)
    with torch.no_grad():
        want = model(x).numpy()
    assert_close_scaled(run_onnxruntime(proto, [x.numpy()])[0], want)


def test_dynamo_reference_flavour_is_spliced_from_the_trt_flavour(monkeypatch):
    model, x = _tiny_involution_net()
    targets = []
    export_dynamo = api.export_dynamo

    def recording(model, args, options, *rest):
        targets.append(options.target)
        return export_dynamo(model, args, options, *rest)

    monkeypatch.setattr(api, "export_dynamo", recording)
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter="dynamo"))
    assert targets == ["trt"]
    _assert_reference_matches(proto, model, x)


def test_dynamo_falls_back_to_decomposing_in_the_exporter(monkeypatch):
    model, x = _tiny_involution_net()

    def mismatch(*_, **__):
        raise CallOrderMismatch("graph and calls differ")

    monkeypatch.setattr(api, "splice_references", mismatch)
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter="dynamo"))
    _assert_reference_matches(proto, model, x)


def _matmul_model(elem: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", elem, [2, 100])
    y = helper.make_tensor_value_info("y", elem, [2, 100])
    weight = helper.make_tensor("w", elem, [100, 100], [1] * 10000)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_onnxruntime_load_check_reads_the_graph_without_the_weights():
    check_loads_in_onnxruntime(_matmul_model(TensorProto.FLOAT))
    with pytest.raises(DynconvError, match="does not load in onnxruntime"):
        check_loads_in_onnxruntime(_matmul_model(TensorProto.BOOL))  # no MatMul kernel for bool


def test_shapes_only_ops_return_zeros_of_the_spec_shape_and_are_recorded():
    layer = Involution(16, kernel_size=3, group_channels=8, stride=2).eval()
    x = torch.randn(2, 16, 11, 13)
    with torch.no_grad():
        want = layer(x)
        with recording_calls() as calls, shapes_only():
            got = layer(x)
    assert got.shape == want.shape and not got.any() and want.any()
    assert [c.spec.name for c in calls] == [INVOLUTION.name]
    assert [tuple(t.shape) for t in calls[0].tensors] == [(2, 16, 11, 13), (2, 18, 6, 7)]


def test_torchscript_export_records_the_calls_in_its_own_trace(monkeypatch):
    """No separate example run: the exporter's trace is the only forward pass (the ops compute nothing)."""
    model, x = _tiny_involution_net()
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter="torchscript"))
    assert len(forwards) == 1
    _assert_reference_matches(proto, model, x)


class _GroupsNet(torch.nn.Module):
    """Involution and DCNv3 layers that differ only in their group counts."""

    def __init__(self) -> None:
        super().__init__()
        self.involutions = torch.nn.Sequential(Involution(16, kernel_size=3, group_channels=8),
                                               Involution(16, kernel_size=3, group_channels=4))
        self.dcns = torch.nn.Sequential(DCNv3(16, group=2), DCNv3(16, group=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.involutions(x).permute(0, 2, 3, 1)
        return self.dcns(y)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_one_reference_per_op_serves_every_group_count(exporter):
    torch.manual_seed(0)
    model, x = _GroupsNet().eval(), torch.randn(1, 16, 10, 12)
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter=exporter))
    shared = {t.name.split("/")[0] for t in proto.graph.initializer if t.name.startswith("dynconv_reference_")}
    assert len(shared) == 2  # involution and DCNv3 read their group counts from shapes: one graph per op
    _assert_reference_matches(proto, model, x)


def _deform_call(size: int, batch: int = 1, channels: int = 4) -> OpCall:
    x, weight = torch.randn(batch, channels, size, size), torch.randn(6, channels, 3, 3)
    out = (size + 2 - 3) // 2 + 1
    offset, mask = torch.randn(batch, 18, out, out), torch.randn(batch, 9, out, out)
    attrs = DEFORM_CONV2D.normalize({"stride": 2, "padding": 1, "dilation": 1, "groups": 1, "offset_groups": 1})
    return OpCall(DEFORM_CONV2D, [x, weight, offset, mask, None], attrs)


def test_references_are_traced_on_shrunk_feature_maps():
    assert small_shapes(_deform_call(224, batch=4)) == [(2, 4, 8, 8), (6, 4, 3, 3), (2, 18, 4, 4), (2, 9, 4, 4), None]
    assert small_shapes(_deform_call(5)) == [(1, 4, 5, 5), (6, 4, 3, 3), (1, 18, 3, 3), (1, 9, 3, 3), None]
    big = _involution_call(7)
    big.tensors = [torch.randn(1, 16, 64, 40), torch.randn(1, 98, 64, 40)]
    assert small_shapes(big) == [(1, 16, 8, 8), (1, 98, 8, 8)]


def test_rename_graph_outputs_rewires_producers_and_keeps_passthroughs():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("17", "x", "17")]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["17"]), helper.make_node("Neg", ["17"], ["18"])],
                              "g", [x], outs)
    model = rename_graph_outputs(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                                 ["output_0", "output_1", "output_2"])
    assert [o.name for o in model.graph.output] == ["output_0", "output_1", "output_2"]
    assert [n.input[0] for n in model.graph.node] == ["x", "output_0", "x", "output_0"]
    onnx.checker.check_model(model, full_check=True)
    got = run_onnxruntime(model, [torch.tensor([-1.0, 2.0]).numpy()])
    assert [list(g) for g in got] == [[0.0, 2.0], [-1.0, 2.0], [0.0, 2.0]]


def test_check_model_rejects_a_weight_with_missing_data():
    model = _matmul_model(TensorProto.FLOAT)
    check_model(model)
    del model.graph.initializer[0].int32_data[:]
    model.graph.initializer[0].float_data[:] = [1.0] * 9999
    with pytest.raises(DynconvError, match="holds 9999 elements for dims"):
        check_model(model)


def test_reference_constants_are_folded_and_shared_by_every_instance():
    x = helper.make_tensor_value_info("in0", TensorProto.FLOAT, [2])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])
    nodes = [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("", TensorProto.FLOAT, [2], [1, 2])),
             helper.make_node("Add", ["c", "c"], ["twice"]),
             helper.make_node("Shape", ["in0"], ["shape"]),
             helper.make_node("Shape", ["in0"], ["unused"]),
             helper.make_node("Mul", ["in0", "twice"], ["product"]),
             helper.make_node("Reshape", ["product", "shape"], ["out"])]
    reference = _Reference(helper.make_graph(nodes, "ref", [x], [out]), "shared/", 17)
    assert [n.op_type for n in reference.nodes] == ["Shape", "Mul", "Reshape"]  # folded, dead Shape dropped
    constants = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in reference.shared_constants()}
    assert constants == {"shared/twice": [2.0, 4.0]}
    first, second = (reference.instance(helper.make_node("Op", [i], [o]), p)
                     for i, o, p in (("a", "b", "one/"), ("b", "c", "two/")))
    assert list(first[1].input) == ["a", "shared/twice"] and list(first[2].output) == ["b"]
    assert list(second[1].input) == ["b", "shared/twice"] and list(second[0].output) == ["two/shape"]


def _size_arithmetic_graph() -> onnx.GraphProto:
    """in0 [N, 6] -> reshape to [-1, in0.shape[1] // 2], with the exporter's habits: a Shape per size
    read, int64 casts of int64 sizes."""
    x = helper.make_tensor_value_info("in0", TensorProto.FLOAT, ["N", 6])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    const = lambda name, value: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=onnx.numpy_helper.from_array(np.array(value, dtype=np.int64)))
    nodes = [const("one", 1), const("zero", 0), const("two", 2), const("minus_one", [-1]), const("axes", [0]),
             helper.make_node("Shape", ["in0"], ["shape_a"]),
             helper.make_node("Gather", ["shape_a", "one"], ["channels"]),
             helper.make_node("Shape", ["in0"], ["shape_b"]),
             helper.make_node("Gather", ["shape_b", "zero"], ["batch"]),
             helper.make_node("Cast", ["batch"], ["batch_cast"], to=TensorProto.INT64),
             helper.make_node("Div", ["channels", "two"], ["half"]),
             helper.make_node("Cast", ["half"], ["half_cast"], to=TensorProto.INT64),
             helper.make_node("Unsqueeze", ["half_cast", "axes"], ["half_1d"]),
             helper.make_node("Concat", ["minus_one", "half_1d"], ["target"], axis=0),
             helper.make_node("Reshape", ["in0", "target"], ["flat"]),
             helper.make_node("Unsqueeze", ["batch_cast", "axes"], ["batch_1d"]),
             helper.make_node("Shape", ["in0"], ["shape_c"]),
             helper.make_node("Gather", ["shape_c", "zero"], ["batch_again"]),
             helper.make_node("Unsqueeze", ["batch_again", "axes"], ["batch_again_1d"]),
             helper.make_node("Concat", ["batch_1d", "batch_again_1d"], ["sizes"], axis=0),
             helper.make_node("Cast", ["sizes"], ["sizes_f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["sizes_f"], ["total"], keepdims=0),
             helper.make_node("Mul", ["flat", "total"], ["out"])]
    for i, node in enumerate(nodes):
        node.name = f"n{i}"
    return helper.make_graph(nodes, "ref", [x], [out])


def test_reference_folds_static_sizes_merges_repeats_and_drops_noop_casts():
    reference = _Reference(_size_arithmetic_graph(), "shared/", 17)
    ops = [n.op_type for n in reference.nodes]
    # channels (static 6) fold into the Reshape target; the batch size stays dynamic, read by one Shape
    assert ops == ["Shape", "Gather", "Reshape", "Unsqueeze", "Concat", "Cast", "ReduceSum", "Mul"], ops
    targets = [v for k, v in reference.constants.items() if v.dims == [2]]
    assert [onnx.numpy_helper.to_array(t).tolist() for t in targets] == [[-1, 3]]
    concat = next(n for n in reference.nodes if n.op_type == "Concat")
    assert concat.input[0] == concat.input[1]  # the repeated batch read is one value
    model = helper.make_model(helper.make_graph(
        reference.instance(helper.make_node("Op", ["x"], ["y"]), "i/"), "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], reference.shared_constants()),
        opset_imports=[helper.make_opsetid("", 17)])
    data = np.arange(18, dtype=np.float32).reshape(3, 6)
    got = run_onnxruntime(model, [data])[0]
    np.testing.assert_array_equal(got, data.reshape(-1, 3) * 6)


def test_reference_graphs_keep_dims_static_where_all_calls_agree():
    # one DCNv2 configuration at two channel counts: one graph, channels dynamic, the 3x3 kernel static
    (first, dynamic), (second, _) = reference_keys([_deform_call(16, channels=4), _deform_call(16, channels=8)])
    assert first == second
    assert dynamic == [[0, 1, 2, 3], [1], [0, 2, 3], [0, 2, 3]]  # input, weight [6, C, 3, 3], offset, mask
    # at one channel count only batch and map sides stay dynamic
    (_, alone), = reference_keys([_deform_call(16, channels=4)])
    assert alone == [[0, 2, 3], [], [0, 2, 3], [0, 2, 3]]
    graph = _export_reference(_deform_call(16, channels=4), 17, alone)
    assert [d.dim_value for d in graph.input[1].type.tensor_type.shape.dim] == [6, 4, 3, 3]
    assert [bool(d.dim_param) for d in graph.input[0].type.tensor_type.shape.dim] == [True, False, True, True]


def test_shape_derived_attributes_share_one_graph_with_every_dim_dynamic():
    def dcnv3_call(side: int, group: int) -> OpCall:
        attrs = DCNV3.normalize(dict(group=group, group_channels=16))
        return OpCall(DCNV3, [torch.zeros(1, side, side, 16 * group), torch.zeros(1, side, side, group * 18),
                              torch.zeros(1, side, side, group * 9)], attrs)

    keys = reference_keys([dcnv3_call(56, 4), dcnv3_call(28, 8), dcnv3_call(14, 16)])
    assert len({key for key, _ in keys}) == 1 and keys[0][1] == [[0, 1, 2, 3]] * 3
    assert reference_keys([_involution_call(3)])[0][1] == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_script_modules_take_the_example_run():
    """The TorchScript exporter converts a ScriptModule without running it: its calls come from the example run."""
    model, x = _tiny_involution_net()
    with torch.no_grad():
        scripted = torch.jit.trace(model, x)
    proto = export_model(scripted, (x,), ExportOptions(target="onnx", exporter="torchscript"))
    _assert_reference_matches(proto, model, x)


def test_torchscript_dynamic_export_types_custom_nodes_in_one_inference_round(monkeypatch):
    """The symbolic run that names the output dims also types every custom node's output, so the
    spec-driven shape inference does not need a round per chained custom node."""
    model = torch.nn.Sequential(*[Involution(16, kernel_size=3, group_channels=8, stride=s) for s in (1, 2, 1, 2)])
    x = torch.randn(1, 16, 20, 24)
    rounds = []
    infer = onnx.shape_inference.infer_shapes
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", lambda *a, **k: rounds.append(1) or infer(*a, **k))
    proto = export_model(model.eval(), (x,), ExportOptions(target="trt", exporter="torchscript",
                                                           dynamic=("batch", "height", "width")))
    typed = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.value_info}
    custom = [n.output[0] for n in proto.graph.node if n.domain == "dynconv"]
    assert len(custom) == 4 and len(rounds) <= 2
    typed.update({v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.output})
    for name in custom:
        assert typed[name][:2] == ["batch", 16] and "height" in typed[name][2] and "width" in typed[name][3]
    assert typed[custom[2]] == typed[custom[1]] != typed[custom[3]]


class _LayerTwiceOnOneInput(torch.nn.Module):
    """The same DCN layer called twice on one input: the TorchScript exporter merges the two calls
    (offset branch and core op) into one node."""

    def __init__(self) -> None:
        super().__init__()
        from dynconv.plugins.deform_conv import ModulatedDeformConv2d

        self.dcn = ModulatedDeformConv2d(4, 4, 3, padding=1)
        self.other = ModulatedDeformConv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.dcn(x) * 2 + self.other(x) - self.dcn(x)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_call_repeated_on_the_same_input_exports_in_the_onnx_flavour(exporter):
    model, x = _LayerTwiceOnOneInput().eval(), torch.randn(1, 4, 7, 6)
    proto = export_model(model, (x,), ExportOptions(target="onnx", exporter=exporter))
    _assert_reference_matches(proto, model, x)


def test_only_exact_repeats_are_dropped():
    from dynconv.export.reference_graph import without_repeats

    first, same, other_attrs = _deform_call(9), None, None
    same = OpCall(first.spec, [None if t is None else t.clone() for t in first.tensors], dict(first.attrs))
    other_attrs = OpCall(first.spec, first.tensors, dict(first.attrs, stride=[1, 1]))
    other_values = OpCall(first.spec, [first.tensors[0] + 1, *first.tensors[1:]], first.attrs)
    assert without_repeats([first, same, other_attrs, other_values]) == [first, other_attrs, other_values]


def _parsed_sizes(monkeypatch) -> list[int]:
    written: list[int] = []
    parse = onnx.load_model_from_string
    monkeypatch.setattr(onnx, "load_model_from_string", lambda b, *a, **k: written.append(len(b)) or parse(b, *a, **k))
    return written


def test_torchscript_export_parses_the_written_model_once(monkeypatch):
    """The exporter's own parse of its output (``_add_onnxscript_fn``) is the one dynconv uses; the
    weights go through neither the exporter's serializer nor that parse (they are attached after it)."""
    model, x = _tiny_involution_net()
    model.append(torch.nn.Conv2d(16, 1024, 1))  # 64 KB of weights: the model's parses stand out
    written = _parsed_sizes(monkeypatch)
    proto = export_model(model, (x,), ExportOptions(target="trt", exporter="torchscript"))
    assert all(size < 60_000 for size in written)
    assert proto.graph.initializer and any(n.domain == "dynconv" for n in proto.graph.node)
    weights = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    assert any(np.array_equal(w, model[2].weight.detach().numpy()) for w in weights.values())


class _FoldedSharedAndIntegerWeights(torch.nn.Module):
    """Constant folding (conv + BatchNorm, a scaled weight), one tensor used twice (deduplicated), an
    int64 buffer, a DCN layer: the initializer table the exporter computes, not the module's parameters."""

    def __init__(self) -> None:
        super().__init__()
        from dynconv.plugins.deform_conv import ModulatedDeformConv2d

        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(8)
        self.shared = torch.nn.Parameter(torch.randn(8, 1, 1))
        self.register_buffer("index", torch.tensor([2, 0, 1, 3, 7, 6, 5, 4]))
        self.dcn = ModulatedDeformConv2d(8, 8, 3, padding=1)

    def forward(self, x):
        y = self.norm(self.conv(x)) * (self.shared * 2) + self.shared
        return self.dcn(y.index_select(1, self.index))


@pytest.mark.parametrize("dynamic", [(), ("batch", "height", "width")])
@pytest.mark.parametrize("target", ["trt", "onnx"])
def test_torchscript_weights_attached_after_the_export_are_the_exporters_own(monkeypatch, target, dynamic):
    """The model written with the weights attached after a weightless export is byte for byte the one
    the exporter writes with its weights, initializer order included."""
    from dynconv.export import torch_export

    model, x = _FoldedSharedAndIntegerWeights().eval(), torch.randn(2, 3, 9, 10)
    with torch.no_grad():
        model.norm.running_mean.uniform_(-1, 1)
        model.norm.running_var.uniform_(0.5, 2)
    options = ExportOptions(target=target, exporter="torchscript", dynamic=dynamic)
    attached = export_model(model, (x,), options)
    monkeypatch.setattr(torch_export, "_initializers_kept", functools.partial(_no_table_kept, False))
    usual = export_model(model, (x,), options)
    assert attached.SerializeToString(deterministic=True) == usual.SerializeToString(deterministic=True)
    assert any(init.data_type == TensorProto.INT64 for init in attached.graph.initializer)
    assert not {init.name for init in attached.graph.initializer} & {value.name for value in attached.graph.input}
    if target == "onnx":
        _assert_reference_matches(attached, model, x)


@contextlib.contextmanager
def _no_table_kept(hooked: bool):
    """Stands in for ``_initializers_kept``: no table, with the hook set (``hooked``: a torch whose
    exporter never reaches the hooked step) or not (a torch without that step)."""
    from dynconv.export.torch_export import KeptInitializers

    kept = KeptInitializers()
    kept.active = hooked
    yield kept


def test_torchscript_export_takes_the_weights_through_the_exporter_when_the_hook_is_not_reached(monkeypatch):
    """A torch whose exporter no longer runs the hooked step: the weightless export is redone with the
    weights (never a model without them)."""
    from dynconv.export import torch_export

    model, x = _tiny_involution_net()
    usual = export_model(model, (x,), ExportOptions(target="trt", exporter="torchscript"))
    monkeypatch.setattr(torch_export, "_initializers_kept", functools.partial(_no_table_kept, True))
    redone = export_model(model, (x,), ExportOptions(target="trt", exporter="torchscript"))
    assert redone.SerializeToString(deterministic=True) == usual.SerializeToString(deterministic=True)


def test_attached_weights_refuse_types_onnx_cannot_store():
    from dynconv.export.torch_export import attach_initializers, storable

    proto = helper.make_model(helper.make_graph([], "g", [], []))
    assert not storable({"w": torch.zeros(2, dtype=torch.complex64), "v": torch.zeros(2)})
    with pytest.raises(DynconvError, match="complex64"):
        attach_initializers(proto, {"w": torch.zeros(2, dtype=torch.complex64)})
    attach_initializers(proto, {"flag": torch.tensor(True), "half": torch.tensor([1.5, -2.0], dtype=torch.float16),
                                "brain": torch.tensor([[1.5], [-3.0]], dtype=torch.bfloat16)})
    values = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    assert values["flag"].dtype == np.bool_ and values["flag"].shape == () and bool(values["flag"])
    assert values["half"].dtype == np.float16 and values["half"].tolist() == [1.5, -2.0]
    assert values["brain"].shape == (2, 1) and values["brain"].astype(np.float32).ravel().tolist() == [1.5, -3.0]


def test_kept_parse_follows_the_functions_the_exporter_appends(monkeypatch):
    """Where the exporter appends onnxscript functions, the kept parse has them and the written bytes
    are the re-serialised model; without the exporter's hook nothing is kept."""
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils
    from dynconv.export import torch_export

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    original = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    function = onnx.FunctionProto(name="F", domain="custom")
    monkeypatch.setattr(onnx_proto_utils, "_find_onnxscript_op", lambda g, seen, opsets, found: found.append(function))
    with torch_export._exporter_parse_kept() as kept:
        written = onnx_proto_utils._add_onnxscript_fn(original, {})
    assert written != original and kept.proto_of(original) is None
    assert [f.name for f in kept.proto_of(written).functions] == ["F"]
    assert onnx.load_model_from_string(written) == kept.proto_of(written)
    assert kept.proto_of(bytes(bytearray(written))) is None  # equal bytes, another object: not trusted
    monkeypatch.delattr(onnx_proto_utils, "_add_onnxscript_fn")
    with torch_export._exporter_parse_kept() as kept:
        assert kept.proto_of(written) is None
