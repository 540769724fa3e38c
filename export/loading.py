"""Load a user's model file: TorchScript, a torch.export program (.pt2) or a pickled nn.Module.

One loader for every dynconv command (dynconv-export, dynconv-check/bench ``--torch-model``): the
file's kind comes from its content, not its extension, and a pickle (which runs code from the file
when loaded) needs ``allow_pickle``. A file of none of these kinds is named for what it is.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import warnings
import zipfile
from pathlib import Path

import torch

from ..plugins import load_ops
from ..plugins.errors import DynconvError

log = logging.getLogger(__name__)

KINDS = ("torchscript", "exported_program", "pickle")
_PICKLE_PROTOCOLS = range(2, 6)
_HEAD_BYTES = 16


def detect_kind(path: Path) -> str:
    """Which of :data:`KINDS` ``path`` is, from its bytes; DynconvError saying what the file is
    when it is none of them."""
    size = path.stat().st_size
    if size == 0:
        raise DynconvError(f"{path} is empty (0 bytes), not a model file")
    with path.open("rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if zipfile.is_zipfile(path):
        return _zip_kind(path)
    if head.startswith(b"PK\x03\x04"):
        raise DynconvError(f"{path} is a corrupt or truncated zip archive (a damaged .pt2, TorchScript or "
                           "torch.save file?): save the model again")
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return "pickle"  # legacy (non-zip) torch.save format
    if _is_onnx(path, size):
        raise DynconvError(f"{path} is already an ONNX model: dynconv-export reads PyTorch models; check or "
                           "build the ONNX directly (dynconv-check / dynconv-build)")
    raise DynconvError(f"{path} is not a model file dynconv can read (TorchScript, torch.export .pt2 or a "
                       f"torch.save pickle); it starts with bytes {head[:8].hex(' ')}")


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DynconvError(f"{path} is a corrupt zip archive ({exc}): save the model again") from None
    if any("/serialized_exported_program" in n or n.endswith("models/model.json") for n in names):
        return "exported_program"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "pickle"
    raise DynconvError(f"{path} is a zip archive but not a PyTorch model (no TorchScript code, torch.export "
                       "program or torch.save data.pkl inside)")


def _is_onnx(path: Path, size: int) -> bool:
    if path.suffix.lower() != ".onnx" and size > 64 << 20:
        return False
    import onnx  # noqa: PLC0415

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf raises several types for bytes that are not ONNX
        return False
    return model.HasField("graph") and len(model.graph.node) > 0


def import_torchvision_ops() -> bool:
    """Import ``torchvision.ops`` when installed, so ``torchvision::deform_conv2d`` and friends
    resolve in TorchScript files and .pt2 programs; False when torchvision is absent."""
    try:
        importlib.import_module("torchvision.ops")
    except Exception as exc:  # noqa: BLE001 - absent, or built for another torch
        log.debug("torchvision.ops not importable: %s", exc)
        return False
    return True


def load_model(path: str | Path, allow_pickle: bool = False) -> torch.nn.Module | torch.export.ExportedProgram:
    """Load ``path``; a pickled module runs arbitrary code when loaded, so it needs ``allow_pickle``."""
    path = Path(path)
    if not path.is_file():
        raise DynconvError(f"model file not found: {path}")
    kind = detect_kind(path)
    log.info("loading %s as %s", path, kind)
    if kind == "pickle" and not allow_pickle:
        raise DynconvError(
            f"{path} is a pickled model; unpickling runs arbitrary code from the file. "
            "Pass --allow-pickle if you trust it, or save it with torch.jit.trace/torch.export instead")
    load_ops()
    import_torchvision_ops()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": not the user's problem
            if kind == "torchscript":
                return torch.jit.load(str(path), map_location="cpu")
            if kind == "exported_program":
                program = torch.export.load(str(path))
                map_torchvision_ops(program)
                return program
            model = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for files it cannot read
        raise DynconvError(load_failure(path, kind, exc)) from None
    if isinstance(model, dict):
        raise DynconvError(f"{path} holds a state_dict, not a model; save the module itself (torch.save(model))")
    if not isinstance(model, torch.nn.Module):
        raise DynconvError(f"{path} holds a {type(model).__name__}, not an nn.Module")
    return model


def map_torchvision_ops(program: torch.export.ExportedProgram) -> int:
    """Rewrite, in place, every ``torchvision::deform_conv2d`` call of a torch.export program into
    dynconv's ``deform_conv2d`` (same layout of weight, offset and mask); returns how many."""
    torchvision_op = getattr(getattr(torch.ops, "torchvision", None), "deform_conv2d", None)
    if torchvision_op is None:
        return 0
    dynconv_op = torch.ops.dynconv.deform_conv2d.default
    count = 0
    for node in program.graph.nodes:
        if node.op != "call_function" or node.target is not torchvision_op.default:
            continue
        inp, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups, offset_groups, use_mask = node.args
        node.target = dynconv_op
        node.args = (inp, weight, offset, mask if use_mask else None, bias, [sh, sw], [ph, pw], [dh, dw],
                     groups, offset_groups)
        count += 1
    if count:
        program.graph_module.recompile()
        log.info("mapped %d torchvision::deform_conv2d call(s) onto dynconv's deform_conv2d", count)
    return count


def load_failure(path: Path, kind: str, exc: BaseException) -> str:
    """One line: why ``path`` (of ``kind``) did not load, and the fix."""
    text = str(exc)
    op = re.search(r"(torchvision)::(\w+)|torch\.ops\.(torchvision)\.(\w+)", text)
    if op:
        name = f"torchvision::{op.group(2) or op.group(4)}"
        return (f"{path} uses {name}, which needs torchvision: pip install torchvision (the build matching "
                f"torch {torch.__version__.split('+')[0]})")
    attr = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'", text)
    if kind == "pickle" and attr:
        cls, module = attr.groups()
        where = "the saving script's __main__" if module in _main_names() else f"module {module!r}"
        return (f"{path} pickles class {cls} from {where}, which cannot be imported here: the class must be "
                "importable (define it in a module on PYTHONPATH and save again), or save the model as "
                "TorchScript (torch.jit.trace) or a torch.export .pt2")
    if kind == "pickle" and isinstance(exc, ModuleNotFoundError):
        return (f"{path} pickles classes from module {exc.name!r}, which is not importable: add it to "
                "PYTHONPATH, or save the model as TorchScript (torch.jit.trace) or a torch.export .pt2")
    return f"cannot load {path} as {kind}: {underlying_message(exc)}"


def _main_names() -> set[str]:
    """Names the running ``__main__`` module goes by (``python -m pkg.mod`` names it ``pkg.mod``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return {"__main__", getattr(spec, "name", "__main__")}


def underlying_message(exc: BaseException) -> str:
    """The message that says what went wrong: TorchScript and torch.export wrap it in a long report
    whose last ``SomethingError: ...`` line (or first non-empty line) is the cause."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    causes = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
    if causes:
        return causes[-1]
    informative = [line for line in lines if not line.startswith(("File ", "~", "^"))]
    return (informative or [type(exc).__name__])[0][:400]
