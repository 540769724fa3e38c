"""Load a user's model file: TorchScript, a torch.export program (.pt2) or a pickled nn.Module."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import torch

from ..plugins.errors import DynconvError

log = logging.getLogger(__name__)

KINDS = ("torchscript", "exported_program", "pickle")


def detect_kind(path: Path) -> str:
    """Which kind of file ``path`` is, from its archive layout (not its extension)."""
    if not zipfile.is_zipfile(path):
        return "pickle"  # legacy torch.save format or not a torch file at all; torch.load decides
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any("/serialized_exported_program" in n or n.endswith("models/model.json") for n in names):
        return "exported_program"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    return "pickle"


def load_model(path: str | Path, allow_pickle: bool = False) -> torch.nn.Module | torch.export.ExportedProgram:
    """Load ``path``; a pickled module runs arbitrary code when loaded, so it needs ``allow_pickle``."""
    path = Path(path)
    if not path.is_file():
        raise DynconvError(f"model file not found: {path}")
    kind = detect_kind(path)
    log.info("loading %s as %s", path, kind)
    try:
        if kind == "torchscript":
            return torch.jit.load(str(path), map_location="cpu")
        if kind == "exported_program":
            return torch.export.load(str(path))
        if not allow_pickle:
            raise DynconvError(
                f"{path} is a pickled model; unpickling runs arbitrary code from the file. "
                "Pass --allow-pickle if you trust it, or save it with torch.jit.trace/torch.export instead")
        model = torch.load(str(path), map_location="cpu", weights_only=False)
    except DynconvError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DynconvError(f"cannot load {path} as {kind}: {first}") from None
    if isinstance(model, dict):
        raise DynconvError(f"{path} holds a state_dict, not a model; save the module itself (torch.save(model))")
    if not isinstance(model, torch.nn.Module):
        raise DynconvError(f"{path} holds a {type(model).__name__}, not an nn.Module")
    return model
