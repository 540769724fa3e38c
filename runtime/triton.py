"""Triton Inference Server model repository entry for a dynconv model: ``<repo>/<name>/config.pbtxt``
+ ``<repo>/<name>/1/model.plan`` (``tensorrt_plan``, its metadata JSON beside it, plugin library
documented in ``README.md``) or ``1/model.onnx`` (``onnxruntime_onnx``, the reference-flavour ONNX).
``dynconv-serve`` serves the same repository folder."""

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


def config_pbtxt(inputs: list[TensorSpec], outputs: list[TensorSpec], name: str, max_batch: int,
                 dynamic_batching: bool, instances: int = 1, max_queue_delay_us: int = 100,
                 platform: str = "tensorrt_plan", instance_kind: str = "KIND_GPU") -> str:
    """The text of ``config.pbtxt``."""
    batched = max_batch > 0
    lines = [
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(_tensor_block(s, batched) for s in inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor_block(s, batched) for s in outputs) + "\n]",
        f"instance_group [\n  {{\n    kind: {instance_kind}\n    count: {instances}\n  }}\n]",
    ]
    if dynamic_batching:
        if not batched:
            raise DynconvError("--dynamic-batching needs --max-batch > 0 (a dynamic batch dim)")
        preferred = sorted({b for b in (max_batch // 2, max_batch) if b > 0})
        lines.append("dynamic_batching {\n"
                     f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]\n"
                     f"  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")
    return "\n".join(lines) + "\n"


def parse_config(text: str):
    """``config.pbtxt`` parsed into Triton's own ``inference.ModelConfig`` protobuf (shipped with
    tritonclient); DynconvError when Triton would reject its syntax or fields."""
    try:
        from google.protobuf import text_format  # noqa: PLC0415
        from tritonclient.grpc import model_config_pb2  # noqa: PLC0415
    except ImportError as exc:
        raise ImportError(f"{exc.name}: checking config.pbtxt needs pip install 'tritonclient[grpc]'",
                          name=exc.name) from exc
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise DynconvError(f"generated config.pbtxt does not parse as Triton's ModelConfig: {exc}") from exc


def _validate_if_possible(text: str) -> None:
    try:
        parse_config(text)
    except ImportError:
        log.debug("tritonclient not installed: config.pbtxt not checked against Triton's ModelConfig")


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

On a device without Triton, `dynconv-serve <repo>` serves this folder with the same protocol
(HTTP :8000, gRPC :8001), so the same tritonclient code talks to either server.
"""


def readme_onnx(name: str) -> str:
    return f"""# {name}: dynconv reference ONNX for Triton's onnxruntime backend

The ONNX holds standard operators only (dynconv-export --target onnx): Triton's onnxruntime backend
runs it without plugins, on the GPU (CUDA execution provider) or the CPU (instance_group kind).
The TensorRT plan of the same model runs faster; this entry is the portable fallback.
"""


_STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}


def onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs of an ONNX model (graph inputs that are initializers excluded);
    DynconvError for a TensorRT-flavour ONNX whose custom ops onnxruntime cannot run."""
    import onnx  # noqa: PLC0415
    from onnx import helper  # noqa: PLC0415

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others
        raise DynconvError(f"{str(path)!r} is not a readable ONNX model: {' '.join(str(exc).split())}") from exc
    custom = sorted({n.domain for n in model.graph.node if n.domain not in _STANDARD_DOMAINS})
    if custom:
        raise DynconvError(f"{str(path)!r} uses custom op domains {custom} (the TensorRT flavour): Triton's "
                           "onnxruntime backend needs dynconv-export --target onnx; serve the plan instead")

    def spec(value) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
        return TensorSpec(value.name, np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)), dims)

    initializers = {t.name for t in model.graph.initializer}
    return ([spec(v) for v in model.graph.input if v.name not in initializers], [spec(v) for v in model.graph.output])


def resolve_onnx_max_batch(inputs: list[TensorSpec], outputs: list[TensorSpec], requested: int | None) -> int:
    """``max_batch_size`` for an ONNX model: ``requested``, else 8 when every I/O has a dynamic
    dim 0 (an ONNX has no profile to bound it), else 0."""
    batchable = all(s.batch_dynamic for s in (*inputs, *outputs))
    if requested is None:
        return 8 if batchable else 0
    if requested < 0:
        raise DynconvError("--max-batch must be >= 0")
    if requested > 0 and not batchable:
        raise DynconvError("--max-batch > 0 needs a dynamic batch dim 0 on every input and output; this model has "
                           f"inputs {[s.to_json()['shape'] for s in inputs]}: use --max-batch 0")
    return requested


def _entry(path: Path, name: str, max_batch: int | None, dynamic_batching: bool, instances: int,
           instance_kind: str, metadata: str | os.PathLike | None) -> tuple[str, str, dict[str, Path]]:
    """The config text, README text and files (``1/<file>`` -> source) of one repository entry."""
    kind = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}[instance_kind]
    if path.suffix == ".onnx":
        if metadata is not None:
            raise DynconvError("--metadata applies to plans, not to an ONNX model")
        inputs, outputs = onnx_io(path)
        mb = resolve_onnx_max_batch(inputs, outputs, max_batch)
        config = config_pbtxt(inputs, outputs, name, mb, dynamic_batching, instances,
                              platform="onnxruntime_onnx", instance_kind=kind)
        return config, readme_onnx(name), {"model.onnx": path}
    if kind != "KIND_GPU":
        raise DynconvError("a TensorRT plan runs on the GPU only: drop --instance-kind cpu")
    meta_path = Path(metadata) if metadata is not None else metadata_path_for(path)
    meta = EngineMetadata.load(meta_path)
    mb = resolve_max_batch(meta, max_batch)
    config = config_pbtxt(meta.inputs, meta.outputs, name, mb, dynamic_batching, instances)
    # the metadata beside the plan lets dynconv-serve (and dynconv-check) open the same repository
    return config, readme(meta, name), {"model.plan": path, "model.plan.json": meta_path}


def write_repo(model: str | os.PathLike, repo: str | os.PathLike, name: str, *, max_batch: int | None = None,
               dynamic_batching: bool = False, instances: int = 1, instance_kind: str = "gpu",
               metadata: str | os.PathLike | None = None) -> Path:
    """Create ``<repo>/<name>`` for a plan (``tensorrt_plan``) or a reference ONNX
    (``onnxruntime_onnx``) atomically (built in a temporary folder, then renamed)."""
    model = Path(model)
    if not model.is_file():
        raise DynconvError(f"model {str(model)!r} does not exist")
    if not name or any(c in name for c in "/\\") or name in (".", ".."):
        raise DynconvError(f"bad model name {name!r}")
    if instances < 1:
        raise DynconvError("--instances must be >= 1")
    if instance_kind not in ("gpu", "cpu"):
        raise DynconvError(f"bad instance kind {instance_kind!r}; use gpu or cpu")
    config, text, files = _entry(model, name, max_batch, dynamic_batching, instances, instance_kind, metadata)
    _validate_if_possible(config)
    repo = Path(repo)
    target = repo / name
    if target.exists():
        raise DynconvError(f"{str(target)!r} already exists; remove it or choose another --name")
    repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    try:
        (staging / "1").mkdir()
        for dest, source in files.items():
            shutil.copyfile(source, staging / "1" / dest)
        (staging / "config.pbtxt").write_text(config, encoding="utf-8")
        (staging / "README.md").write_text(text, encoding="utf-8")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
