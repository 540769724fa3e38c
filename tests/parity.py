"""Shared test helpers: run onnxruntime, compare with a scaled tolerance, inspect custom nodes."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from dynconv.plugins.spec import DOMAIN, OpSpec


def run_onnxruntime(model: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` on the CPU provider with ``inputs`` in graph-input order."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {value.name: np.ascontiguousarray(array) for value, array in zip(session.get_inputs(), inputs)}
    return session.run(None, feeds)


def assert_close_scaled(actual: Any, expected: Any, rel: float = 1e-4) -> None:
    """max|actual - expected| <= rel * max|expected| (scale 1 for an all-zero reference)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    scale = float(np.abs(expected).max()) if expected.size else 1.0
    scale = scale if scale > 0 else 1.0
    err = float(np.abs(actual - expected).max()) if expected.size else 0.0
    assert err <= rel * scale, f"max abs error {err:.3e} > {rel:g} x scale {scale:.3e}"


def custom_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes of the dynconv domain, in graph order."""
    return [n for n in model.graph.node if n.domain == DOMAIN]


def node_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else (list(v) if isinstance(v, (list, tuple)) else v)
            for k, v in attrs.items()}


def assert_trt_node(node: onnx.NodeProto, spec: OpSpec, attrs: Mapping[str, Any],
                    present: Mapping[str, bool] | None = None) -> None:
    """The node is exactly the spec's plugin node for ``attrs`` and the present optional inputs."""
    present = dict(present or {})
    assert node.domain == DOMAIN and node.op_type == spec.name, f"{node.domain}::{node.op_type} is not {spec.onnx_op}"
    got = node_attributes(node)
    want = spec.node_attributes(dict(attrs), present)
    want["plugin_version"] = spec.version
    assert set(got) == set(want), f"attribute names {sorted(got)} != {sorted(want)}"
    for name, value in want.items():
        if isinstance(value, float):
            assert abs(got[name] - value) <= 1e-6 * max(1.0, abs(value)), f"{name}: {got[name]} != {value}"
        else:
            assert got[name] == value, f"{name}: {got[name]!r} != {value!r}"
    n_inputs = sum(1 for t in spec.inputs if not t.optional or present.get(t.name, False))
    assert len(node.input) == n_inputs, f"{len(node.input)} inputs, expected {n_inputs}"
