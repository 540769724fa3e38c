"""Triton Inference Server model repository for a dynconv plan:
``<repo>/<name>/config.pbtxt`` + ``<repo>/<name>/1/model.plan`` + ``README.md`` (plugin loading)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import DynconvError
from .metadata import EngineMetadata, metadata_path_for
from .tensors import TensorSpec, dtype_name

log = logging.getLogger("dynconv.runtime")

_TRITON_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}


def triton_type(dtype: np.dtype) -> str:
    name = dtype_name(dtype)
    if name not in _TRITON_TYPES:
        raise DynconvError(f"dtype {name} has no Triton TYPE_ equivalent")
    return _TRITON_TYPES[name]


def resolve_max_batch(meta: EngineMetadata, requested: int | None) -> int:
    """Triton's ``max_batch_size``: ``requested`` (checked against the profile), or the profile's
    largest batch when every I/O has a dynamic dim 0, else 0 (no Triton batching)."""
    profile_max = meta.max_batch()
    batchable = profile_max is not None and all(s.batch_dynamic for s in meta.outputs)
    if requested is None:
        return profile_max if batchable else 0
    if requested < 0:
        raise DynconvError("--max-batch must be >= 0")
    if requested == 0:
        return 0
    if not batchable:
        raise DynconvError(
            "--max-batch > 0 needs a dynamic batch dim 0 on every input and output; this plan has "
            f"inputs {[s.to_json()['shape'] for s in meta.inputs]}: use --max-batch 0"
        )
    if requested > profile_max:
        raise DynconvError(f"--max-batch {requested} exceeds the engine profile's max batch {profile_max}; "
                           "rebuild with a larger --shapes max")
    lows = [meta.input_range(s.name)[0][0] for s in meta.inputs]
    if any(lo > 1 for lo in lows):
        raise DynconvError("the engine profile's min batch is > 1; Triton sends batches from 1: rebuild with min batch 1")
    return requested


def _tensor_block(spec: TensorSpec, batched: bool) -> str:
    dims = [-1 if d is None else int(d) for d in (spec.shape[1:] if batched else spec.shape)]
    if not dims:
        dims = [1]
    return (f"  {{\n    name: \"{spec.name}\"\n    data_type: {triton_type(spec.dtype)}\n"
            f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}")


def config_pbtxt(meta: EngineMetadata, name: str, max_batch: int, dynamic_batching: bool,
                 instances: int = 1, max_queue_delay_us: int = 100) -> str:
    """The text of ``config.pbtxt``."""
    batched = max_batch > 0
    lines = [
        f'name: "{name}"',
        'platform: "tensorrt_plan"',
        f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(_tensor_block(s, batched) for s in meta.inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor_block(s, batched) for s in meta.outputs) + "\n]",
        f"instance_group [\n  {{\n    kind: KIND_GPU\n    count: {instances}\n  }}\n]",
    ]
    if dynamic_batching:
        if not batched:
            raise DynconvError("--dynamic-batching needs --max-batch > 0 (a dynamic batch dim)")
        preferred = sorted({b for b in (max_batch // 2, max_batch) if b > 0})
        lines.append("dynamic_batching {\n"
                     f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]\n"
                     f"  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")
    return "\n".join(lines) + "\n"


def readme(meta: EngineMetadata, name: str) -> str:
    lib = meta.plugin_library or "/path/to/libdynconv_plugins.so"
    return f"""# {name}: dynconv TensorRT plan for Triton

Built with TensorRT {meta.tensorrt_version} on {meta.gpu_name} (compute capability
{meta.compute_capability}); the Triton server must use the same TensorRT version and GPU type.

The plan needs the dynconv plugin library{'' if meta.plugin_sha256 else ' (this plan was built without it; skip this step)'}.
Load it into the server process in one of these ways:

    LD_PRELOAD={lib} tritonserver --model-repository=<repo>
    tritonserver --model-repository=<repo> --backend-config=tensorrt,plugins={lib}

(plugin library sha256: {meta.plugin_sha256 or 'n/a'})
"""


def write_repo(plan: str | os.PathLike, repo: str | os.PathLike, name: str, *, max_batch: int | None = None,
               dynamic_batching: bool = False, instances: int = 1,
               metadata: str | os.PathLike | None = None) -> Path:
    """Create ``<repo>/<name>`` atomically (built in a temporary folder, then renamed)."""
    plan = Path(plan)
    if not plan.is_file():
        raise DynconvError(f"plan {str(plan)!r} does not exist")
    if not name or any(c in name for c in "/\\") or name in (".", ".."):
        raise DynconvError(f"bad model name {name!r}")
    if instances < 1:
        raise DynconvError("--instances must be >= 1")
    meta = EngineMetadata.load(metadata or metadata_path_for(plan))
    mb = resolve_max_batch(meta, max_batch)
    config = config_pbtxt(meta, name, mb, dynamic_batching, instances)
    repo = Path(repo)
    target = repo / name
    if target.exists():
        raise DynconvError(f"{str(target)!r} already exists; remove it or choose another --name")
    repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    try:
        (staging / "1").mkdir()
        shutil.copyfile(plan, staging / "1" / "model.plan")
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
        (staging / "README.md").write_text(readme(meta, name), encoding="utf-8")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
