"""dynconv-serve app on the ORT backend, run by uvicorn on 127.0.0.1 in a background thread and
queried over real HTTP with httpx."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from test_runtime_models import conv_relu, conv_relu_numpy

from dynconv.runtime import OrtBackend
from dynconv.runtime.compare import decode_npz, encode_npz

uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from dynconv.runtime.server import NPZ, create_app  # noqa: E402


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


class Server:
    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()

    def __exit__(self, *exc) -> None:
        if self.thread.is_alive():
            self.stop()


@pytest.fixture()
def model(tmp_path):
    return conv_relu(tmp_path / "m.onnx")


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_health_metadata_json_and_npz(model):
    with Server(create_app(OrtBackend(model), max_batch=8, max_delay_ms=2)) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get("/health/live").json() == {"status": "live"}
        assert c.get("/health/ready").status_code == 200
        meta = c.get("/v1/models/metadata").json()
        assert meta["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 3, -1, -1]}]
        assert meta["outputs"][0]["name"] == "y" and meta["dynamic_batching"] is True

        x = np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype(np.float32)
        r = c.post("/v1/infer", json={"inputs": {"x": x.tolist()}})
        assert r.status_code == 200, r.text
        y = np.asarray(r.json()["outputs"]["y"], dtype=np.float32)
        np.testing.assert_allclose(y, conv_relu_numpy(x, model), rtol=1e-4, atol=1e-4)
        assert r.json()["dtypes"] == {"y": "float32"}

        r = c.post("/v1/infer", content=encode_npz({"x": x}), headers={"content-type": NPZ})
        assert r.status_code == 200 and r.headers["content-type"] == NPZ
        out = decode_npz(r.content)
        assert out["y"].dtype == np.float32
        np.testing.assert_allclose(out["y"], conv_relu_numpy(x, model), rtol=1e-4, atol=1e-4)
        assert _metric(c.get("/metrics").text, "dynconv_requests_total") == 2


def test_concurrent_requests_are_batched(model):
    backend = SlowBackend(model, delay=0.05)
    app = create_app(backend, max_batch=8, max_delay_ms=20)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, 3, 6, 6)).astype(np.float32) for _ in range(16)]
    with Server(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        def send(x):
            return c.post("/v1/infer", content=encode_npz({"x": x}), headers={"content-type": NPZ})

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(send, xs))
        for x, r in zip(xs, responses):
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(decode_npz(r.content)["y"], conv_relu_numpy(x, model), rtol=1e-4, atol=1e-4)
        text = c.get("/metrics").text
    assert sum(backend.batches) == 16 and max(backend.batches) > 1 and max(backend.batches) <= 8
    assert _metric(text, "dynconv_batch_size_sum") == 16
    assert _metric(text, "dynconv_batch_size_count") == len(backend.batches) < 16
    assert _metric(text, 'dynconv_requests_total{status="200"}') == 16
    assert _metric(text, "dynconv_request_latency_seconds_count") == 16


def test_bad_requests_get_clear_4xx(model):
    app = create_app(OrtBackend(model), max_request_bytes=4096)
    good = np.zeros((1, 3, 4, 4), np.float32)
    cases = [
        (dict(json={"inputs": {"z": good.tolist()}}), 422, "unknown input"),
        (dict(json={"inputs": {}}), 422, "missing input"),
        (dict(json={"inputs": {"x": np.zeros((1, 2, 4, 4)).tolist()}}), 422, "dim 1 must be 3"),
        (dict(json={"inputs": {"x": [[1, 2], [3]]}}), 400, "rectangular"),
        (dict(json={"inputs": {"x": "abc"}}), 400, "rectangular"),
        (dict(json={"x": good.tolist()}), 400, '{"inputs"'),
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "not valid JSON"),
        (dict(content=b"", headers={"content-type": "application/json"}), 400, "empty"),
        (dict(content=b"PK\x03\x04junk", headers={"content-type": NPZ}), 400, "not a valid .npz"),
        (dict(content=encode_npz({"x": good.astype(np.float64)}), headers={"content-type": NPZ}), 422, "dtype float64"),
        (dict(content=b"x", headers={"content-type": "text/plain"}), 415, "Content-Type"),
        (dict(content=encode_npz({"x": np.zeros((1, 3, 32, 32), np.float32)}), headers={"content-type": NPZ}),
         413, "exceeds the limit"),
    ]
    with Server(app) as srv, httpx.Client(base_url=srv.url) as c:
        for kwargs, status, fragment in cases:
            r = c.post("/v1/infer", **kwargs)
            assert r.status_code == status, (kwargs.keys(), r.status_code, r.text)
            body = r.json()["error"]
            assert body["code"] == status and fragment in body["message"], body

        # a chunked body without Content-Length is bounded too
        def chunks():
            for _ in range(10):
                yield b"0" * 1000

        r = c.post("/v1/infer", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        text = c.get("/metrics").text
        assert _metric(text, 'dynconv_errors_total{kind="too_large"}') == 2
        assert _metric(text, 'dynconv_errors_total{kind="invalid_input"}') == 4
        # the server still works after all that
        assert c.post("/v1/infer", json={"inputs": {"x": good.tolist()}}).status_code == 200


def test_graceful_shutdown_drains_in_flight(model):
    backend = SlowBackend(model, delay=0.5)
    app = create_app(backend)
    srv = Server(app).__enter__()
    results = {}

    def request():
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            results["r"] = c.post("/v1/infer", json={"inputs": {"x": np.ones((1, 3, 4, 4)).tolist()}})

    t = threading.Thread(target=request)
    t.start()
    deadline = time.monotonic() + 10
    while not backend.batches:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    srv.stop()  # asks uvicorn to exit while the request is running
    t.join(timeout=10)
    assert results["r"].status_code == 200
    assert np.asarray(results["r"].json()["outputs"]["y"]).shape == (1, 4, 4, 4)
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/health/live", timeout=2)
