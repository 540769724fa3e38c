"""Load the authors' checkpoints into the networks: unwrap the file's container, rename keys, load strictly.

Known layouts (``CHECKPOINT_LAYOUTS``): InternImage and FlashInternImage classification checkpoints
(``{'model': ...}``, keys already equal), RedNet's mmcls checkpoints (``backbone.``/``head.fc.`` prefixes,
involution as mmcv ConvModules), DDF-ResNet (timm ResNet keys; channel FilterNorm ``std`` -> ``gamma``),
mmdet detectors with a DCNv2 ResNet-50 backbone (``backbone.`` keys; everything else is dropped) and timm's
``skresnext50_32x4d`` (which timm describes as the paper's SKNet-50). The others have none: no official
PyTorch DY-ResNet-50; megvii's DRConv and timm's TF-'same'-padded CondConv-B0 are other forms than these layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from ...plugins.errors import DynconvError

_CONTAINERS = ("state_dict", "model", "module")
_TORCHVISION_STEM = ((r"^conv1\.", "stem.0.conv."), (r"^bn1\.", "stem.0.bn."))
_INVOLUTION = ((r"(^stem\.1|conv2)\.conv1\.conv\.", r"\1.reduce."), (r"(^stem\.1|conv2)\.conv1\.bn\.", r"\1.norm."),
               (r"(^stem\.1|conv2)\.conv2\.conv\.", r"\1.span."))


@dataclass(frozen=True)
class KeyLayout:
    """``keep``: only keys with this prefix are used (then stripped); ``renames``: (regex, replacement), in order."""

    origin: str
    keep: str = ""
    renames: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def convert(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in state.items():
            key = key.removeprefix("module.")
            if not key.startswith(self.keep):
                continue
            key = key[len(self.keep):]
            for pattern, replacement in self.renames:
                key = re.sub(pattern, replacement, key)
            out[key] = value
        return out


CHECKPOINT_LAYOUTS: dict[str, KeyLayout] = {
    "internimage_t": KeyLayout("OpenGVLab/InternImage classification"),
    "flash_internimage_t": KeyLayout("OpenGVLab/DCNv4 classification (FlashInternImage)"),
    "rednet50": KeyLayout("d-li14/involution (mmcls)", renames=(
        (r"^backbone\.", ""), (r"^head\.fc\.", "fc.")) + _INVOLUTION),
    "ddfnet50": KeyLayout("theFoxofSky/ddfnet (timm ResNet)", renames=_TORCHVISION_STEM + (
        (r"channel_branch\.4\.std$", "channel_branch.4.gamma"),)),
    "sknet50": KeyLayout("timm skresnext50_32x4d (SelectiveKernel, split_input=False)", renames=_TORCHVISION_STEM + (
        (r"\.conv1\.conv\.", ".conv1."), (r"\.conv1\.bn\.", ".bn1."), (r"\.conv3\.conv\.", ".conv3."),
        (r"\.conv3\.bn\.", ".bn3."), (r"\.conv2\.paths\.(\d+)\.conv\.", r".conv2.branches.\1.0."),
        (r"\.conv2\.paths\.(\d+)\.bn\.", r".conv2.branches.\1.1."),
        (r"\.conv2\.attn\.fc_reduce\.", ".conv2.squeeze.0."), (r"\.conv2\.attn\.bn\.", ".conv2.squeeze.1."),
        (r"\.conv2\.attn\.fc_select\.", ".conv2.select."))),
    "resnet50_dcn": KeyLayout("open-mmlab/mmdetection (ResNet-50 + DCNv2 backbone)", keep="backbone.",
                              renames=_TORCHVISION_STEM),
}


def unwrap(checkpoint: object) -> Mapping[str, torch.Tensor]:
    """The state dict inside a checkpoint file's object (``{'state_dict': ...}``, ``{'model': ...}`` or bare)."""
    for _ in range(2):
        if isinstance(checkpoint, Mapping) and not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            inner = next((checkpoint[k] for k in _CONTAINERS if isinstance(checkpoint.get(k), Mapping)), None)
            if inner is None:
                break
            checkpoint = inner
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise DynconvError("the checkpoint holds no state dict (expected tensors, or one under 'state_dict'/'model')")
    return checkpoint


def load_authors_checkpoint(name: str, model: nn.Module, checkpoint: object) -> nn.Module:
    """Load the authors' ``checkpoint`` (the object ``torch.load`` returned) into network ``name``, strictly."""
    layout = CHECKPOINT_LAYOUTS.get(name)
    if layout is None:
        raise DynconvError(f"no known checkpoint layout for {name!r}; known: {sorted(CHECKPOINT_LAYOUTS)}")
    state = layout.convert(unwrap(checkpoint))
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DynconvError(f"{name}: the checkpoint is not a {layout.origin} layout: missing {missing[:5]} "
                           f"({len(missing)} in all), unexpected {unexpected[:5]} ({len(unexpected)} in all)")
    bad = [k for k, v in expected.items() if state[k].shape != v.shape]
    if bad:
        raise DynconvError(f"{name}: shape mismatch for {bad[:5]}: checkpoint {tuple(state[bad[0]].shape)}, "
                           f"network {tuple(expected[bad[0]].shape)}")
    model.load_state_dict(state, strict=True)
    return model
