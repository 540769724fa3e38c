"""``dynconv-export``: a PyTorch model file (or a bundled example) to ONNX."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import torch

from ..plugins.errors import DynconvError
from .options import DYNAMIC_AXES, EXPORTERS, LAYOUT_AXES, TARGETS, ExportOptions

log = logging.getLogger("dynconv.export")
PROG = "dynconv-export"


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
    from .examples import EXAMPLES

    p = argparse.ArgumentParser(prog=PROG, description=(
        "Export a PyTorch model with dynamic convolutions to ONNX: --target trt writes one TensorRT "
        "plugin node per core op, --target onnx decomposes them into standard ops for onnxruntime."))
    p.add_argument("model", nargs="?", help="TorchScript file, torch.export program (.pt2) or pickled nn.Module")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--example", choices=sorted(EXAMPLES), help="export a bundled example network instead of MODEL")
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
    p.add_argument("--seed", type=int, default=0, help="seed of the random example input")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    return p


def _load(args: argparse.Namespace) -> tuple[object, tuple[torch.Tensor, ...]]:
    from .examples import build_example
    from .loading import load_model
    from .third_party import map_third_party_modules

    if args.example and args.model:
        raise DynconvError("give either MODEL or --example, not both")
    if args.example:
        model, example = build_example(args.example, seed=args.seed)
        shapes = [parse_shape(s) for s in args.input_shape] or [tuple(example.shape)]
    else:
        if not args.model:
            raise DynconvError("MODEL is required (or use --example NAME)")
        if not args.input_shape:
            raise DynconvError("--input-shape is required for a model file, e.g. --input-shape 1x3x224x224")
        shapes = [parse_shape(s) for s in args.input_shape]
        model = load_model(args.model, allow_pickle=args.allow_pickle)
        if isinstance(model, torch.nn.Module) and not isinstance(model, torch.jit.ScriptModule):
            for name in map_third_party_modules(model):
                log.info("mapped third-party module %s onto dynconv", name)
    generator = torch.Generator().manual_seed(args.seed)
    return model, tuple(torch.randn(s, generator=generator) for s in shapes)


def run(args: argparse.Namespace) -> list[str]:
    from .api import export_model, run_example
    from .report import ExportReport, describe_io, dynamic_modules, plugin_nodes

    model, inputs = _load(args)
    exporter = args.exporter or ("torchscript" if isinstance(model, torch.jit.ScriptModule) else "dynamo")
    options = ExportOptions(target=args.target, exporter=exporter, dynamic=parse_dynamic(args.dynamic),
                            layout=args.layout,
                            opset=args.opset, fp16=args.fp16)
    example_run = run_example(model, inputs)
    calls = example_run.calls
    modules = dynamic_modules(model)
    if not calls and not modules:
        raise DynconvError("the model contains no dynamic-convolution op (dynconv, torchvision or mmcv "
                           "deformable conv); nothing for dynconv to do — export it with torch.onnx directly")
    proto = export_model(model, inputs, options, example_run)

    report = ExportReport(target=options.target, exporter=exporter, opset=_opset(proto))
    report.modules.update(modules)
    report.op_calls.update(c.spec.name for c in calls)
    report.plugin_nodes.update(plugin_nodes(proto))
    report.inputs, report.outputs = describe_io(proto.graph.input), describe_io(proto.graph.output)
    report.path = str(args.output)
    report.size_bytes = _write_atomically(proto, Path(args.output))
    return report.lines()


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _write_atomically(proto, path: Path) -> int:
    from ..runtime._cli import atomic_write_bytes

    data = proto.SerializeToString()
    if not path.parent.exists():
        raise DynconvError(f"output directory does not exist: {path.parent}")
    atomic_write_bytes(path, data)
    return len(data)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    if not args.verbose:
        for noisy in ("torch", "onnxscript", "onnx_ir"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        lines = _quiet(run, args)
    except DynconvError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"{PROG}: internal error: {type(exc).__name__}: {first} (rerun with --debug for details)", file=sys.stderr)
        return 3
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


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
