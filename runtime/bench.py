"""Latency/throughput measurement of backends, and the TensorRT time breakdown that shows the
Python ``infer()`` overhead against the engine's own time."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Row:
    """One benchmarked backend. Times in ms unless the name says us."""

    backend: str
    batch: int
    runs: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float  # items (dim 0) per second at the median latency
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def timings(fn: Callable[[], object], *, warmup: int, runs: int) -> np.ndarray:
    """Wall-clock seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    clock = time.perf_counter
    for i in range(runs):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def summarize(name: str, seconds: np.ndarray, batch: int, extra: dict | None = None) -> Row:
    ms = seconds * 1e3
    median = float(np.median(ms))
    return Row(
        backend=name,
        batch=batch,
        runs=len(ms),
        median_ms=median,
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(np.mean(ms)),
        throughput=batch / (median / 1e3) if median > 0 else float("inf"),
        extra=extra or {},
    )


def bench_backend(name: str, infer: Callable[[Mapping[str, np.ndarray]], object], feeds: Mapping[str, np.ndarray],
                  *, warmup: int, runs: int) -> Row:
    batch = next(iter(feeds.values())).shape[0] if feeds and next(iter(feeds.values())).ndim else 1
    return summarize(name, timings(lambda: infer(feeds), warmup=warmup, runs=runs), int(batch))


def trt_breakdown(engine, feeds: Mapping[str, np.ndarray], *, warmup: int, runs: int) -> dict:
    """Where the time of ``Engine.infer`` goes (needs a GPU):

    - ``gpu_ms``: engine time on the GPU (CUDA events around one enqueue),
    - ``enqueue_us``: CPU time of the bare ``execute_async_v3`` call,
    - ``raw_us``: bare enqueue + stream sync on pre-bound buffers (the floor),
    - ``infer_device_us``: ``infer_async`` on device-resident inputs + sync,
    - ``overhead_us``: infer_device - raw, the Python wrapper's own cost (target < 20 us)."""
    from . import device  # noqa: PLC0415

    stream = engine._stream.handle  # noqa: SLF001 - the engine's own stream
    bufs, dev_feeds = [], {}
    for name, arr in feeds.items():
        arr = np.ascontiguousarray(arr)
        buf = device.DeviceBuffer()
        ptr = buf.ensure(arr.nbytes)
        device.copy_htod_async(ptr, arr, stream)
        bufs.append(buf)
        dev_feeds[name] = device.DeviceView(ptr, arr.shape, arr.dtype, True)
    device.synchronize(stream)
    try:
        def infer_device() -> None:
            engine.infer_async(dev_feeds)
            device.synchronize(stream)

        infer_device_s = timings(infer_device, warmup=warmup, runs=runs)

        def raw() -> None:
            engine.execute()
            device.synchronize(stream)

        raw_s = timings(raw, warmup=warmup, runs=runs)
        enqueue = np.empty(runs)
        start, end = device.Event(), device.Event()
        gpu = np.empty(runs)
        for i in range(runs):
            start.record(stream)
            t0 = time.perf_counter()
            engine.execute()
            enqueue[i] = time.perf_counter() - t0
            end.record(stream)
            gpu[i] = end.elapsed_ms(start)
        start.destroy()
        end.destroy()
    finally:
        device.synchronize(stream)
        for buf in bufs:
            buf.free()
    raw_us = float(np.median(raw_s) * 1e6)
    dev_us = float(np.median(infer_device_s) * 1e6)
    return {
        "gpu_ms": float(np.median(gpu)),
        "enqueue_us": float(np.median(enqueue) * 1e6),
        "raw_us": raw_us,
        "infer_device_us": dev_us,
        "overhead_us": dev_us - raw_us,
    }


def table(rows: list[Row]) -> str:
    """A plain-text table of the rows (and the TensorRT breakdown when present)."""
    head = f"{'backend':<14} {'batch':>5} {'median ms':>10} {'p90 ms':>9} {'p99 ms':>9} {'items/s':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.backend:<14} {r.batch:>5} {r.median_ms:>10.3f} {r.p90_ms:>9.3f} {r.p99_ms:>9.3f} "
                     f"{r.throughput:>11.1f}")
    for r in rows:
        if r.extra:
            e = r.extra
            lines.append(
                f"{r.backend}: GPU {e['gpu_ms']:.3f} ms, enqueue {e['enqueue_us']:.1f} us, bare enqueue+sync "
                f"{e['raw_us']:.1f} us, infer() on device inputs {e['infer_device_us']:.1f} us -> Python "
                f"overhead {e['overhead_us']:.1f} us"
            )
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported lazily: only the plots need it)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def save_png(fig, path, dpi: int) -> None:
    """Lay out ``fig``, close it and write it atomically as PNG."""
    import io  # noqa: PLC0415

    from ._cli import atomic_write_bytes  # noqa: PLC0415

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def bar_chart(rows: list[Row], path: str, title: str) -> None:
    """Median latency bars with p90 whiskers, written atomically as PNG (matplotlib, lazy)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(rows), 3.6))
    names = [r.backend for r in rows]
    med = [r.median_ms for r in rows]
    err = [[0] * len(rows), [max(r.p90_ms - r.median_ms, 0) for r in rows]]
    bars = ax.bar(names, med, yerr=err, capsize=4, color="#4C72B0")
    for bar, r in zip(bars, rows):
        ax.annotate(f"{r.median_ms:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("latency ms (median, p90 whisker)")
    ax.set_title(title, fontsize=9)
    save_png(fig, path, dpi=120)
