"""Load benchmark of ``dynconv-serve``: starts the server in a child process, drives it with
concurrent tritonclient clients and prints throughput, p50/p99 latency, the server's batch sizes and
its resident memory before and after the run (bounded memory: no growth beyond noise after warm-up).

    python -m dynconv.runtime.bench_serve /tmp/mixed_ref.onnx --clients 8 --requests 1000
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._cli import EXIT_OK, make_parser, require_file, run_main
from .errors import DynconvError
from .tensors import parse_dims

PROG = "dynconv-bench-serve"
_ANNOUNCE = re.compile(r"HTTP on http://[^:]+:(\d+)(?:, gRPC on [^:]+:(\d+))?")


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class ServerProcess:
    """A ``dynconv-serve`` child process and its ports."""

    proc: subprocess.Popen
    http_port: int
    grpc_port: int | None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful shutdown) and the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise DynconvError(f"dynconv-serve did not stop within {timeout} s of SIGTERM") from None


def spawn_server(args: Sequence[str], timeout: float = 120.0) -> ServerProcess:
    """Start ``dynconv-serve ARGS --http-port 0 --grpc-port 0`` on 127.0.0.1 and wait until it
    announces its ports (bounded by ``timeout``)."""
    cmd = [sys.executable, "-m", "dynconv.runtime.serve_cli", "--host", "127.0.0.1", "--http-port", "0",
           "--grpc-port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in lines:
            match = _ANNOUNCE.search(line)
            if match:
                grpc = int(match.group(2)) if match.group(2) else None
                return ServerProcess(proc, int(match.group(1)), grpc)
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise DynconvError(f"dynconv-serve exited with {proc.returncode}: {err.strip()[-500:]}")
        time.sleep(0.05)
    proc.kill()
    raise DynconvError(f"dynconv-serve did not start within {timeout} s")


def _client_loop(protocol: str, port: int, model: str, name: str, x: np.ndarray, datatype: str, count: int,
                 latencies: list[float], errors: list[str]) -> None:
    """One client: ``count`` sequential binary-tensor requests; latencies and errors appended."""
    if protocol == "grpc":
        import tritonclient.grpc as tc  # noqa: PLC0415

        client = tc.InferenceServerClient(f"127.0.0.1:{port}")
    else:
        import tritonclient.http as tc  # noqa: PLC0415

        client = tc.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=300)
    tensor = tc.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    for _ in range(count):
        started = time.perf_counter()
        try:
            client.infer(model, [tensor])
        except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
            errors.append(str(exc).splitlines()[0])
            continue
        latencies.append(time.perf_counter() - started)
    client.close()


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def run_load(server: ServerProcess, model: str, shape: tuple[int, ...], *, clients: int, requests: int,
             warmup: int, protocol: str) -> dict:
    """Warm up, then ``clients`` threads x ``requests`` inferences; the measured numbers."""
    import tritonclient.http as th  # noqa: PLC0415

    admin = th.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    meta = admin.get_model_metadata(model)
    if len(meta["inputs"]) != 1:
        raise DynconvError("the load benchmark drives single-input models")
    name = meta["inputs"][0]["name"]
    datatype = meta["inputs"][0]["datatype"]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float16 if datatype == "FP16" else np.float32)
    port = server.grpc_port if protocol == "grpc" else server.http_port
    if port is None:
        raise DynconvError("the server has no gRPC endpoint")
    rss_start = rss_mb(server.proc.pid)

    def wave(count: int) -> tuple[list[float], list[str], float]:
        latencies: list[float] = []
        errors: list[str] = []
        threads = [threading.Thread(target=_client_loop, args=(protocol, port, model, name, x, datatype, count,
                                                               latencies, errors)) for _ in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return latencies, errors, time.perf_counter() - started

    wave(warmup)
    rss_warm = rss_mb(server.proc.pid)
    before = admin._get("metrics", None, None).read().decode()
    latencies, errors, wall = wave(requests)
    after = admin._get("metrics", None, None).read().decode()
    rss_end = rss_mb(server.proc.pid)
    admin.close()
    lat_ms = np.asarray(latencies) * 1e3
    batches = _metric(after, "dynconv_batch_size_count") - _metric(before, "dynconv_batch_size_count")
    rows = _metric(after, "dynconv_batch_size_sum") - _metric(before, "dynconv_batch_size_sum")
    return {
        "protocol": protocol, "clients": clients, "requests": clients * requests, "errors": len(errors),
        "first_error": errors[0] if errors else "", "throughput_rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat_ms, 50)) if len(lat_ms) else float("nan"),
        "p99_ms": float(np.percentile(lat_ms, 99)) if len(lat_ms) else float("nan"),
        "mean_batch": rows / batches if batches else float("nan"),
        "rss_start_mb": rss_start, "rss_warm_mb": rss_warm, "rss_end_mb": rss_end,
    }


def format_table(rows: list[dict]) -> str:
    """The results as a fixed-width text table."""
    head = ["protocol", "clients", "requests", "errors", "req/s", "p50 ms", "p99 ms", "mean batch",
            "RSS start MB", "RSS warm MB", "RSS end MB"]
    lines = [" | ".join(head)]
    for r in rows:
        cells = [r["protocol"], str(r["clients"]), str(r["requests"]), str(r["errors"]),
                 f"{r['throughput_rps']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['mean_batch']:.2f}",
                 f"{r['rss_start_mb']:.0f}", f"{r['rss_warm_mb']:.0f}", f"{r['rss_end_mb']:.0f}"]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Load-test dynconv-serve with concurrent tritonclient clients.")
    p.add_argument("model", help="model file served by a child dynconv-serve (named after its stem)")
    p.add_argument("--shape", default="1x3x64x64", help="input shape of every request (default 1x3x64x64)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=1000, help="requests per client")
    p.add_argument("--warmup", type=int, default=20, help="warm-up requests per client (not measured)")
    p.add_argument("--protocol", choices=("http", "grpc", "both"), default="both")
    p.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                   help="extra dynconv-serve argument (repeatable), e.g. --serve-arg=--max-batch=16")
    return p


def _run(args: argparse.Namespace) -> int:
    path = require_file(args.model, "model")
    if args.clients < 1 or args.requests < 1 or args.warmup < 0:
        raise DynconvError("--clients and --requests must be >= 1, --warmup >= 0")
    shape = parse_dims(args.shape)
    protocols = ["http", "grpc"] if args.protocol == "both" else [args.protocol]
    server = spawn_server([str(path), *args.serve_arg])
    rows = []
    try:
        for protocol in protocols:
            rows.append(run_load(server, path.stem, shape, clients=args.clients, requests=args.requests,
                                 warmup=args.warmup, protocol=protocol))
    finally:
        code = server.stop()
    sys.stdout.write(format_table(rows) + "\n")
    for r in rows:
        if r["errors"]:
            sys.stdout.write(f"{r['protocol']}: {r['errors']} failed requests, first: {r['first_error']}\n")
    sys.stdout.write(f"server exit code after SIGTERM: {code}\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _run, _parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
