"""Run the two PyTorch ONNX exporters with dynconv's custom nodes.

Both produce the "trt" flavour first: one custom-domain node per core op. The "onnx" flavour is
derived from it (see :mod:`reference_graph`); where the torch.export-based exporter's custom nodes
do not line up with the recorded op calls, it decomposes each op with its PyTorch reference
inside ``torch.onnx.export`` instead (slower: torch's ONNX translation of every reference node).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any, Iterator, Sequence

import onnx
import torch
from torch.export import Dim

from ..plugins.errors import DynconvError
from ..plugins.registration import calls_observed, reference_of, shapes_of, split_args
from ..plugins.registry import all_specs, get_spec
from ..plugins.spec import DOMAIN, OpSpec
from .custom_nodes import dynamo_trt_table, register_torchscript_symbolics, unregister_torchscript_symbolics
from .graph_dims import SymbolicDims, graph_symbolic_dims
from .opset import downconvert
from .progress import stage
from .shapes import is_placeholder_dim
from .standard_ops import standard_ops
from .options import ExportOptions

log = logging.getLogger(__name__)


def export_dynamo(model: torch.nn.Module | torch.export.ExportedProgram, args: Sequence[torch.Tensor],
                  options: ExportOptions, input_names: list[str], output_names: list[str]) -> onnx.ModelProto:
    """torch.export the model, map core ops to custom nodes or references, then ONNX-export."""
    if not isinstance(model, torch.export.ExportedProgram):
        args = _widen_size_one_dynamic_dims(args, options)
    if isinstance(model, torch.export.ExportedProgram):
        program = model
    else:
        with stage("torch.export"):
            program = _torch_export(model, args, options)
    if options.target == "trt":
        table = dynamo_trt_table()
    else:  # ops with a standard ONNX equivalent stay custom here and are swapped afterwards
        kept = standard_ops(options.resolved_opset)
        table = {op: fn for op, fn in _reference_table().items() if op.name().split("::")[1] not in
                 {get_spec(name).torch_name for name in kept}}
        table.update({op: fn for op, fn in dynamo_trt_table().items() if op not in table})
    with stage("ONNX translation"), warnings.catch_warnings(), _decompositions_for_onnx_export(table):
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, tuple(args), dynamo=True, opset_version=max(options.resolved_opset, 18),
                                         input_names=input_names, output_names=output_names, verbose=False,
                                         optimize=False)
    with stage("constant folding and cleanup"):
        light_optimize(onnx_program.model)
    return downconvert(onnx_program.model_proto, options.resolved_opset)


@contextlib.contextmanager
def _decompositions_for_onnx_export(table: dict) -> Iterator[None]:
    """Let ``torch.onnx.export``'s own decomposition pass apply ``table`` too (one retrace, not two).

    The exporter decomposes every op without an ONNX implementation by the entries of
    ``torch._decomp.decomposition_table``; the dynconv ops are added there for the duration of
    the export and removed afterwards.
    """
    global_table = torch._decomp.decomposition_table
    added = [op for op in table if op not in global_table]
    global_table.update({op: table[op] for op in added})
    try:
        yield
    finally:
        for op in added:
            global_table.pop(op, None)


def light_optimize(model: Any) -> None:
    """The onnxscript optimizer's folding and cleanup passes, without its pattern rewriter.

    ``torch.onnx.export(optimize=True)`` spends most of an export matching the rewriter's fusion
    patterns against every node (and the reference decompositions have many), for graphs that
    none of them simplifies much; constant folding, dead-node removal, initializer deduplication
    and CSE are what the exported graphs need. Runs in place on the ``onnx_ir`` model.
    """
    import onnx_ir as ir  # noqa: PLC0415
    from onnx_ir.passes import common  # noqa: PLC0415
    from onnxscript.optimizer import _constant_folding  # noqa: PLC0415

    folding = _constant_folding.FoldConstantsPass(
        shape_inference=True, input_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
        output_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT)
    ir.passes.Sequential(
        common.InlinePass(), folding, common.RemoveUnusedNodesPass(), common.RemoveUnusedFunctionsPass(),
        common.RemoveUnusedOpsetsPass(), common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.LiftSubgraphInitializersToMainGraphPass(), common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(), common.RemoveUnusedNodesPass(), common.OutputFixPass(),
        common.NameFixPass())(model)


def export_torchscript(model: torch.nn.Module, args: Sequence[torch.Tensor], options: ExportOptions,
                       input_names: list[str], output_names: list[str] | None) -> onnx.ModelProto:
    """TorchScript-exporter export with the custom-node symbolics registered."""
    opset = options.resolved_opset
    dynamic_axes = _dynamic_axes(args, input_names, options)
    register_torchscript_symbolics(opset)
    try:
        with stage("TorchScript export"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _initializers_kept() as weights:
                proto = _run_torchscript_exporter(model, args, opset, input_names, output_names, dynamic_axes,
                                                  with_weights=not weights.active)
            if weights.params is not None and storable(weights.params):
                attach_initializers(proto, weights.params)
            elif weights.active:  # no table kept (another exporter path) or an element type of its own
                log.debug("exporting the weights through torch.onnx's serializer")
                proto = _run_torchscript_exporter(model, args, opset, input_names, output_names, dynamic_axes,
                                                  with_weights=True)
    finally:
        unregister_torchscript_symbolics(opset)
    if dynamic_axes:
        with stage("output dim names"):
            dims = graph_symbolic_dims(proto, dynamic_axes) or symbolic_output_dims(model, args, dynamic_axes,
                                                                                   input_names)
        if dims is not None:
            _name_output_dims(proto, dims.outputs)
            _name_custom_node_dims(proto, dims.core_ops)
    return proto


def _run_torchscript_exporter(model: torch.nn.Module, args: Sequence[torch.Tensor], opset: int, input_names: list[str],
                              output_names: list[str] | None, dynamic_axes: dict, with_weights: bool) -> onnx.ModelProto:
    """``torch.onnx.export`` (TorchScript) into memory, returning the exporter's own parse of its output.
    No ``custom_opsets``: the exporter imports a custom domain at version 1 where a node uses it, and
    naming one that no node uses (a network of custom-free layers) prints a C++ warning to stderr."""
    buffer = ModelBytes()
    with _exporter_parse_kept() as parsed:
        torch.onnx.export(model, tuple(args), buffer, dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes or None,
                          do_constant_folding=True, export_params=with_weights)
    written = buffer.value()
    return parsed.proto_of(written) or onnx.load_model_from_string(written)


class KeptParse:
    """The exporter's last serialized model and its parse (see :func:`_exporter_parse_kept`)."""

    def __init__(self) -> None:
        self.written: bytes | None = None
        self.proto: onnx.ModelProto | None = None

    def proto_of(self, written: bytes) -> onnx.ModelProto | None:
        """The kept parse when ``written`` is the very bytes object it was parsed from, else None."""
        return self.proto if written is self.written else None


@contextlib.contextmanager
def _exporter_parse_kept() -> Iterator[KeptParse]:
    """The TorchScript exporter parses the model it serialized (to append the onnxscript functions
    its custom nodes use, ``_add_onnxscript_fn``) and drops the parse: ~20 ms per 40 MB of weights.
    Within the block that step keeps the bytes it returns (what it writes to the file object) and
    their ModelProto, so the caller need not parse them again. The step still appends the functions
    as before; on a torch without that step nothing is kept."""
    kept = KeptParse()
    try:
        from torch.onnx._internal.torchscript_exporter import onnx_proto_utils  # noqa: PLC0415
        original = onnx_proto_utils._add_onnxscript_fn
        find_functions = onnx_proto_utils._find_onnxscript_op
    except (ImportError, AttributeError):
        yield kept
        return

    def add_functions_keeping_parse(model_bytes: bytes, custom_opsets: Any) -> bytes:
        proto = onnx.load_model_from_string(model_bytes)
        functions: list = []
        find_functions(proto.graph, set(), custom_opsets, functions)
        if functions:
            proto.functions.extend(functions)
            model_bytes = proto.SerializeToString()
        kept.written, kept.proto = model_bytes, proto
        return model_bytes

    onnx_proto_utils._add_onnxscript_fn = add_functions_keeping_parse
    try:
        yield kept
    finally:
        onnx_proto_utils._add_onnxscript_fn = original


class KeptInitializers:
    """The initializers the TorchScript exporter would serialize (see :func:`_initializers_kept`):
    ``active`` when the step that makes them is hooked, ``params`` once it ran."""

    def __init__(self) -> None:
        self.active = False
        self.params: dict[str, torch.Tensor] | None = None


@contextlib.contextmanager
def _initializers_kept() -> Iterator[KeptInitializers]:
    """The TorchScript exporter's serializer copies every weight through protobuf at ~1.7 ms per MB
    (and the parse after it at ~0.5 ms per MB): for weight-heavy networks most of an export. Within
    the block the exporter's final initializer table (after constant folding and deduplication, the
    last step before serialization) is kept, so the export can run with ``export_params=False`` and
    :func:`attach_initializers` put the same tensors into the parsed model in one copy each.
    Not ``active`` (export the weights as usual) where this torch lacks that step."""
    kept = KeptInitializers()
    original = getattr(torch._C, "_jit_pass_onnx_deduplicate_initializers", None)
    if original is None:
        yield kept
        return
    kept.active = True

    def deduplicate_keeping(graph: Any, params: dict, training: bool) -> dict:
        result = original(graph, params, training)
        kept.params = dict(result)
        return result

    torch._C._jit_pass_onnx_deduplicate_initializers = deduplicate_keeping
    try:
        yield kept
    finally:
        torch._C._jit_pass_onnx_deduplicate_initializers = original


_ONNX_TYPES = {torch.float32: onnx.TensorProto.FLOAT, torch.float16: onnx.TensorProto.FLOAT16,
               torch.bfloat16: onnx.TensorProto.BFLOAT16, torch.float64: onnx.TensorProto.DOUBLE,
               torch.int64: onnx.TensorProto.INT64, torch.int32: onnx.TensorProto.INT32,
               torch.int16: onnx.TensorProto.INT16, torch.int8: onnx.TensorProto.INT8,
               torch.uint8: onnx.TensorProto.UINT8, torch.bool: onnx.TensorProto.BOOL}


def storable(params: dict[str, torch.Tensor]) -> bool:
    """Every tensor of ``params`` has an element type :func:`attach_initializers` writes."""
    return all(t.dtype in _ONNX_TYPES for t in params.values())


def attach_initializers(proto: onnx.ModelProto, params: dict[str, torch.Tensor]) -> None:
    """Make each of ``params`` an initializer of ``proto`` (little-endian raw data, as the exporter
    writes them) in place of the graph input that ``export_params=False`` left for it."""
    if not storable(params):
        kinds = sorted({str(t.dtype) for t in params.values() if t.dtype not in _ONNX_TYPES})
        raise DynconvError(f"cannot store weights of type {', '.join(kinds)} as ONNX initializers")
    order = [value.name for value in proto.graph.input if value.name in params]  # the exporter's own order
    listed = set(order)
    order += [name for name in params if name not in listed]
    inputs = [value for value in proto.graph.input if value.name not in params]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    for name in order:
        tensor = params[name].detach().cpu().contiguous()
        init = proto.graph.initializer.add()
        init.name = name
        init.data_type = _ONNX_TYPES[tensor.dtype]
        init.dims.extend(tensor.shape)
        init.raw_data = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


class ModelBytes(io.RawIOBase):
    """Where ``torch.onnx.export`` writes its model: keeps the bytes object it is handed (a
    ``BytesIO`` copies it, ~10 ms per 100 MB of weights)."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._chunks.append(data if isinstance(data, bytes) else bytes(data))
        return len(self._chunks[-1])

    def value(self) -> bytes:
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)


def symbolic_output_dims(model: torch.nn.Module, args: Sequence[torch.Tensor], dynamic_axes: dict[str, dict[int, str]],
                         input_names: list[str]) -> SymbolicDims | None:
    """Each output's sizes, and each core-op call's output sizes, as expressions of the named dynamic
    input dims, as the dynamo exporter writes them (e.g. ``(((height - 1)//2)) + 1``); None when the
    model cannot run on symbolic shapes.

    The model runs once on fake tensors whose dynamic dims are symbols (no tracing, no kernels): the
    fallback for graphs that :func:`graph_symbolic_dims` cannot walk (it reads the same sizes off the
    exported graph in a fraction of the time).
    """
    import sympy  # noqa: PLC0415
    from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: PLC0415
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext  # noqa: PLC0415

    mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
    names: dict[Any, sympy.Symbol] = {}
    fakes = []
    try:
        for name, arg in zip(input_names, args):
            axes = dynamic_axes.get(name, {}) if isinstance(arg, torch.Tensor) else {}
            if not axes:
                fakes.append(mode.from_tensor(arg) if isinstance(arg, torch.Tensor) else arg)
                continue
            for axis in axes:  # a size-1 dim would be specialised to the constant 1
                if arg.shape[axis] == 1:
                    arg = torch.cat([arg, arg], dim=axis)
            sizes = [DimDynamic.DYNAMIC if d in axes else DimDynamic.STATIC for d in range(arg.dim())]
            fake = mode.from_tensor(arg, symbolic_context=StatelessSymbolicContext(dynamic_sizes=sizes))
            for axis, label in axes.items():
                size = fake.shape[axis]
                if isinstance(size, torch.SymInt) and isinstance(size.node.expr, sympy.Symbol):
                    names.setdefault(size.node.expr, sympy.Symbol(label, integer=True, positive=True))
            fakes.append(fake)
        calls: list[tuple[str, list]] = []

        def record(spec: Any, tensors: list, attrs: dict[str, Any]) -> None:
            calls.append((spec.name, spec.infer_shapes(shapes_of(tensors), attrs)[0]))

        with mode, torch.no_grad(), calls_observed(record, fake_calls=True):
            out = model(*fakes)
    except Exception as exc:  # data-dependent code: keep the exporter's names
        log.debug("no symbolic output shapes: %s: %s", type(exc).__name__, exc)
        return None

    def named(sizes: Sequence[Any]) -> list[int | str]:
        return [int(d) if not isinstance(d, torch.SymInt) else str(d.node.expr.xreplace(names)) for d in sizes]

    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    return SymbolicDims([named(o.shape) for o in outs], [(name, named(sizes)) for name, sizes in calls])


def _name_custom_node_dims(proto: onnx.ModelProto, dims: list[tuple[str, list[int | str]]]) -> None:
    """Type each custom node's output with its call's symbolic sizes (nodes and calls in the same
    order), so shape inference needs no round per chained custom node."""
    nodes = [n for n in proto.graph.node if n.domain == DOMAIN]
    if len(nodes) != len(dims) or any(n.op_type != name for n, (name, _) in zip(nodes, dims)):
        return
    infos = {v.name: v for v in proto.graph.value_info}
    for node, (_, sizes) in zip(nodes, dims):
        info = infos.get(node.output[0])
        if info is None or len(info.type.tensor_type.shape.dim) != len(sizes) or any(
                isinstance(size, int) and dim.dim_param and not is_placeholder_dim(dim.dim_param)
                for dim, size in zip(info.type.tensor_type.shape.dim, sizes)):
            continue  # a size the symbolic run fixed but the exporter named dynamic: leave it to inference
        for dim, size in zip(info.type.tensor_type.shape.dim, sizes):
            _set_dim(dim, size)


def _name_output_dims(proto: onnx.ModelProto, dims: list[list[int | str]] | None) -> None:
    """Write ``dims`` onto the graph outputs where the exporter left a dim unnamed or invented a name
    (a static size included: the exporter may write ``Gemm_dim_1`` for a classifier's 1000)."""
    if dims is None or len(dims) != len(proto.graph.output):
        return
    for value, sizes in zip(proto.graph.output, dims):
        shape = value.type.tensor_type.shape
        if len(shape.dim) != len(sizes):
            continue
        for dim, size in zip(shape.dim, sizes):
            named = dim.HasField("dim_value") or (dim.dim_param and not is_placeholder_dim(dim.dim_param))
            if not named:
                _set_dim(dim, size)


def _set_dim(dim: onnx.TensorShapeProto.Dimension, size: int | str) -> None:
    dim.Clear()
    if isinstance(size, int):
        dim.dim_value = size
    else:
        dim.dim_param = size


def _torch_export(model: torch.nn.Module, args: Sequence[torch.Tensor], options: ExportOptions) -> torch.export.ExportedProgram:
    specs = [_dim_spec(arg, options) for arg in args]
    names, varargs = _forward_arg_names(model)
    shapes: dict[str, Any] = dict(zip(names, specs[:len(names)]))
    if varargs is not None:  # forward(self, *inputs): one tuple of specs under the starred name
        shapes[varargs] = tuple(specs[len(names):])
    return torch.export.export(model, tuple(args), dynamic_shapes=shapes if options.dynamic else None, strict=False)


def _dim_spec(arg: Any, options: ExportOptions) -> dict[int, Any] | None:
    if isinstance(arg, torch.Tensor) and arg.dim() == 4:
        return {axis: Dim.DYNAMIC for axis in options.dynamic_axes.values()} or None
    if isinstance(arg, torch.Tensor) and arg.dim() >= 1 and "batch" in options.dynamic:
        return {0: Dim.DYNAMIC}
    return None


def _widen_size_one_dynamic_dims(args: Sequence[torch.Tensor], options: ExportOptions) -> tuple:
    """torch.export specialises dims of size 0/1; trace with 2 where such a dim is requested dynamic."""
    widened = []
    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.dim() >= 1:
            axes = [a for a in options.dynamic_axes.values() if arg.dim() == 4 or a == 0]
            for axis in axes:
                if axis < arg.dim() and arg.shape[axis] == 1:
                    arg = torch.cat([arg, arg], dim=axis)
        widened.append(arg)
    return tuple(widened)


def _forward_arg_names(model: torch.nn.Module) -> tuple[list[str], str | None]:
    """Positional parameter names of ``forward`` and the name of its ``*args`` parameter, if any."""
    import inspect

    params = list(inspect.signature(model.forward).parameters.values())
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = next((p.name for p in params if p.kind == p.VAR_POSITIONAL), None)
    return names, varargs


def _reference_table() -> dict:
    def decomposition(spec: OpSpec):
        reference = reference_of(spec)

        def run(*args: Any) -> torch.Tensor:
            tensors, attrs = split_args(spec, args)
            return reference(*tensors, **spec.normalize(attrs))

        return run

    return {getattr(torch.ops.dynconv, s.torch_name).default: decomposition(s) for s in all_specs()}


def _dynamic_axes(args: Sequence[torch.Tensor], input_names: list[str], options: ExportOptions) -> dict:
    """Batch is shared by all inputs; height/width are named per input (their sizes may differ)."""
    axes: dict[str, dict[int, str]] = {}
    first_image = True
    for name, arg in zip(input_names, args):
        if not isinstance(arg, torch.Tensor):
            continue
        if arg.dim() == 4:
            picked = {axis: key if key == "batch" or first_image else f"{key}_{name}"
                      for key, axis in options.dynamic_axes.items()}
            first_image = False
        else:
            picked = {0: "batch"} if "batch" in options.dynamic and arg.dim() >= 1 else {}
        if picked:
            axes[name] = picked
    return axes
