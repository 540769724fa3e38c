"""Build a TensorRT plan from ONNX (TensorRT 8.5 .. 11) and write it with its metadata JSON."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DynconvError

from . import plugin_lib, trt_compat
from ._cli import atomic_write_bytes
from .metadata import EngineMetadata, Profile, metadata_path_for, sha256_file
from .tensors import TensorSpec, format_shape

log = logging.getLogger("dynconv.runtime")


@dataclass
class BuildOptions:
    """What ``dynconv-build`` accepts. ``shapes`` maps input name -> (min, opt, max)."""

    onnx_path: Path
    plan_path: Path
    plugins: str | None = "auto"
    fp16: bool = False
    shapes: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)
    workspace_mib: int | None = None
    timing_cache: Path | None = None
    tactic_sources: str | None = None
    strongly_typed: bool = False
    tf32: bool = False  # let FP32 layers run in TF32 (TensorRT's default; off here so FP32 stays FP32)


def build(options: BuildOptions) -> EngineMetadata:
    """Parse, build and write ``options.plan_path`` + ``<plan>.json``; returns the metadata."""
    if not options.onnx_path.is_file():
        raise DynconvError(f"ONNX model {str(options.onnx_path)!r} does not exist")
    trt = trt_compat.import_tensorrt()
    from . import device  # noqa: PLC0415

    if device.device_count() == 0:
        raise DynconvError("no CUDA device is visible: building a TensorRT engine needs a GPU")
    gpu = device.current_gpu()
    lib = plugin_lib.locate(options.plugins)
    if lib is not None:
        plugin_lib.load(lib)
    logger = trt_compat.logger(trt)
    if lib is not None and hasattr(trt, "init_libnvinfer_plugins"):
        trt.init_libnvinfer_plugins(logger, "")

    try:
        builder = trt.Builder(logger)
    except TypeError:  # pybind11 "factory function returned nullptr"
        builder = None
    if builder is None:
        raise DynconvError("TensorRT could not create a builder (CUDA initialisation failed?)")
    network = builder.create_network(trt_compat.network_flags(trt, options.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(options.onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        hint = "" if lib is not None else " (no plugin library loaded: pass --plugins PATH)"
        raise DynconvError(f"TensorRT could not parse {options.onnx_path.name}: {'; '.join(errors)}{hint}")

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    config = builder.create_builder_config()
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mib) << 20)
    precision = configure_precision(trt, builder, config, options)
    tf32 = tf32_enabled(trt, config)
    enabled_sources = trt_compat.apply_tactic_sources(trt, config, options.tactic_sources)
    profile_shapes = _add_profile(builder, config, inputs, options.shapes)
    cache = _load_timing_cache(config, options.timing_cache)
    monitor = _attach_progress(trt, config)

    log.warning("building %s (TensorRT %s, %s, %s); this can take minutes",
                options.plan_path.name, trt.__version__, gpu.name, precision)
    started = time.monotonic()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if isinstance(monitor, _Ticker):
            monitor.stop()
    if serialized is None:
        raise DynconvError("TensorRT failed to build the engine; rerun with -v to see TensorRT's log")
    log.warning("built in %.1f s", time.monotonic() - started)

    meta = EngineMetadata(
        tensorrt_version=trt.__version__,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=precision,
        inputs=[TensorSpec(t.name, trt_compat.np_dtype(trt, t.dtype), _dims(t.shape)) for t in inputs],
        outputs=[TensorSpec(t.name, trt_compat.np_dtype(trt, t.dtype), _dims(t.shape)) for t in outputs],
        profiles=[Profile(profile_shapes)] if profile_shapes else [],
        plugin_library=str(lib.resolve()) if lib is not None else None,
        plugin_sha256=plugin_lib.digest(lib),
        onnx_sha256=sha256_file(options.onnx_path),
        builder={
            "workspace_mib": options.workspace_mib,
            "tactic_sources": enabled_sources,
            "strongly_typed": options.strongly_typed or trt_compat.major(trt) >= 11,
            "tf32": tf32,
        },
    )
    atomic_write_bytes(options.plan_path, bytes(serialized))
    try:
        meta.save(metadata_path_for(options.plan_path))
        if cache is not None and options.timing_cache is not None:
            atomic_write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    except BaseException:
        options.plan_path.unlink(missing_ok=True)
        raise
    return meta


def _dims(shape) -> tuple[int | None, ...]:
    return tuple(None if int(d) < 0 else int(d) for d in shape)


def configure_precision(trt, builder, config, options: BuildOptions) -> str:
    """Set the precision flags of ``config``; returns the metadata precision label.

    TensorRT turns ``BuilderFlag.TF32`` on by default, so the FP32 convolutions and matmuls of a
    network (DCN offsets, DRConv guides) would run with 10-bit mantissas and miss FP32 parity:
    TF32 is cleared unless ``options.tf32`` asks for it (in strongly typed networks too, whose FP32
    layers follow the same flag)."""
    _configure_tf32(trt, config, options.tf32)
    if trt_compat.major(trt) >= 11 or options.strongly_typed:
        if options.fp16:
            log.warning("strongly typed network: precision comes from the ONNX types, --fp16 is ignored "
                        "(export an FP16 ONNX for an FP16 engine)")
        return "strongly-typed"
    if options.fp16:
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; building FP16 anyway")
        config.set_flag(trt.BuilderFlag.FP16)
        return "fp16"
    return "fp32"


def _configure_tf32(trt, config, wanted: bool) -> None:
    flag = getattr(trt.BuilderFlag, "TF32", None)
    if flag is None:  # a TensorRT without the flag has no TF32 to turn off
        if wanted:
            log.warning("this TensorRT has no BuilderFlag.TF32: --tf32 is ignored")
        return
    if wanted:
        config.set_flag(flag)
    else:
        config.clear_flag(flag)


def tf32_enabled(trt, config) -> bool:
    """Whether ``config`` lets FP32 layers use TF32 (False where TensorRT has no such flag)."""
    flag = getattr(trt.BuilderFlag, "TF32", None)
    return bool(flag is not None and config.get_flag(flag))


def _add_profile(builder, config, inputs, shapes: dict) -> dict[str, dict[str, list[int]]]:
    """One optimization profile covering every dynamic input; returns it as metadata."""
    names = {t.name for t in inputs}
    unknown = sorted(set(shapes) - names)
    if unknown:
        raise DynconvError(f"--shapes names unknown input(s) {unknown}; the model's inputs are {sorted(names)}")
    dynamic = [t for t in inputs if any(int(d) < 0 for d in t.shape)]
    if not dynamic:
        return {}
    profile = builder.create_optimization_profile()
    out: dict[str, dict[str, list[int]]] = {}
    for t in dynamic:
        decl = _dims(t.shape)
        if t.name not in shapes:
            raise DynconvError(
                f"input {t.name!r} has dynamic dims {format_shape(decl)}: give its range with "
                f"--shapes {t.name}:MIN,OPT,MAX (e.g. 1x3x224x224,4x3x224x224,8x3x224x224)"
            )
        given = shapes[t.name]
        lo, opt, hi = given if len(given) == 3 else (given[0],) * 3
        for s in (lo, opt, hi):
            if len(s) != len(decl) or any(d is not None and a != d for a, d in zip(s, decl)):
                raise DynconvError(f"--shapes for {t.name!r} ({list(s)}) does not fit {format_shape(decl)}")
        profile.set_shape(t.name, lo, opt, hi)
        out[t.name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
    config.add_optimization_profile(profile)
    return out


def _load_timing_cache(config, path: Path | None):
    if path is None:
        return None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return cache


class _Ticker:
    """Periodic "still building" log for TensorRT < 10 (no IProgressMonitor)."""

    def __init__(self, period_s: float = 15.0) -> None:
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self._thread.start()

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            log.warning("still building... %.0f s", time.monotonic() - self._started)

    def stop(self) -> None:
        self._stop.set()


def _attach_progress(trt, config):
    if hasattr(trt, "IProgressMonitor") and hasattr(config, "progress_monitor"):
        monitor = _make_monitor(trt)
        config.progress_monitor = monitor
        return monitor
    return _Ticker()


def _make_monitor(trt):
    class Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        """Logs TensorRT's build phases (TensorRT >= 10)."""

        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._steps: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._steps[phase_name] = int(num_steps)
            indent = "  " if parent_phase else ""
            log.warning("%s%s (%d steps)", indent, phase_name, num_steps)

        def step_complete(self, phase_name, step):
            total = self._steps.get(phase_name, 0)
            log.info("  %s: step %d/%d", phase_name, step + 1, total)
            return True  # keep building

        def phase_finish(self, phase_name):
            log.info("%s done", phase_name)

    return Monitor()
