"""Dynamic batching: requests queued within ``max_delay`` are concatenated along dim 0 (up to
``max_batch`` rows, same trailing shapes) into one backend call whose outputs are split back.

The backend runs on one worker thread (TensorRT contexts and most sessions are not re-entrant).
After a call whose inputs reach ``trim_bytes`` the worker hands freed heap pages back to the OS
(glibc ``malloc_trim``), so one large request does not leave the process at its peak size."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .backends import Backend

log = logging.getLogger("dynconv.runtime")

DEFAULT_TRIM_BYTES = 256 << 10  # trimming an already-trim heap costs ~15 us


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


def release_heap() -> bool:
    """Return freed malloc pages to the OS (glibc only; False elsewhere)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@dataclass
class _Item:
    feeds: Mapping[str, np.ndarray]
    rows: int
    key: tuple
    future: asyncio.Future


class Batcher:
    """Queue + worker that groups compatible requests into batches.

    Batching is on when the backend's I/O all have a dynamic dim 0 and ``max_batch > 1``;
    otherwise every request runs alone. ``on_batch(rows)`` is called once per backend call."""

    def __init__(self, backend: Backend, *, max_batch: int = 8, max_delay_s: float = 0.002,
                 on_batch: Callable[[int], None] | None = None, trim_bytes: int | None = DEFAULT_TRIM_BYTES) -> None:
        self.backend = backend
        limit = backend.max_batch
        self.max_batch = max(1, min(max_batch, limit) if limit else max_batch)
        self.max_delay_s = max(0.0, max_delay_s)
        self.batching = backend.batch_dynamic and self.max_batch > 1
        self.on_batch = on_batch or (lambda rows: None)
        self.trim_bytes = trim_bytes
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._carry: _Item | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dynconv-infer")
        self.in_flight = 0

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        """Finish every queued request, then stop the worker."""
        if self._task is not None and self._queue is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def submit(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Queue one (already validated) request and wait for its outputs."""
        assert self._queue is not None, "Batcher.start() was not awaited"
        first = next(iter(feeds.values()))
        rows = int(first.shape[0]) if first.ndim else 1
        key = tuple((n, feeds[n].shape[1:], feeds[n].dtype.str) for n in sorted(feeds))
        future = asyncio.get_running_loop().create_future()
        self.in_flight += 1
        try:
            self._queue.put_nowait(_Item(feeds, rows, key, future))
            return await future
        finally:
            self.in_flight -= 1

    async def _next(self, timeout: float | None) -> _Item | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        assert self._queue is not None
        if timeout is None:
            return await self._queue.get()
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping or self._carry is not None:
            item = await self._next(None)
            if item is None:
                break
            batch, rows = [item], item.rows
            if self.batching and rows < self.max_batch:
                deadline = loop.time() + self.max_delay_s
                while rows < self.max_batch:
                    remaining = deadline - loop.time()
                    try:
                        nxt = await self._next(remaining) if remaining > 0 else self._queue.get_nowait()
                    except (asyncio.TimeoutError, asyncio.QueueEmpty):
                        break
                    if nxt is None:
                        stopping = True
                        break
                    if nxt.key != item.key or rows + nxt.rows > self.max_batch:
                        self._carry = nxt
                        break
                    batch.append(nxt)
                    rows += nxt.rows
            await self._run(batch, rows)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self.backend.infer(feeds)
        finally:
            size = sum(int(a.nbytes) for a in feeds.values())
            if self.trim_bytes is not None and size >= self.trim_bytes:
                release_heap()

    async def _run(self, batch: list[_Item], rows: int) -> None:
        live = [it for it in batch if not it.future.done()]
        if not live:
            return
        if len(live) == 1:
            feeds = live[0].feeds
        else:
            feeds = {n: np.concatenate([it.feeds[n] for it in live], axis=0) for n in live[0].feeds}
        rows = sum(it.rows for it in live)
        self.on_batch(rows)
        try:
            out = await asyncio.get_running_loop().run_in_executor(self._executor, self._infer, feeds)
        except Exception as exc:  # delivered to every waiting request
            for it in live:
                if not it.future.done():
                    it.future.set_exception(exc)
            return
        start = 0
        for it in live:
            part = out if len(live) == 1 else {k: v[start:start + it.rows] for k, v in out.items()}
            start += it.rows
            if not it.future.done():
                it.future.set_result(part)
