"""Builder precision flags on the CPU: FP32 (and FP16) builds clear TensorRT's default-on TF32 unless
``--tf32`` asks for it. A fake builder config records the flag calls; under trtpy the same function
runs against TensorRT 8.6's real enums, and on a GPU against a real builder config."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from trt_fields import TRTPY

from dynconv.runtime import build_cli, builder
from dynconv.runtime.builder import BuildOptions, configure_precision, tf32_enabled

REPO = Path(__file__).resolve().parent.parent


class FakeConfig:
    """Records set_flag/clear_flag; starts with TF32 on, as TensorRT's builder config does."""

    def __init__(self, tf32_flag: object | None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.flags = {tf32_flag} if tf32_flag is not None else set()

    def set_flag(self, flag) -> None:
        self.calls.append(("set", flag))
        self.flags.add(flag)

    def clear_flag(self, flag) -> None:
        self.calls.append(("clear", flag))
        self.flags.discard(flag)

    def get_flag(self, flag) -> bool:
        return flag in self.flags


def fake_trt(version: str = "8.6.1", with_tf32: bool = True) -> SimpleNamespace:
    flags = SimpleNamespace(FP16="FP16", **({"TF32": "TF32"} if with_tf32 else {}))
    return SimpleNamespace(__version__=version, BuilderFlag=flags)


FAST_FP16 = SimpleNamespace(platform_has_fast_fp16=True)


def _options(**kw) -> BuildOptions:
    return BuildOptions(Path("m.onnx"), Path("m.plan"), **kw)


@pytest.mark.parametrize("version", ["8.5.3", "8.6.1", "10.3.0"])
def test_fp32_build_clears_tf32(version):
    trt = fake_trt(version)
    config = FakeConfig("TF32")
    assert configure_precision(trt, FAST_FP16, config, _options()) == "fp32"
    assert config.calls == [("clear", "TF32")]
    assert not tf32_enabled(trt, config)


def test_tf32_on_request_only():
    trt = fake_trt()
    config = FakeConfig("TF32")
    assert configure_precision(trt, FAST_FP16, config, _options(tf32=True)) == "fp32"
    assert config.calls == [("set", "TF32")] and tf32_enabled(trt, config)


@pytest.mark.parametrize("tf32", [False, True])
def test_fp16_build_sets_fp16_and_follows_tf32(tf32):
    trt = fake_trt()
    config = FakeConfig("TF32")
    assert configure_precision(trt, FAST_FP16, config, _options(fp16=True, tf32=tf32)) == "fp16"
    assert ("set", "FP16") in config.calls
    assert tf32_enabled(trt, config) == tf32


@pytest.mark.parametrize("version, strongly_typed", [("10.3.0", True), ("11.1.0", False)])
def test_strongly_typed_build_clears_tf32_too(version, strongly_typed):
    trt = fake_trt(version)
    config = FakeConfig("TF32")
    got = configure_precision(trt, FAST_FP16, config, _options(fp16=True, strongly_typed=strongly_typed))
    assert got == "strongly-typed"
    assert config.calls == [("clear", "TF32")]  # no FP16 flag: types come from the ONNX


def test_tensorrt_without_a_tf32_flag_is_left_alone(caplog):
    trt = fake_trt("11.1.0", with_tf32=False)
    config = FakeConfig(None)
    assert configure_precision(trt, FAST_FP16, config, _options(tf32=True)) == "strongly-typed"
    assert config.calls == [] and not tf32_enabled(trt, config)
    assert "--tf32 is ignored" in caplog.text


@pytest.mark.parametrize("argv, want", [([], False), (["--tf32"], True)])
def test_build_cli_passes_tf32(tmp_path, monkeypatch, argv, want):
    seen: list[BuildOptions] = []

    def fake_build(options: BuildOptions):
        seen.append(options)
        return SimpleNamespace(tensorrt_version="8.6.1", gpu_name="fake", compute_capability="9.0",
                               precision="fp32")

    monkeypatch.setattr(builder, "build", fake_build)
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"not parsed by the fake build")
    assert build_cli.main([str(onnx_path), "-o", str(tmp_path / "m.plan"), *argv]) == 0
    assert len(seen) == 1 and seen[0].tf32 is want


TRT_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import tensorrt as trt
from dynconv.runtime.builder import BuildOptions, configure_precision, tf32_enabled
from pathlib import Path

class Recorder:
    def __init__(self): self.calls, self.on = [], {{trt.BuilderFlag.TF32}}
    def set_flag(self, f): self.calls.append(("set", f)); self.on.add(f)
    def clear_flag(self, f): self.calls.append(("clear", f)); self.on.discard(f)
    def get_flag(self, f): return f in self.on

config = Recorder()
label = configure_precision(trt, None, config, BuildOptions(Path("m.onnx"), Path("m.plan")))
assert label == "fp32", label
assert config.calls == [("clear", trt.BuilderFlag.TF32)], config.calls
assert not tf32_enabled(trt, config)
print("OK", trt.__version__)
"""


@pytest.mark.skipif(TRTPY is None, reason="trtpy (TensorRT 8.6 Python) not found")
def test_real_tensorrt_enum_is_cleared_under_trtpy(tmp_path):
    """TensorRT 8.6's own BuilderFlag enum (no GPU needed: the config object is a recorder)."""
    shim = tmp_path / "dynconv"  # trtpy has no dynconv installed: a namespace package of symlinks
    shim.mkdir()
    for part in ("export", "plugins", "runtime"):
        (shim / part).symlink_to(REPO / part)
    proc = subprocess.run([TRTPY, "-c", TRT_SCRIPT.format(repo=str(tmp_path))],
                          capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("OK 8.6")


def _gpu_skip_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt is not installed in this interpreter"
    from dynconv.runtime.device import device_count

    return None if device_count() > 0 else "no CUDA device: TensorRT cannot create a builder config"


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_skip_reason() is not None, reason=str(_gpu_skip_reason()))
def test_real_builder_config_has_tf32_cleared():
    import tensorrt as trt

    from dynconv.runtime import trt_compat

    trt_builder = trt.Builder(trt_compat.logger(trt))
    config = trt_builder.create_builder_config()
    assert config.get_flag(trt.BuilderFlag.TF32)  # TensorRT's default: on
    assert configure_precision(trt, trt_builder, config, _options()) == "fp32"
    assert not config.get_flag(trt.BuilderFlag.TF32)
    configure_precision(trt, trt_builder, config, _options(tf32=True))
    assert config.get_flag(trt.BuilderFlag.TF32)
