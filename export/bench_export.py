"""Export-time benchmark: dynconv's export against plain ``torch.onnx.export`` of a conv-only twin.

The yardstick is the same network with every dynconv op call replaced by a standard convolution of
the same input/output shape (see :func:`standard_conv_twin`), exported by ``torch.onnx.export`` with
the same exporter and dynamic axes. Usage::

    python -m dynconv.export.bench_export mixed dcnv2 --exporter dynamo torchscript --target onnx trt

prints one row per (example, exporter, target): dynconv's seconds and the yardstick's (each the fastest
of the rounds), and two ratios: of the fastest times, and the median over rounds of each round's own ratio (the
yardstick and dynconv timed back to back: a slow spell of a shared machine hits both, and one lucky
fast yardstick round moves the median by one place instead of setting the ratio).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from ..plugins.spec import OpSpec
from .options import DEFAULT_OPSET, DYNAMIC_AXES, ExportOptions
from .reference_graph import calls_replaced

log = logging.getLogger(__name__)

StandIn = Callable[[list, dict], torch.Tensor]


def _depthwise(x: torch.Tensor, kernel: Sequence[int], stride: Any, padding: Any, dilation: Any) -> torch.Tensor:
    channels = int(x.shape[1])  # a constant: the TorchScript exporter needs a static kernel shape
    weight = x.new_ones(channels, 1, *kernel)
    return F.conv2d(x, weight, None, stride, padding, dilation, channels)


def _deform_conv(tensors: list, attrs: dict) -> torch.Tensor:
    x, weight, _, _, bias = tensors
    return F.conv2d(x, weight, bias, attrs["stride"], tuple(attrs["padding"][:2]), attrs["dilation"], attrs["groups"])


def _dcnv3(tensors: list, attrs: dict) -> torch.Tensor:
    x = tensors[0].permute(0, 3, 1, 2)
    out = _depthwise(x, attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["dilation"])
    return out.permute(0, 2, 3, 1)


def _involution(tensors: list, attrs: dict) -> torch.Tensor:
    return _depthwise(tensors[0], attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["dilation"])


def _ddf(tensors: list, attrs: dict) -> torch.Tensor:
    k, d = attrs["kernel_size"], attrs["dilation"]
    return _depthwise(tensors[0], (k, k), attrs["stride"], d * (k - 1) // 2, d)


def _drconv(tensors: list, attrs: dict) -> torch.Tensor:
    x, _, filters = tensors
    weight = x.new_ones(*(int(d) for d in filters.shape[2:]))  # [O, C, kh, kw], static for TorchScript
    return F.conv2d(x, weight, None, attrs["stride"], attrs["padding"], attrs["dilation"])


STAND_INS: dict[str, StandIn] = {"deform_conv2d": _deform_conv, "dcnv3": _dcnv3, "involution": _involution,
                                 "ddf": _ddf, "drconv": _drconv}


@contextlib.contextmanager
def standard_conv_twin() -> Iterator[None]:
    """Within the block, every dynconv functional op runs (and traces) as a standard convolution."""

    def stand_in(spec: OpSpec, tensors: Sequence[torch.Tensor | None], attrs: dict[str, Any]) -> torch.Tensor:
        return STAND_INS[spec.torch_name](list(tensors), spec.normalize(attrs))

    with calls_replaced(stand_in):
        yield


def time_dynconv(model: torch.nn.Module, x: torch.Tensor, options: ExportOptions) -> float:
    """Seconds for dynconv's ``export_model`` (its example run included)."""
    from .api import export_model  # noqa: PLC0415

    start = time.perf_counter()
    export_model(model, (x,), options)
    return time.perf_counter() - start


def time_yardstick(model: torch.nn.Module, x: torch.Tensor, exporter: str, dynamic: tuple[str, ...]) -> float:
    """Seconds for plain ``torch.onnx.export`` of the conv-only twin of ``model``, at the opset dynconv
    writes (TorchScript; the torch.export-based exporter starts at 18 and dynconv converts down)."""
    axes = {DYNAMIC_AXES[k]: k for k in dynamic}
    with standard_conv_twin(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        if exporter == "dynamo":
            shapes = ({a: torch.export.Dim.DYNAMIC for a in axes},) if axes else None
            torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=shapes, verbose=False)
        else:
            torch.onnx.export(model, (x,), io.BytesIO(), dynamo=False, input_names=["input"],
                              dynamic_axes={"input": axes} if axes else None, opset_version=DEFAULT_OPSET)
        return time.perf_counter() - start


def run(names: Sequence[str], exporters: Sequence[str], targets: Sequence[str], dynamic: tuple[str, ...],
        repeat: int = 1) -> list[dict]:
    """Time every (example, exporter, target), print a row for each, return the rows. Each of the
    ``repeat`` rounds times the yardstick and then every target once (interleaved, so slow spells
    of a shared machine hit both); a row keeps the fastest of each and the rounds' ratios' median
    (:func:`timing_row`)."""
    from .examples import build_example  # noqa: PLC0415

    rows = []
    for exporter in exporters:  # first exports pay one-off costs (imports, caches): not part of any row
        time_yardstick(torch.nn.Conv2d(3, 3, 3).eval(), torch.randn(1, 3, 8, 8), exporter, dynamic)
    for name in names:
        model, x = build_example(name)
        for exporter in exporters:
            yard: list[float] = []
            ours: dict[str, list[float]] = {target: [] for target in targets}
            for _ in range(max(1, repeat)):
                yard.append(time_yardstick(model, x, exporter, dynamic))
                for target in targets:
                    options = ExportOptions(target=target, exporter=exporter, dynamic=dynamic)
                    ours[target].append(time_dynconv(model, x, options))
            for target in targets:
                rows.append(timing_row(name, exporter, target, ours[target], yard))
                print(_format(rows[-1]), flush=True)
    return rows


def timing_row(example: str, exporter: str, target: str, ours: Sequence[float], yard: Sequence[float]) -> dict:
    """One table row from round-by-round seconds (``ours[i]`` and ``yard[i]`` timed in round i)."""
    return dict(example=example, exporter=exporter, target=target, dynconv=min(ours), yardstick=min(yard),
                ratio=min(ours) / min(yard), paired=statistics.median(o / y for o, y in zip(ours, yard)))


def _format(row: dict) -> str:
    return (f"{row['example']:<16} {row['exporter']:<12} {row['target']:<5} {row['dynconv']:8.2f} "
            f"{row['yardstick']:10.2f} {row['ratio']:6.2f} {row['paired']:7.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dynconv.export.bench_export", description=__doc__.split("\n")[0])
    p.add_argument("examples", nargs="+", help="bundled example names (see dynconv-export --help)")
    p.add_argument("--exporter", nargs="+", default=["dynamo", "torchscript"], choices=["dynamo", "torchscript"])
    p.add_argument("--target", nargs="+", default=["onnx", "trt"], choices=["onnx", "trt"])
    p.add_argument("--dynamic", default="", help="comma list of batch,height,width")
    p.add_argument("--repeat", type=int, default=1, help="rounds of timing (yardstick and dynconv interleaved): the fastest of each "
                   "and the median of the rounds' ratios are kept")
    args = p.parse_args(argv)
    dynamic = tuple(d for d in args.dynamic.split(",") if d)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    print(f"{'example':<16} {'exporter':<12} {'target':<5} {'dynconv':>8} {'yardstick':>10} {'ratio':>6} {'paired':>7}")
    run(args.examples, args.exporter, args.target, dynamic, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
