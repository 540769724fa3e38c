"""Version gating of the TensorRT helpers, checked with stand-in ``tensorrt`` modules (no GPU)."""

from __future__ import annotations

import enum
from types import SimpleNamespace

import numpy as np
import pytest

from dynconv.plugins.errors import DynconvError
from dynconv.runtime import trt_compat


def fake_trt(version: str, sources=("CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"),
             flags=("EXPLICIT_BATCH",)):
    tactic = enum.IntEnum("TacticSource", {n: i for i, n in enumerate(sources)})
    flag = enum.IntEnum("NetworkDefinitionCreationFlag", {n: i for i, n in enumerate(flags)})
    return SimpleNamespace(__version__=version, TacticSource=tactic, NetworkDefinitionCreationFlag=flag)


class FakeConfig:
    def __init__(self, mask: int) -> None:
        self.mask = mask

    def get_tactic_sources(self) -> int:
        return self.mask

    def set_tactic_sources(self, mask: int) -> None:
        self.mask = mask


def test_version_tuple():
    assert trt_compat.version_tuple("8.6.1.post1") == (8, 6, 1)
    assert trt_compat.version_tuple("10.13.0.35") == (10, 13, 0, 35)


def test_default_tactic_sources_drop_cublas_cudnn_before_10():
    trt = fake_trt("8.6.1")
    config = FakeConfig(0b11111)
    enabled = trt_compat.apply_tactic_sources(trt, config, None)
    assert enabled == ["EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"] and config.mask == 0b11000
    config = FakeConfig(0b11111)
    assert len(trt_compat.apply_tactic_sources(fake_trt("10.3.0"), config, None)) == 5 and config.mask == 0b11111


def test_tactic_source_edits():
    trt = fake_trt("8.5.3")
    config = FakeConfig(0b00000)
    assert trt_compat.apply_tactic_sources(trt, config, "+CUDNN,JIT_CONVOLUTIONS") == ["CUDNN", "JIT_CONVOLUTIONS"]
    assert trt_compat.apply_tactic_sources(trt, config, "-cudnn") == ["JIT_CONVOLUTIONS"]
    config = FakeConfig(0b10101)
    assert trt_compat.apply_tactic_sources(trt, config, "default") and config.mask == 0b10101
    with pytest.raises(DynconvError, match="unknown tactic source"):
        trt_compat.apply_tactic_sources(trt, config, "+NOPE")
    # a source removed in a later TensorRT may still be dropped without error
    newer = fake_trt("11.0.0", sources=("EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"))
    config = FakeConfig(0b11)
    assert trt_compat.apply_tactic_sources(newer, config, "-CUBLAS,-CUDNN") == ["EDGE_MASK_CONVOLUTIONS",
                                                                                "JIT_CONVOLUTIONS"]


def test_network_flags_by_version():
    assert trt_compat.network_flags(fake_trt("8.6.1"), False) == 1
    assert trt_compat.network_flags(fake_trt("10.3.0", flags=("EXPLICIT_BATCH", "STRONGLY_TYPED")), False) == 0
    assert trt_compat.network_flags(fake_trt("10.3.0", flags=("EXPLICIT_BATCH", "STRONGLY_TYPED")), True) == 2
    assert trt_compat.network_flags(fake_trt("11.0.0", flags=("STRONGLY_TYPED",)), False) == 1


def test_np_dtype_names():
    trt = SimpleNamespace()
    assert trt_compat.np_dtype(trt, "DataType.FLOAT") == np.float32
    assert trt_compat.np_dtype(trt, "DataType.HALF") == np.float16
    assert trt_compat.np_dtype(trt, "DataType.INT64") == np.int64
    with pytest.raises(DynconvError, match="no numpy"):
        trt_compat.np_dtype(trt, "DataType.FP8")


def test_missing_tensorrt_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes "import tensorrt" raise ImportError
    with pytest.raises(DynconvError, match="TensorRT is not installed"):
        trt_compat.import_tensorrt()
