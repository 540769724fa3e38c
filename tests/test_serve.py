"""dynconv-serve speaks the Open Inference Protocol (KServe v2): a live server on 127.0.0.1 (free
ports, HTTP + gRPC in a background thread) driven by the real tritonclient (HTTP and gRPC, JSON and
binary tensors, sync and async) on the onnxruntime backend, plus raw HTTP for malformed requests."""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_runtime_models import conv_relu, conv_relu_numpy

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")
grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.grpc import aio as grpc_aio  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402
from tritonclient.http import aio as http_aio  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from dynconv.runtime import OrtBackend  # noqa: E402
from dynconv.runtime.bench_serve import rss_mb, spawn_server  # noqa: E402
from dynconv.runtime.serve_models import ModelSource, open_model  # noqa: E402
from dynconv.runtime.serve_runner import InferenceServer  # noqa: E402
from dynconv.runtime.server import ModelSet, ServedModel  # noqa: E402


def mixed_types_model(path: Path) -> Path:
    """Two inputs ``a`` FP16 [N, 4] and ``b`` INT32 [N, 4]; outputs ``s = a + b`` (FP16) and
    ``p = 2 * b`` (INT32)."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT16),
         helper.make_node("Add", ["a", "bf"], ["s"]),
         helper.make_node("Add", ["b", "b"], ["p"])],
        "mixed_types",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT16, ["N", 4]),
         helper.make_tensor_value_info("b", TensorProto.INT32, ["N", 4])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT16, ["N", 4]),
         helper.make_tensor_value_info("p", TensorProto.INT32, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class SlowBackend(OrtBackend):
    """OrtBackend that records each call's batch size and takes at least ``delay`` seconds."""

    def __init__(self, path, delay: float) -> None:
        super().__init__(path)
        self.delay = delay
        self.batches: list[int] = []

    def infer(self, feeds):
        self.batches.append(int(feeds["x"].shape[0]))
        time.sleep(self.delay)
        return super().infer(feeds)


def serve(models: list[ServedModel], **kwargs) -> InferenceServer:
    opts = {k: kwargs.pop(k) for k in ("max_request_bytes", "graceful_timeout") if k in kwargs}
    return InferenceServer(ModelSet(models, **kwargs), host="127.0.0.1", http_port=0, grpc_port=0, **opts)


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _requests(text: str, status: int, protocol: str | None = None) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("dynconv_requests_total{") and f'status="{status}"' in line \
                and (protocol is None or f'protocol="{protocol}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve_models")
    return conv_relu(folder / "conv.onnx"), mixed_types_model(folder / "types.onnx")


@pytest.fixture(scope="module")
def server(models_dir):
    conv, types = models_dir
    srv = serve([open_model(ModelSource("conv", conv)), open_model(ModelSource("types", types))],
                max_batch=8, max_delay_ms=1, max_request_bytes=1 << 16)
    with srv:
        yield srv


def _http(srv):
    return httpclient.InferenceServerClient(f"127.0.0.1:{srv.http_port}", network_timeout=30)


def _grpc(srv):
    return grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}")


def _input(module, name, arr, datatype, binary=True):
    tensor = module.InferInput(name, list(arr.shape), datatype)
    if module is httpclient or module is http_aio:
        tensor.set_data_from_numpy(arr, binary_data=binary)
    else:
        tensor.set_data_from_numpy(arr)
    return tensor


def test_health_metadata_and_config(server, models_dir):
    h, g = _http(server), _grpc(server)
    assert h.is_server_live() and h.is_server_ready() and g.is_server_live() and g.is_server_ready()
    assert h.is_model_ready("conv") and g.is_model_ready("types", "1")
    assert not h.is_model_ready("nope") and not g.is_model_ready("conv", "7")
    assert h.get_server_metadata()["extensions"][0] == "binary_tensor_data"
    meta = h.get_model_metadata("conv", "1")
    assert meta["name"] == "conv" and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3, -1, -1]}]
    gmeta = g.get_model_metadata("types")
    assert [(t.name, t.datatype, list(t.shape)) for t in gmeta.inputs] == [("a", "FP16", [-1, 4]), ("b", "INT32", [-1, 4])]
    # the configuration is Triton's own ModelConfig message (gRPC parses it into model_config_pb2)
    config = g.get_model_config("types").config
    assert isinstance(config, model_config_pb2.ModelConfig) and config.max_batch_size == 8
    assert [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == \
        [("a", "TYPE_FP16", [4]), ("b", "TYPE_INT32", [4])]
    assert h.get_model_config("conv")["input"][0] == {"name": "x", "data_type": "TYPE_FP32", "dims": [3, -1, -1]}
    assert {m["name"] for m in h.get_model_repository_index()} == {"conv", "types"}
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        h.get_model_metadata("nope")
    with pytest.raises(InferenceServerException, match="unknown version '2'"):
        g.get_model_metadata("conv", "2")


@pytest.mark.parametrize("in_binary, out_binary", [(True, True), (False, False), (True, False)])
def test_http_inference_parity(server, models_dir, in_binary, out_binary):
    conv = models_dir[0]
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype(np.float32)
    direct = OrtBackend(conv).infer({"x": x})["y"]
    result = _http(server).infer("conv", [_input(httpclient, "x", x, "FP32", in_binary)], request_id="req-7",
                                 outputs=[httpclient.InferRequestedOutput("y", binary_data=out_binary)])
    assert result.get_response()["id"] == "req-7" and result.get_response()["model_name"] == "conv"
    np.testing.assert_array_equal(result.as_numpy("y"), direct)
    np.testing.assert_allclose(direct, conv_relu_numpy(x, conv), rtol=1e-4, atol=1e-4)
    if in_binary and out_binary:  # compressed request bodies (Content-Encoding), as tritonclient sends them
        for algorithm in ("gzip", "deflate"):
            zipped = _http(server).infer("conv", [_input(httpclient, "x", x, "FP32")], model_version="1",
                                         request_compression_algorithm=algorithm)
            np.testing.assert_array_equal(zipped.as_numpy("y"), direct)


def test_grpc_inference_types_and_requested_outputs(server):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4)).astype(np.float16)
    b = rng.integers(-50, 50, (3, 4)).astype(np.int32)
    g = _grpc(server)
    inputs = [_input(grpcclient, "a", a, "FP16"), _input(grpcclient, "b", b, "INT32")]
    result = g.infer("types", inputs, model_version="1", request_id="g1")
    assert result.get_response().id == "g1"
    np.testing.assert_array_equal(result.as_numpy("s"), a + b.astype(np.float16))
    np.testing.assert_array_equal(result.as_numpy("p"), 2 * b)
    only_p = g.infer("types", inputs, outputs=[grpcclient.InferRequestedOutput("p")])
    assert [o.name for o in only_p.get_response().outputs] == ["p"]
    # the same request over HTTP with JSON tensors (FP16 and INT32 as JSON numbers)
    h_inputs = [_input(httpclient, "a", a, "FP16", binary=False), _input(httpclient, "b", b, "INT32", binary=False)]
    result = _http(server).infer("types", h_inputs, outputs=[httpclient.InferRequestedOutput("s", binary_data=False)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["s"]
    np.testing.assert_array_equal(result.as_numpy("s"), a + b.astype(np.float16))


def test_async_clients(server, models_dir):
    x = np.random.default_rng(2).standard_normal((1, 3, 4, 4)).astype(np.float32)
    expected = OrtBackend(models_dir[0]).infer({"x": x})["y"]

    async def run():
        h = http_aio.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        g = grpc_aio.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        try:
            assert await h.is_server_ready() and await g.is_model_ready("conv")
            jobs = [h.infer("conv", [_input(http_aio, "x", x, "FP32")]) for _ in range(4)]
            jobs += [g.infer("conv", [_input(grpc_aio, "x", x, "FP32")]) for _ in range(4)]
            return await asyncio.gather(*jobs)
        finally:
            await h.close()
            await g.close()

    for result in asyncio.run(run()):
        np.testing.assert_array_equal(result.as_numpy("y"), expected)


def _post(client, path, **kwargs):
    return client.post(path, **kwargs)


def test_malformed_http_requests_answered_by_protocol(server):
    good = {"name": "x", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [0.5] * 12}
    raw = np.zeros((1, 3, 2, 2), np.float32).tobytes()
    header = b'{"inputs":[{"name":"x","shape":[1,3,2,2],"datatype":"FP32","parameters":{"binary_data_size":48}}]}'
    cases = [
        ("conv", dict(content=b"{not json"), 400, "not valid JSON"),
        ("conv", dict(json={"inputs": [dict(good, shape=[1, 2, 2, 2], data=[0.5] * 8)]}), 400, "dim 1 must be 3"),
        ("conv", dict(json={"inputs": [dict(good, datatype="FP64")]}), 400, "datatype FP64; model 'conv' expects FP32"),
        ("conv", dict(json={"inputs": [dict(good, datatype="BYTES")]}), 400, "unsupported datatype"),
        ("conv", dict(json={"inputs": [dict(good, name="z")]}), 400, "unknown input(s) ['z']"),
        ("types", dict(json={"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP16", "data": [1] * 4}]}),
         400, "missing input(s) ['b']"),
        ("conv", dict(json={"inputs": [dict(good, data=[0.5] * 11)]}), 400, "has 11 values"),
        ("conv", dict(json={"inputs": [dict(good, data=[[1, 2], [3]])]}), 400, "not a rectangular list"),
        ("conv", dict(json={"inputs": [good], "outputs": [{"name": "nope"}]}), 400, "unknown output(s) ['nope']"),
        ("conv", dict(json={"inputs": []}), 400, "non-empty 'inputs'"),
        ("conv", dict(json={"inputs": [dict(good, shape=[0, 3, 2, 2], data=[])]}), 400, "batch dim 0"),
        ("conv", dict(content=header + raw[:-4], headers={"Inference-Header-Content-Length": str(len(header))}),
         400, "runs past the end"),
        ("conv", dict(content=header + raw + b"xx", headers={"Inference-Header-Content-Length": str(len(header))}),
         400, "no input claims"),
        ("conv", dict(content=header + raw, headers={"Inference-Header-Content-Length": "9999"}), 400,
         "does not fit"),
        ("conv", dict(content=b"x" * 70000), 413, "exceeds the limit"),
        ("conv", dict(content=b"{}", headers={"content-type": "text/plain"}), 415, "Content-Type"),
        ("conv", dict(content=b"{}", headers={"content-encoding": "br"}), 415, "Content-Encoding"),
        ("conv", dict(content=b"not gzip", headers={"content-encoding": "gzip"}), 400, "corrupt"),
        ("conv", dict(content=gzip.compress(b" " * 70000), headers={"content-encoding": "gzip"}), 413,
         "decompressed request body exceeds"),
        ("nope", dict(json={"inputs": [good]}), 404, "unknown model 'nope'"),
        ("conv/versions/3", dict(json={"inputs": [good]}), 404, "unknown version '3'"),
    ]
    with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as c:
        before = c.get("/metrics").text
        for model, kwargs, status, fragment in cases:
            r = _post(c, f"/v2/models/{model}/infer", **kwargs)
            assert r.status_code == status, (model, fragment, r.status_code, r.text)
            assert fragment in r.json()["error"], (fragment, r.json())
        r = c.get("/v2/no/such/path")
        assert r.status_code == 404 and "error" in r.json()

        # a chunked body without Content-Length is bounded too
        r = c.post("/v2/models/conv/infer", content=iter([b"0" * 10000] * 10))
        assert r.status_code == 413
        # the binary extension and the server itself still work after all that
        r = c.post("/v2/models/conv/infer", content=header + raw, headers={"Inference-Header-Content-Length":
                                                                            str(len(header))})
        assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 4, 2, 2]
        after = c.get("/metrics").text
    assert _requests(after, 400, "http") - _requests(before, 400, "http") == 15
    assert _requests(after, 413) - _requests(before, 413) == 3
    assert _requests(after, 404) - _requests(before, 404) == 2
    assert 'model="<unknown>"' in after


def test_malformed_grpc_requests_answered_by_protocol(server):
    g = _grpc(server)
    x = np.zeros((1, 3, 2, 2), np.float32)
    cases = [
        ("conv", [_input(grpcclient, "x", x.astype(np.float64), "FP64")], "INVALID_ARGUMENT", "expects FP32"),
        ("conv", [_input(grpcclient, "x", x[:, :2], "FP32")], "INVALID_ARGUMENT", "dim 1 must be 3"),
        ("conv", [_input(grpcclient, "z", x, "FP32")], "INVALID_ARGUMENT", "unknown input"),
        ("nope", [_input(grpcclient, "x", x, "FP32")], "NOT_FOUND", "unknown model"),
        ("conv", [_input(grpcclient, "x", np.zeros((1, 3, 128, 128), np.float32), "FP32")], "RESOURCE_EXHAUSTED", ""),
    ]
    for model, inputs, code, fragment in cases:
        with pytest.raises(InferenceServerException) as err:
            g.infer(model, inputs)
        assert err.value.status() == f"StatusCode.{code}" and fragment in err.value.message(), err.value
    # a tensor whose declared shape does not match its raw bytes
    bad = grpcclient.InferInput("x", [1, 3, 2, 3], "FP32")
    bad._raw_content = x.tobytes()
    bad._input.ClearField("contents")
    with pytest.raises(InferenceServerException, match="needs 72"):
        g.infer("conv", [bad])
    assert g.infer("conv", [_input(grpcclient, "x", x, "FP32")]).as_numpy("y").shape == (1, 4, 2, 2)


def test_concurrent_clients_are_batched(models_dir):
    conv = models_dir[0]
    backend = SlowBackend(conv, delay=0.05)
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((1, 3, 6, 6)).astype(np.float32) for _ in range(16)]
    with serve([ServedModel("conv", backend)], max_batch=8, max_delay_ms=30) as srv:
        def send(i):
            if i % 2:
                return _grpc(srv).infer("conv", [_input(grpcclient, "x", xs[i], "FP32")]).as_numpy("y")
            return _http(srv).infer("conv", [_input(httpclient, "x", xs[i], "FP32")]).as_numpy("y")

        with ThreadPoolExecutor(16) as pool:
            outputs = list(pool.map(send, range(16)))
        text = httpx.get(srv.http_url + "/metrics", timeout=10).text
    for x, y in zip(xs, outputs):
        np.testing.assert_allclose(y, conv_relu_numpy(x, conv), rtol=1e-4, atol=1e-4)
    assert sum(backend.batches) == 16 and 1 < max(backend.batches) <= 8
    assert _metric(text, "dynconv_batch_size_sum") == 16
    assert _metric(text, "dynconv_batch_size_count") == len(backend.batches) < 16
    assert _requests(text, 200, "http") == 8 and _requests(text, 200, "grpc") == 8


def test_non_finite_inputs_refused_or_computed(models_dir):
    conv = models_dir[0]
    x = np.ones((1, 3, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 2, 2] = np.inf
    with serve([open_model(ModelSource("conv", conv))]) as srv:
        with pytest.raises(InferenceServerException, match="2 non-finite value") as err:
            _http(srv).infer("conv", [_input(httpclient, "x", x, "FP32")])
        assert err.value.status() == "400"
        with pytest.raises(InferenceServerException, match="non-finite") as err:
            _grpc(srv).infer("conv", [_input(grpcclient, "x", x, "FP32")])
        assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
        text = httpx.get(srv.http_url + "/metrics", timeout=10).text
        assert _requests(text, 400) == 2 and _requests(text, 200) == 0
    with serve([open_model(ModelSource("conv", conv))], allow_non_finite=True) as srv:
        expected = OrtBackend(conv).infer({"x": x})["y"]
        assert np.isnan(expected).any()
        for binary in (True, False):
            y = _http(srv).infer("conv", [_input(httpclient, "x", x, "FP32", binary)],
                                 outputs=[httpclient.InferRequestedOutput("y", binary_data=binary)]).as_numpy("y")
            np.testing.assert_array_equal(y, expected)  # NaN positions equal too
        y = _grpc(srv).infer("conv", [_input(grpcclient, "x", x, "FP32")]).as_numpy("y")
        np.testing.assert_array_equal(y, expected)
        assert _requests(httpx.get(srv.http_url + "/metrics", timeout=10).text, 200) == 3


def wide_model(path: Path, channels: int = 64) -> Path:
    """x [N, 3, H, W] -> conv to ``channels`` -> relu -> conv back to 3: large intermediates."""
    rng = np.random.default_rng(0)
    w1 = onnx.numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w1")
    w2 = onnx.numpy_helper.from_array(rng.standard_normal((3, channels, 3, 3)).astype(np.float32) * 0.01, "w2")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r"]),
         helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1])],
        "wide", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_cli_server_memory_returns_near_steady_state(tmp_path):
    """dynconv-serve as a child process (SIGTERM ends it with 0): one 2x3x384x384 request needs
    ~150 MB of intermediates (64 channels); its RSS must come back near the steady state (with
    onnxruntime's grow-only CPU arena it stayed ~100 MB higher, and more after a second one)."""
    model = wide_model(tmp_path / "wide.onnx")
    server = spawn_server([str(model), "--max-request-bytes", str(8 << 20)])
    try:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=60)

        def infer(shape):
            return client.infer("wide", [_input(httpclient, "x", np.ones(shape, np.float32), "FP32")])

        for _ in range(5):
            infer((1, 3, 32, 32))
        steady = rss_mb(server.proc.pid)
        for _ in range(2):
            assert infer((2, 3, 384, 384)).as_numpy("y").shape == (2, 3, 384, 384)
            for _ in range(3):
                infer((1, 3, 32, 32))
        after = rss_mb(server.proc.pid)
        client.close()
    finally:
        code = server.stop()
    assert code == 0
    assert after - steady < 50, f"server RSS grew from {steady:.0f} MB to {after:.0f} MB after two large requests"


def test_graceful_shutdown_drains_in_flight(models_dir):
    backend = SlowBackend(models_dir[0], delay=0.5)
    srv = serve([ServedModel("conv", backend)], max_delay_ms=50).start_in_thread()
    x = np.ones((1, 3, 4, 4), np.float32)
    results = {}

    def http_request():
        results["http"] = _http(srv).infer("conv", [_input(httpclient, "x", x, "FP32")]).as_numpy("y")

    def grpc_request():
        results["grpc"] = _grpc(srv).infer("conv", [_input(grpcclient, "x", x, "FP32")]).as_numpy("y")

    threads = [threading.Thread(target=http_request), threading.Thread(target=grpc_request)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while not backend.batches:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    srv.stop()  # asks the server to exit while the requests are running
    for t in threads:
        t.join(timeout=10)
    assert results["http"].shape == results["grpc"].shape == (1, 4, 4, 4)
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.http_url + "/v2/health/live", timeout=2)


def test_model_directory_and_names(tmp_path, models_dir):
    from dynconv.runtime.serve_models import model_sources

    folder = tmp_path / "repo"
    (folder / "det" / "1").mkdir(parents=True)
    (folder / "det" / "3").mkdir()
    (folder / "det" / "3" / "model.onnx").write_bytes(models_dir[0].read_bytes())
    (folder / "cls.onnx").write_bytes(models_dir[0].read_bytes())
    (folder / "notes.txt").write_text("ignored")
    found = [(s.name, s.version, s.path.relative_to(folder).as_posix()) for s in model_sources(str(folder), None, [])]
    assert found == [("cls", "1", "cls.onnx"), ("det", "3", "det/3/model.onnx")]
    single = model_sources(str(models_dir[0]), "renamed", [f"extra={models_dir[1]}"])
    assert [(s.name, s.path) for s in single] == [("renamed", models_dir[0]), ("extra", models_dir[1])]
    assert model_sources(str(models_dir[0]), None, [])[0].name == "conv"  # the file's stem


@pytest.mark.parametrize("argv, fragment", [
    ([], "no model given"),
    (["--model", "justaname"], "expected NAME=PATH"),
    (["--model", "a b=x.onnx"], "bad model name"),
    (["--model", "m=/nonexistent.onnx"], "does not exist"),
    (["--name", "n"], "--name needs a model file"),
    (["{dir}", "--name", "n"], "--name applies to a single model file"),
    (["{empty}"], "no model in"),
    (["{conv}", "--model", "conv={conv}"], "given twice"),
    (["{conv}", "--max-batch", "0"], "--max-batch"),
    (["{conv}", "--grpc-port", "8000", "--http-port", "8000"], "must differ"),
    (["{txt}"], "expected one of"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, models_dir, argv, fragment):
    from dynconv.runtime import serve_cli
    from dynconv.runtime._cli import EXIT_ERROR

    (tmp_path / "empty").mkdir()
    (tmp_path / "m.txt").write_text("x")
    values = {"dir": str(models_dir[0].parent), "empty": str(tmp_path / "empty"), "conv": str(models_dir[0]),
              "txt": str(tmp_path / "m.txt")}
    assert serve_cli.main([a.format(**values) for a in argv]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dynconv-serve: error: ") and fragment in err[0], err


def test_cli_busy_port_is_one_line(capsys, models_dir):
    import socket

    from dynconv.runtime import serve_cli
    from dynconv.runtime._cli import EXIT_ERROR

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert serve_cli.main([str(models_dir[0]), "--http-port", str(port), "--grpc-port", "-1"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot bind the HTTP endpoint to 127.0.0.1:{port}" in err[0], err
