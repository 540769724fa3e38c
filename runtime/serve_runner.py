"""Runs the HTTP/REST (uvicorn) and gRPC (grpc.aio) endpoints of ``dynconv-serve`` in one event loop
around one :class:`ModelSet`, with a graceful shutdown: on SIGINT/SIGTERM (or :meth:`stop`) the
server turns not-ready, both endpoints finish their in-flight requests, then the batchers drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable

from .server import DEFAULT_MAX_REQUEST_BYTES, ModelSet

log = logging.getLogger("dynconv.runtime")


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0 picks a free one), not yet listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; without it every
    # response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind the HTTP endpoint to {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _uvicorn_server(config, before_shutdown: Callable[[], None]):
    """A uvicorn server that calls ``before_shutdown`` when it starts shutting down and handles
    SIGINT/SIGTERM as a graceful stop without re-raising them afterwards (exit code 0)."""
    import uvicorn  # noqa: PLC0415

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            before_shutdown()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(config)


class InferenceServer:
    """HTTP on ``host:http_port`` and gRPC on ``host:grpc_port`` (None: no gRPC endpoint) serving
    ``models``. The HTTP socket is bound at construction, so a busy port fails early."""

    def __init__(self, models: ModelSet, *, host: str = "127.0.0.1", http_port: int = 8000,
                 grpc_port: int | None = 8001, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 graceful_timeout: float = 30.0, log_level: str = "warning",
                 on_started: Callable[["InferenceServer"], None] | None = None) -> None:
        self.models = models
        self.on_started = on_started
        self.host = host
        self.grpc_port = grpc_port
        self.max_request_bytes = max_request_bytes
        self.graceful_timeout = graceful_timeout
        self.log_level = log_level
        self.http_socket = bind_socket(host, http_port)
        self.http_port = int(self.http_socket.getsockname()[1])
        self._uvicorn = None
        self._grpc = None
        self._grpc_stopping: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def started(self) -> bool:
        return self._uvicorn is not None and self._uvicorn.started

    async def serve(self) -> None:
        """Serve until a signal or :meth:`stop`; drain and release everything before returning."""
        import uvicorn  # noqa: PLC0415

        from .kserve_http import create_http_app  # noqa: PLC0415

        app = create_http_app(self.models, max_request_bytes=self.max_request_bytes)
        config = uvicorn.Config(app, log_level=self.log_level, timeout_graceful_shutdown=self.graceful_timeout,
                                lifespan="off")
        try:
            if self.grpc_port is not None:
                from .kserve_grpc import create_grpc_server  # noqa: PLC0415

                self._grpc, self.grpc_port = create_grpc_server(
                    self.models, f"{self.host}:{self.grpc_port}", max_request_bytes=self.max_request_bytes)
                await self._grpc.start()
            await self.models.start()
            self._uvicorn = _uvicorn_server(config, self._begin_shutdown)
            announce = asyncio.get_running_loop().create_task(self._announce())
            await self._uvicorn.serve(sockets=[self.http_socket])
            announce.cancel()
        finally:
            self._begin_shutdown()
            if self._grpc_stopping is not None:
                await self._grpc_stopping
            await self.models.close()
            self.http_socket.close()

    async def _announce(self) -> None:
        while not self.started:
            await asyncio.sleep(0.01)
        if self.on_started is not None:
            self.on_started(self)

    def _begin_shutdown(self) -> None:
        """Turn not-ready and start the gRPC endpoint's graceful stop (idempotent)."""
        self.models.ready = False
        if self._grpc is not None and self._grpc_stopping is None:
            self._grpc_stopping = asyncio.get_running_loop().create_task(self._grpc.stop(self.graceful_timeout))

    # -- running in a background thread (tests, benchmarks, embedding) --

    def start_in_thread(self, timeout: float = 30.0) -> "InferenceServer":
        """Serve from a daemon thread; return once both endpoints accept requests."""
        def run() -> None:
            try:
                asyncio.run(self.serve())
            except BaseException as exc:  # noqa: BLE001 - re-raised by start_in_thread/stop
                self._failure = exc

        self._thread = threading.Thread(target=run, name="dynconv-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.started:
            if self._failure is not None or not self._thread.is_alive():
                raise RuntimeError(f"the server failed to start: {self._failure!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the server to shut down gracefully and wait for it (thread mode)."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the server did not stop within {timeout} s")
        if self._failure is not None:
            raise RuntimeError(f"the server failed: {self._failure!r}")

    def __enter__(self) -> "InferenceServer":
        return self.start_in_thread()

    def __exit__(self, *exc) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.stop()
