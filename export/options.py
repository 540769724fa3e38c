"""Export options shared by the Python API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..plugins.errors import DynconvError

TARGETS = ("trt", "onnx")
EXPORTERS = ("dynamo", "torchscript")
DYNAMIC_AXES = {"batch": 0, "height": 2, "width": 3}
LAYOUT_AXES = {"nchw": DYNAMIC_AXES, "nhwc": {"batch": 0, "height": 1, "width": 2}}
# TensorRT 8.5/8.6 parse ONNX up to opset 17; the torch.export-based exporter starts at 18 and
# down-converts, so 17 is the portable default for every TensorRT the toolkit supports.
DEFAULT_OPSET = 17
STANDARD_DEFORM_CONV_OPSET = 19


@dataclass(frozen=True)
class ExportOptions:
    """How to export a model.

    Attributes:
        target: ``"trt"`` (one custom node per core op, for the TensorRT plugins) or ``"onnx"``
            (every core op decomposed into standard ONNX ops, runnable by onnxruntime).
        exporter: ``"dynamo"`` (torch.export-based) or ``"torchscript"`` (``dynamo=False``).
        dynamic: which of ``batch``, ``height``, ``width`` stay symbolic on 4-D inputs.
        layout: where height and width sit in 4-D inputs: ``"nchw"`` (axes 2, 3) or
            ``"nhwc"`` (axes 1, 2; channels-last models such as InternImage's DCNv3 stages).
        opset: default ONNX opset (17 unless given). With the onnx target and opset >= 19,
            deformable convolutions become the standard ``DeformConv``.
        fp16: store float tensors, inputs and outputs as float16 (index arithmetic stays float32).
        map_modules: first swap, in place, the third-party and authors' modules dynconv recognises
            (torchvision/mmcv deformable convolutions, InternImage DCNv3, involution, ...) for
            dynconv layers with the same weights (see :mod:`dynconv.export.third_party`).
        input_names / output_names: graph I/O names (default ``input``/``output``, numbered if several).
    """

    target: str = "trt"
    exporter: str = "dynamo"
    dynamic: tuple[str, ...] = ()
    layout: str = "nchw"
    opset: int | None = None
    fp16: bool = False
    map_modules: bool = True
    input_names: tuple[str, ...] = field(default_factory=tuple)
    output_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise DynconvError(f"unknown target {self.target!r}; choose one of {list(TARGETS)}")
        if self.exporter not in EXPORTERS:
            raise DynconvError(f"unknown exporter {self.exporter!r}; choose one of {list(EXPORTERS)}")
        bad = [d for d in self.dynamic if d not in DYNAMIC_AXES]
        if bad:
            raise DynconvError(f"unknown dynamic axis {bad}; choose from {list(DYNAMIC_AXES)}")
        if self.layout not in LAYOUT_AXES:
            raise DynconvError(f"unknown layout {self.layout!r}; choose one of {list(LAYOUT_AXES)}")
        if self.opset is not None and not 13 <= self.opset <= 21:
            raise DynconvError(f"opset {self.opset} is not supported; use 13..21 (17 for TensorRT 8.5/8.6)")

    @property
    def dynamic_axes(self) -> dict[str, int]:
        """The requested dynamic axes of a 4-D input, name -> axis index, in this layout."""
        return {key: axis for key, axis in LAYOUT_AXES[self.layout].items() if key in self.dynamic}

    @property
    def resolved_opset(self) -> int:
        return self.opset if self.opset is not None else DEFAULT_OPSET


def io_names(given: tuple[str, ...], count: int, stem: str) -> list[str]:
    """``given`` names when they fit ``count``, else ``stem`` / ``stem_<i>``."""
    if given:
        if len(given) != count:
            raise DynconvError(f"{len(given)} {stem} name(s) given but the model has {count} {stem}(s)")
        return list(given)
    return [stem] if count == 1 else [f"{stem}_{i}" for i in range(count)]
