"""Map torchvision's and mmcv's deformable convolutions onto dynconv's op before export.

``map_third_party_modules`` swaps, in place, each ``torchvision.ops.DeformConv2d`` and mmcv
``DeformConv2d``/``DeformConv2dPack``/``ModulatedDeformConv2d``/``ModulatedDeformConv2dPack`` for
the dynconv layer with the same weights; ``patch_functional_deform_conv`` routes
``torchvision.ops.deform_conv2d`` calls to dynconv's op. Both do nothing when the library is absent.
``map_third_party_modules`` also maps the original authors' involution, DDF, DRConv, DynamicConv,
DCNv3/v4 and timm's SelectiveKernel/CondConv modules, recognised by structure (see
:mod:`.official_modules`).

Layouts: torchvision, mmcv and dynconv share the offset layout (per offset group, per tap
``k = u*kw + v``, ``(dy, dx)`` pairs) and mask layout; mmcv's ``*Pack`` layers predict them with a
``conv_offset`` conv whose channels are ``[offsets | mask logits]`` (the mask is ``sigmoid``), which
is exactly dynconv's :class:`DeformConv2d`/:class:`ModulatedDeformConv2d` layout.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Callable, Iterator

from torch import nn

from ..plugins.deform_conv import (DeformConv2d, ExternalOffsetDeformConv2d, ModulatedDeformConv2d,
                                   deform_conv2d)
from .official_modules import map_official_modules

log = logging.getLogger(__name__)

Converter = Callable[[nn.Module], nn.Module]


def _import(name: str) -> Any | None:
    """The module ``name`` if this process has imported it already, else None.

    A model holding torchvision/mmcv layers (or code calling their functions) has imported the
    library to build them, so nothing is imported here: importing torchvision.ops costs seconds.
    """
    module = sys.modules.get(name)
    if module is None:
        log.debug("%s is not imported: no model layer can come from it", name)
    return module


def _bare(module: nn.Module, offset_groups: int | None, bias: bool) -> ExternalOffsetDeformConv2d:
    """The dynconv op layer with ``module``'s geometry (offset/mask stay inputs)."""
    out_channels, per_group = module.weight.shape[0], module.weight.shape[1]
    groups = int(getattr(module, "groups", 1))
    layer = ExternalOffsetDeformConv2d(per_group * groups, out_channels, tuple(module.weight.shape[2:]),
                                       module.stride, module.padding, module.dilation, groups, offset_groups,
                                       bias=bias)
    return layer


def _copy(dst: nn.Module, src: nn.Module) -> nn.Module:
    dst.load_state_dict(src.state_dict(), strict=True)
    return dst.to(device=src.weight.device, dtype=src.weight.dtype).train(src.training)


def from_torchvision(module: nn.Module) -> ExternalOffsetDeformConv2d:
    """``torchvision.ops.DeformConv2d`` -> :class:`ExternalOffsetDeformConv2d` (offset groups from the offset)."""
    return _copy(_bare(module, None, module.bias is not None), module)


def from_mmcv(module: nn.Module) -> nn.Module:
    """mmcv deformable layer -> the dynconv layer of the same kind, weights copied."""
    og = int(module.deform_groups)
    bias = getattr(module, "bias", None) is not None
    if hasattr(module, "conv_offset"):
        per_tap = module.conv_offset.out_channels // (og * module.weight.shape[2] * module.weight.shape[3])
        cls = ModulatedDeformConv2d if per_tap == 3 else DeformConv2d
        bare = _bare(module, og, bias)
        layer = cls(bare.in_channels, bare.out_channels, bare.kernel_size, bare.stride, bare.padding,
                    bare.dilation, bare.groups, og, bias=bias)
        return _copy(layer, module)
    return _copy(_bare(module, og, bias), module)


def _third_party_classes() -> list[tuple[type, Converter]]:
    """(class, converter) for every importable third-party deformable layer."""
    found: list[tuple[type, Converter]] = []
    tv = _import("torchvision.ops")
    if tv is not None and hasattr(tv, "DeformConv2d"):
        found.append((tv.DeformConv2d, from_torchvision))
    mmcv_ops = _import("mmcv.ops")
    if mmcv_ops is not None:
        # Pack classes first: they subclass the bare ones.
        for name in ("ModulatedDeformConv2dPack", "DeformConv2dPack", "ModulatedDeformConv2d", "DeformConv2d"):
            cls = getattr(mmcv_ops, name, None)
            if isinstance(cls, type):
                found.append((cls, from_mmcv))
    return found


def map_modules(model: nn.Module, classes: list[tuple[type, Converter]]) -> list[str]:
    """Replace every submodule that is an instance of a listed class (its ``forward`` not
    overridden by a subclass) by its converter's result; returns the replaced names."""
    replaced: list[str] = []
    for name, module in list(model.named_modules()):
        match = next(((cls, conv) for cls, conv in classes if isinstance(module, cls)), None)
        if match is None or not name:
            continue
        cls, convert = match
        if type(module).forward is not cls.forward:
            log.warning("%s (%s) overrides forward(); left unmapped", name, type(module).__qualname__)
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if not isinstance(parent.get_submodule(child), cls):  # already swapped with an outer module
            continue
        setattr(parent, child, convert(module))
        replaced.append(name)
    return replaced


def map_third_party_modules(model: nn.Module) -> list[str]:
    """Swap third-party layers in ``model`` for dynconv layers, in place: torchvision/mmcv deformable
    convolutions (when importable), then the authors' modules :func:`map_official_modules` recognises.

    Returns the dotted names of the replaced submodules, in that order. The model itself (the root)
    is never replaced.
    """
    classes = _third_party_classes()
    replaced = map_modules(model, classes) if classes else []
    return replaced + map_official_modules(model)


@contextlib.contextmanager
def patch_functional_deform_conv() -> Iterator[list[str]]:
    """Within the block, ``torchvision.ops.deform_conv2d`` (and the name inside
    ``torchvision.ops.deform_conv``, which ``torchvision.ops.DeformConv2d`` calls) is dynconv's
    :func:`deform_conv2d`; yields the patched attribute paths (none without torchvision).

    Code that imported the function by name before the block (``from torchvision.ops import
    deform_conv2d``) keeps the original; map such models with :func:`map_third_party_modules` or
    call dynconv's functional op instead.
    """
    saved: list[tuple[Any, str, Any]] = []
    for module_name in ("torchvision.ops", "torchvision.ops.deform_conv"):
        module = _import(module_name)
        if module is not None and hasattr(module, "deform_conv2d"):
            saved.append((module, "deform_conv2d", module.deform_conv2d))
            module.deform_conv2d = deform_conv2d
    try:
        yield [f"{m.__name__}.{attr}" for m, attr, _ in saved]
    finally:
        for module, attr, original in reversed(saved):
            setattr(module, attr, original)
