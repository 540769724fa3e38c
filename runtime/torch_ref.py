"""Optional PyTorch reference for check/bench; torch is imported only when this is used."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import DynconvError


class TorchModel:
    """A PyTorch model run eagerly on numpy feeds (positional, in the ONNX input order)."""

    name = "torch-eager"

    def __init__(self, model, input_names: Sequence[str], output_names: Sequence[str], device: str = "cpu") -> None:
        import torch  # noqa: PLC0415

        self.torch = torch
        self.device = device
        self.model = _eval_mode(model, device)
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.input_names]
        with torch.inference_mode():
            out = self.model(*args)
        if isinstance(out, torch.Tensor):
            out = (out,)
        elif isinstance(out, Mapping):
            out = tuple(out.values())
        out = tuple(out)
        if len(out) != len(self.output_names):
            raise DynconvError(f"the PyTorch model returned {len(out)} outputs, the ONNX has {len(self.output_names)}")
        if self.device != "cpu":
            torch.cuda.synchronize()
        return {n: t.detach().float().cpu().numpy() if t.dtype == torch.bfloat16 else t.detach().cpu().numpy()
                for n, t in zip(self.output_names, out)}


def _eval_mode(model, device: str):
    """``model`` on ``device`` in eval mode; a torch.export program's module has no train/eval
    switch (its graph is already the inference graph) and keeps its own mode."""
    if hasattr(model, "to"):
        model = model.to(device)
    try:
        model.eval()
    except NotImplementedError:
        pass
    return model


def load_torch_model(path: str | os.PathLike | None, example: str | None, allow_pickle: bool = False):
    """An ``nn.Module``: ``example`` builds ``dynconv.export.examples.build_example(example)`` and
    loads ``path`` as its state dict when given (weights only: no code runs); otherwise ``path`` is
    a TorchScript file, a ``torch.export`` ``.pt2`` program or, with ``allow_pickle``, a pickled
    module, loaded by dynconv-export's loader (the same rules and messages)."""
    try:
        import torch  # noqa: PLC0415
    except ImportError as exc:
        raise DynconvError("--torch-model/--example need PyTorch: pip install torch (CPU build: "
                           "pip install torch --index-url https://download.pytorch.org/whl/cpu)") from exc
    if example is not None:
        return _example_model(torch, path, example)
    if path is None:
        raise DynconvError("give --torch-model FILE and/or --example NAME")
    from dynconv.export.loading import load_model  # noqa: PLC0415

    model = load_model(_existing(path), allow_pickle=allow_pickle)
    return model.module() if isinstance(model, torch.export.ExportedProgram) else model


def _example_model(torch, path, example: str):
    try:
        from dynconv.export.examples import EXAMPLE_NAMES, build_example  # noqa: PLC0415
    except ImportError as exc:
        raise DynconvError(f"dynconv.export.examples is unavailable: {exc}") from exc
    if example not in EXAMPLE_NAMES:
        raise DynconvError(f"unknown example {example!r}; choose from {sorted(EXAMPLE_NAMES)}")
    model, _ = build_example(example)
    if path is None:
        return model
    try:
        state = torch.load(_existing(path), map_location="cpu", weights_only=True)
    except DynconvError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        from dynconv.export.loading import underlying_message  # noqa: PLC0415

        raise DynconvError(f"{path} is not a state dict (weights only) of example {example!r}: "
                           f"{underlying_message(exc)}") from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise DynconvError(f"{path} is not a state dict of example {example!r}: {str(exc).splitlines()[0]}") from exc
    return model


def _existing(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DynconvError(f"PyTorch model {str(p)!r} does not exist")
    return p
