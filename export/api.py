"""``export_model``: a PyTorch model to ONNX in the "trt" or the "onnx" flavour."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import re
from typing import Iterator, NamedTuple, Sequence

import onnx
import torch

from ..plugins import load_ops
from ..plugins.errors import DynconvError
from ..plugins.registration import shapes_only
from ..plugins.spec import DOMAIN
from .fp16 import convert_to_fp16
from .options import ExportOptions, io_names
from .postprocess import (check_dynamic_dims, check_model, cleanup, rename_dynamic_dims, rename_graph_outputs,
                          set_ir_version)
from .standard_ops import replace_with_standard_ops, standard_ops
from .shapes import infer_shapes_with_custom_nodes, outputs_fully_named
from .reference_graph import CallOrderMismatch, OpCall, recording_calls, run_and_record, splice_references
from .report import dynamic_modules, is_eager_module
from .torch_export import export_dynamo, export_torchscript

log = logging.getLogger(__name__)
load_ops()  # the exporters look the core ops up by name

Model = torch.nn.Module | torch.jit.ScriptModule | torch.export.ExportedProgram


class ExampleRun(NamedTuple):
    """One eager run of a model on its example inputs: its outputs and the core-op calls it made."""

    outputs: list[torch.Tensor]
    calls: list[OpCall]


def export_model(model: Model, example_inputs: Sequence[torch.Tensor], options: ExportOptions | None = None,
                 example_run: ExampleRun | None = None) -> onnx.ModelProto:
    """Export ``model`` called on ``example_inputs`` to an ONNX ModelProto.

    With ``options.target == "trt"`` every dynconv core op becomes one ``dynconv``-domain node
    named and attributed as its spec says; with ``"onnx"`` every core op is decomposed into
    standard ONNX ops. The result passes ``onnx.checker`` and carries output shapes.
    ``example_run`` is :func:`run_example` of the same model and inputs when the caller already
    has it (the model then runs only inside the exporter).

    With ``options.map_modules`` (the default) the third-party and authors' modules dynconv
    recognises are first swapped, in place, for dynconv layers (:func:`map_known_modules`). A "trt"
    export that ends with no custom node is an error naming the module classes left unmapped.
    """
    with collector_paused():
        return _export_model(model, tuple(example_inputs), options or ExportOptions(), example_run)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block. An export allocates tens of thousands of
    container objects (traced graphs, protobuf wrappers, symbolic sizes), enough to trigger full
    collections that each scan the whole process (the model's modules and tensors included) for
    ~0.1 s and free next to nothing. What the block leaves cyclic is collected after it, as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _export_model(model: Model, args: tuple, options: ExportOptions, example_run: ExampleRun | None) -> onnx.ModelProto:
    if isinstance(model, torch.nn.Module):
        model.eval()
    if options.map_modules and map_known_modules(model) and example_run is not None:
        example_run = None  # the model changed: run it again
    input_names = io_names(options.input_names, len(args), "input")
    if options.exporter == "dynamo" and isinstance(model, torch.jit.ScriptModule):
        raise DynconvError("TorchScript models export with --exporter torchscript (torch.export cannot trace them)")
    if options.exporter == "dynamo" and isinstance(model, torch.export.ExportedProgram):
        _require_program_dynamic_dims(model, options)
    if options.exporter == "torchscript" and example_run is None and not isinstance(model, torch.jit.ScriptModule):
        proto = _export_recording_calls(model, args, options, input_names)
    else:
        outputs, calls = example_run if example_run is not None else run_example(model, args)
        output_names = io_names(options.output_names, len(outputs), "output")
        proto = _export_or_explain(model, args, calls, options, input_names, output_names)

    if options.target == "trt" and not any(node.domain == DOMAIN for node in proto.graph.node):
        _require_dynconv_content(model, options)
    proto = cleanup(proto)
    proto = rename_dynamic_dims(proto, options.dynamic_axes)
    check_dynamic_dims(proto, options.dynamic_axes)
    proto = infer_shapes_with_custom_nodes(proto)
    if options.fp16:
        proto = convert_to_fp16(proto)
    proto = set_ir_version(proto)
    proto.producer_name = "dynconv"
    check_model(proto)
    return proto


def _export_or_explain(model: Model, args: tuple, calls: list[OpCall], options: ExportOptions,
                       input_names: list[str], output_names: list[str] | None) -> onnx.ModelProto:
    """:func:`_export`, with an exporter's failure turned into one line naming the other exporter."""
    try:
        return _export(model, args, calls, options, input_names, output_names)
    except DynconvError:
        raise
    except Exception as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        other = "torchscript" if options.exporter == "dynamo" else "dynamo"
        raise DynconvError(f"the {options.exporter} exporter failed: {type(exc).__name__}: "
                           f"{' '.join(lines[:2])[:400]} (try --exporter {other})") from None


def _export_recording_calls(model: Model, args: tuple, options: ExportOptions,
                            input_names: list[str]) -> onnx.ModelProto:
    """The TorchScript exporter's trace runs the model once: record the core-op calls there (their
    values are not needed, so the ops compute nothing) instead of in a separate example run. (A
    ScriptModule is converted without running, so it takes the example run.)
    When the export fails, the example run says whether the model rejects its inputs."""
    try:
        with recording_calls() as calls, shapes_only():
            proto = _export_or_explain(model, args, calls, options, input_names, None)
    except DynconvError:
        run_example(model, args)  # raises the model's own failure, if that is the cause
        raise
    rename_graph_outputs(proto, io_names(options.output_names, len(proto.graph.output), "output"))
    return proto


def map_known_modules(model: Model) -> list[str]:
    """Swap, in place, the torchvision/mmcv deformable convolutions and the authors' modules in
    ``model`` for dynconv layers (nothing for TorchScript or torch.export programs); returns the
    dotted names of the replaced submodules."""
    from .third_party import map_third_party_modules  # noqa: PLC0415

    if not is_eager_module(model):
        return []
    replaced = map_third_party_modules(model)
    for name in replaced:
        log.info("mapped %s onto a dynconv layer", name)
    return replaced


def unmapped_module_classes(model: Model) -> list[str]:
    """Qualified class names of the submodules that a dynconv mapping knows by class name but
    that are still in ``model`` (mapping switched off, or their structure did not match)."""
    from .official_modules import CONVERTERS  # noqa: PLC0415
    from .third_party import _third_party_classes  # noqa: PLC0415

    if not is_eager_module(model):
        return []
    third_party = tuple(cls for cls, _ in _third_party_classes())
    found = {f"{type(m).__module__}.{type(m).__qualname__}" for m in model.modules()
             if type(m).__name__ in CONVERTERS and not type(m).__module__.startswith("dynconv.")
             or (third_party and isinstance(m, third_party))}
    return sorted(found)


def _require_dynconv_content(model: Model, options: ExportOptions) -> None:
    """A trt export without plugin nodes is fine for dynconv's custom-free layers (CondConv,
    DynamicConv, SKConv export as standard ops); it is an error when modules were left unmapped or an
    nn.Module holds no dynconv layer at all."""

    unmapped = unmapped_module_classes(model)
    if unmapped:
        how = ("mapping is off (map_modules=False / --no-map-modules)" if not options.map_modules
               else "their structure did not match dynconv's layers; rerun with -v for the reason")
        raise DynconvError(f"the trt export has no dynconv plugin node: unmapped module classes "
                           f"{', '.join(unmapped)} ({how})")
    if is_eager_module(model) and not dynamic_modules(model):
        raise DynconvError("the trt export has no dynconv plugin node: the model has no dynconv layer or op (use "
                           "dynconv's layers, or export it with torch.onnx directly)")


def _export(model: Model, args: tuple, calls: list[OpCall], options: ExportOptions, input_names: list[str],
            output_names: list[str] | None) -> onnx.ModelProto:
    """The trt flavour from either exporter; for the onnx target its custom nodes are then swapped
    for their reference subgraphs (one path for both exporters, see :mod:`reference_graph`)."""
    trt_options = dataclasses.replace(options, target="trt")
    if options.exporter == "dynamo":
        proto = export_dynamo(model, args, trt_options, input_names, output_names)
    else:
        module = model.module() if isinstance(model, torch.export.ExportedProgram) else model
        proto = export_torchscript(module, args, trt_options, input_names, output_names)
    if options.target == "trt":
        return proto
    try:
        return _decompose(proto, calls, options)
    except CallOrderMismatch as exc:
        if options.exporter != "dynamo":
            raise
        log.info("%s; decomposing inside torch.onnx.export instead", exc)
    proto = export_dynamo(model, args, options, input_names, output_names)
    return replace_with_standard_ops(proto, options.resolved_opset)


def _decompose(proto: onnx.ModelProto, calls: list[OpCall], options: ExportOptions) -> onnx.ModelProto:
    """Swap the custom nodes of a trt-flavour graph for reference subgraphs (standard nodes where
    the opset has one), keeping the spec-derived output shapes of the trt flavour."""
    typed = None
    if not outputs_fully_named(proto):
        typed = onnx.ModelProto()
        typed.CopyFrom(proto)
        typed = infer_shapes_with_custom_nodes(rename_dynamic_dims(cleanup(typed), options.dynamic_axes))
    proto = splice_references(proto, calls, options.resolved_opset, keep=standard_ops(options.resolved_opset))
    if typed is not None:
        _copy_output_types(typed, proto)
    return replace_with_standard_ops(proto, options.resolved_opset)


def run_example(model: Model, args: Sequence[torch.Tensor]) -> ExampleRun:
    """Run the model once in eval mode: validates the example inputs, counts outputs, records core-op
    calls. The core ops compute nothing (:func:`shapes_only`): their outputs are zeros of the right
    shape, so the outputs' values are not the model's."""
    if isinstance(model, torch.nn.Module):
        model.eval()
    runner = model.module() if isinstance(model, torch.export.ExportedProgram) else model
    try:
        with shapes_only():  # the calls' shapes and the output count are what is used, not values
            out, calls = run_and_record(runner, tuple(args))
    except DynconvError:
        raise
    except Exception as exc:  # the user's model rejected the inputs: report it in one line
        raise DynconvError(_example_failure(model, args, _plain_failure(runner, args) or exc)) from None
    if isinstance(out, torch.Tensor):
        return ExampleRun([out], calls)
    if isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
        return ExampleRun(list(out), calls)
    raise DynconvError(f"the model must return a tensor or a tuple of tensors, got {type(out).__name__}")


def _plain_failure(runner, args: Sequence[torch.Tensor]) -> BaseException | None:
    """The model's own exception on ``args`` outside the op recorder (TorchScript loses the message
    of an error raised under a dispatch mode)."""
    try:
        with torch.no_grad():
            runner(*args)
    except Exception as exc:  # noqa: BLE001 - whatever the model raises is the message we want
        return exc
    return None


def _example_failure(model: Model, args: Sequence[torch.Tensor], exc: BaseException) -> str:
    """Why the model rejected the example inputs: expected vs given shapes where the model records
    them (torch.export programs), and the underlying message (TorchScript hides it at the end)."""
    from .loading import underlying_message  # noqa: PLC0415

    given = ", ".join("x".join(map(str, a.shape)) for a in args)
    expected = _program_input_shapes(model) if isinstance(model, torch.export.ExportedProgram) else None
    reason = underlying_message(exc)
    if not re.match(r"^[A-Za-z_.]*(Error|Exception): ", reason):
        reason = f"{type(exc).__name__}: {reason}"
    shapes = f"expected input shape {expected}, given {given}" if expected else f"given input shape {given}"
    return f"the model failed on the example input ({shapes}): {reason}"


def _program_input_shapes(program: torch.export.ExportedProgram) -> str | None:
    user_inputs = set(program.graph_signature.user_inputs)
    shapes = [node.meta.get("val") for node in program.graph.nodes
              if node.op == "placeholder" and node.name in user_inputs]
    if not shapes or not all(isinstance(v, torch.Tensor) for v in shapes):
        return None
    return ", ".join("x".join(str(d) if isinstance(d, int) else "?" for d in v.shape) for v in shapes)


def _require_program_dynamic_dims(program: torch.export.ExportedProgram, options: ExportOptions) -> None:
    """A torch.export program keeps the shapes it was exported with: a requested dynamic axis that
    it fixed cannot be made dynamic again."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        value = node.meta.get("val") if node.op == "placeholder" and node.name in user_inputs else None
        if not isinstance(value, torch.Tensor):
            continue
        for key, axis in options.dynamic_axes.items():
            if axis < value.dim() and (value.dim() == 4 or axis == 0) and isinstance(value.shape[axis], int):
                raise DynconvError(
                    f"the torch.export program fixed input '{node.name}' axis {axis} ({key}) to {value.shape[axis]}: "
                    f"export it with dynamic_shapes for that axis, or drop {key} from --dynamic")


def _copy_output_types(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    """Keep the spec-derived output shapes of ``source`` on ``target``'s graph outputs."""
    types = {o.name: o.type for o in source.graph.output}
    for value in target.graph.output:
        if value.name in types:
            value.type.CopyFrom(types[value.name])
