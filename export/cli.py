"""``dynconv-export``: a PyTorch model file (or a bundled example) to ONNX.

Torch is imported only after the command line is parsed: ``--help`` and usage errors work without
it. Exit codes are the ones of every dynconv command (:mod:`dynconv.runtime._cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from ..plugins.errors import DynconvError
from ..runtime._cli import (EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, Parser, check_output_path, error_exit_code,
                            print_error)
from .options import DYNAMIC_AXES, EXPORTERS, LAYOUT_AXES, TARGETS, ExportOptions

log = logging.getLogger("dynconv.export")
PROG = "dynconv-export"
TORCH_MISSING = ("missing dependency torch: dynconv-export needs PyTorch (CPU build: pip install torch "
                 "--index-url https://download.pytorch.org/whl/cpu)")


def parse_shape(text: str) -> tuple[int, ...]:
    """``1x3x224x224`` -> (1, 3, 224, 224)."""
    try:
        dims = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise DynconvError(f"bad --input-shape {text!r}: expected integers joined by 'x', e.g. 1x3x224x224") from None
    if not dims or any(d <= 0 for d in dims):
        raise DynconvError(f"bad --input-shape {text!r}: every dimension must be a positive integer")
    return dims


def parse_dynamic(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    axes = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in axes if a not in DYNAMIC_AXES]
    if bad:
        raise DynconvError(f"bad --dynamic {text!r}: choose from {','.join(DYNAMIC_AXES)}")
    return axes


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=(
        "Export a PyTorch model with dynamic convolutions to ONNX: --target trt writes one TensorRT "
        "plugin node per core op, --target onnx decomposes them into standard ops for onnxruntime. "
        "Exit codes: 0 written, 2 bad command line, 3 bad input (nothing written), 4 internal error."))
    p.add_argument("model", nargs="?", help="TorchScript file, torch.export program (.pt2) or pickled nn.Module")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write (its folder must exist)")
    p.add_argument("--example", metavar="NAME", help="export a bundled example network instead of MODEL "
                   "(an unknown name lists them)")
    p.add_argument("--input-shape", action="append", default=[],
                   help="example input shape, e.g. 1x3x224x224 (repeat for several inputs)")
    p.add_argument("--target", choices=TARGETS, default="trt")
    p.add_argument("--exporter", choices=EXPORTERS, default=None,
                   help="PyTorch exporter (default: dynamo; torchscript for TorchScript files)")
    p.add_argument("--dynamic", default=None, help="comma list of dynamic axes: batch,height,width")
    p.add_argument("--layout", choices=sorted(LAYOUT_AXES), default="nchw",
                   help="where --dynamic height,width sit in 4-D inputs (nhwc: channels-last models)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and I/O (FP16 TensorRT engines)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17; >= 19 uses DeformConv "
                                                         "for DCN in the onnx target)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow loading a pickled nn.Module (runs code from the file: only for files you trust)")
    p.add_argument("--no-map-modules", dest="map_modules", action="store_false",
                   help="do not swap torchvision/mmcv deformable convs and the authors' modules (InternImage "
                        "DCNv3, involution, ...) for dynconv layers")
    p.add_argument("--seed", type=int, default=0, help="seed of the random example input")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    return p


def _options(args: argparse.Namespace, exporter: str) -> ExportOptions:
    return ExportOptions(target=args.target, exporter=exporter, dynamic=parse_dynamic(args.dynamic),
                         layout=args.layout, opset=args.opset, fp16=args.fp16, map_modules=args.map_modules)


def _check_arguments(args: argparse.Namespace) -> Path:
    """Everything about the command line that needs no model: fails before any slow work."""
    if args.example and args.model:
        raise DynconvError("give either MODEL or --example, not both")
    if not args.example and not args.model:
        raise DynconvError("MODEL is required (or use --example NAME)")
    if args.model and not args.input_shape:
        raise DynconvError("--input-shape is required for a model file, e.g. --input-shape 1x3x224x224")
    for text in args.input_shape:
        parse_shape(text)
    _options(args, args.exporter or "dynamo")
    return check_output_path(args.output, "output", inputs=[args.model] if args.model else [])


def _load(args: argparse.Namespace) -> tuple[Any, tuple]:
    import torch  # noqa: PLC0415

    from .api import map_known_modules  # noqa: PLC0415
    from .loading import load_model  # noqa: PLC0415

    if args.example:
        from .examples import EXAMPLE_NAMES, build_example  # noqa: PLC0415

        if args.example not in EXAMPLE_NAMES:
            raise DynconvError(f"unknown --example {args.example!r}; choose from {', '.join(sorted(EXAMPLE_NAMES))}")
        model, example = build_example(args.example, seed=args.seed)
        shapes = [parse_shape(s) for s in args.input_shape] or [tuple(example.shape)]
    else:
        shapes = [parse_shape(s) for s in args.input_shape]
        model = load_model(args.model, allow_pickle=args.allow_pickle)
        if args.map_modules:
            map_known_modules(model)
    generator = torch.Generator().manual_seed(args.seed)
    return model, tuple(torch.randn(s, generator=generator) for s in shapes)


def run(args: argparse.Namespace) -> list[str]:
    import torch  # noqa: PLC0415

    from .api import export_model, run_example, unmapped_module_classes  # noqa: PLC0415
    from .report import ExportReport, describe_io, dynamic_modules, plugin_nodes  # noqa: PLC0415

    output = _check_arguments(args)
    model, inputs = _load(args)
    exporter = args.exporter or ("torchscript" if isinstance(model, torch.jit.ScriptModule) else "dynamo")
    options = _options(args, exporter)
    example_run = run_example(model, inputs)
    calls = example_run.calls
    modules = dynamic_modules(model)
    if not calls and not modules:
        if isinstance(model, torch.jit.ScriptModule) and "torchvision::deform_conv2d" in str(model.inlined_graph):
            raise DynconvError("the TorchScript model calls torchvision::deform_conv2d, which dynconv maps only in "
                               "torch.export .pt2 programs and nn.Modules: save it with torch.export.save instead")
        unmapped = unmapped_module_classes(model)
        hint = f" (unmapped module classes: {', '.join(unmapped)})" if unmapped else ""
        raise DynconvError("the model contains no dynamic-convolution op (dynconv, torchvision or mmcv "
                           f"deformable conv){hint}; nothing for dynconv to do — export it with torch.onnx directly")
    proto = export_model(model, inputs, options, example_run)

    report = ExportReport(target=options.target, exporter=exporter, opset=_opset(proto))
    report.modules.update(modules)
    report.op_calls.update(c.spec.name for c in calls)
    report.plugin_nodes.update(plugin_nodes(proto))
    report.inputs, report.outputs = describe_io(proto.graph.input), describe_io(proto.graph.output)
    report.path = str(args.output)
    report.size_bytes = _write_atomically(proto, output)
    return report.lines()


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _write_atomically(proto, path: Path) -> int:
    """``proto`` (already validated by export_model) to ``path`` through a temporary file."""
    from ..runtime._cli import atomic_write_bytes  # noqa: PLC0415

    data = proto.SerializeToString()
    atomic_write_bytes(path, data)
    return len(data)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if not args.verbose:
        for noisy in ("torch", "onnxscript", "onnx_ir"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    if not args.verbose and sys.stderr.isatty():  # progress lines for interactive use only
        from .progress import enable_progress  # noqa: PLC0415

        enable_progress()
    try:
        import torch  # noqa: F401, PLC0415
    except ImportError:
        print_error(PROG, TORCH_MISSING)
        return EXIT_INPUT
    try:
        lines = _quiet(run, args)
    except (Exception, KeyboardInterrupt) as exc:
        code, message = error_exit_code(exc)
        if code == EXIT_INTERNAL and args.debug:
            raise
        print_error(PROG, message)
        return code
    sys.stdout.write("\n".join(lines) + "\n")
    return EXIT_OK


def _quiet(fn, args):
    """Run ``fn(args)`` with the exporters' progress chatter on stdout silenced unless --verbose."""
    if args.verbose:
        return fn(args)
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn(args)


if __name__ == "__main__":
    sys.exit(main())
