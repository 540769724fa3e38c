"""Access and work counters of kernel launches, from the tracing CPU executor (libdynconv_cpuref.so).

Counters of the traced blocks are scaled to the launch by ``blocks_total / blocks_traced``: the blocks
of a launch run the same body on different tiles (traced blocks are spread evenly over the grid).
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .. import native
from ..errors import DynconvError


@dataclass(frozen=True)
class SiteCounters:
    """One source site (file:line) of a launch: totals over its warp instructions (traced blocks)."""

    site: str
    space: str         #: "global" or "shared"
    gather: bool       #: a data-dependent bilinear corner read
    store: bool
    instructions: int  #: warp instructions with at least one active lane
    lanes: int
    units: int         #: 32-byte sectors (global) or wavefronts (shared)
    ideal: int         #: sectors / wavefronts the distinct bytes need
    bytes: int         #: distinct bytes per instruction, summed
    worst: float       #: worst units / ideal of a single instruction

    @property
    def factor(self) -> float:
        """Wavefronts (or sectors) per ideal one: the bank-conflict factor, or 1 / sector efficiency."""
        return self.units / self.ideal if self.ideal else 1.0


@dataclass(frozen=True)
class LaunchCounters:
    kernel: str
    grid: tuple[int, int]
    threads: int
    smem_bytes: int
    blocks_total: int
    blocks_traced: int
    fma: int
    mma: int           #: 16x16x16 tensor-core MMAs
    samples: int       #: bilinear samples computed
    descriptors: int   #: bilinear descriptors (corner indices + weights) computed
    dram_read_bytes: int   #: distinct global bytes read by the traced blocks
    dram_write_bytes: int
    sites: list[SiteCounters] = field(default_factory=list)

    @property
    def scale(self) -> float:
        return self.blocks_total / self.blocks_traced if self.blocks_traced else 0.0

    def total(self, name: str) -> float:
        """A work counter scaled to the whole launch."""
        return getattr(self, name) * self.scale

    def space_total(self, space: str, what: str = "units") -> float:
        return sum(getattr(s, what) for s in self.sites if s.space == space) * self.scale

    def hot_shared_sites(self, share: float = 0.01) -> list[SiteCounters]:
        """Shared-memory sites with at least `share` of the launch's shared instructions (the hot loops)."""
        shared = [s for s in self.sites if s.space == "shared"]
        total = sum(s.instructions for s in shared)
        return [s for s in shared if total and s.instructions >= share * total]

    def bank_conflict_factor(self) -> float:
        """Worst wavefronts-per-ideal ratio among the hot shared-memory sites (1.0 without shared memory)."""
        return max((s.factor for s in self.hot_shared_sites()), default=1.0)

    def sector_efficiency(self) -> float:
        """Ideal / touched sectors over the global accesses other than the bilinear gather."""
        plain = [s for s in self.sites if s.space == "global" and not s.gather]
        units = sum(s.units for s in plain)
        return sum(s.ideal for s in plain) / units if units else 1.0


def _launch(d: Mapping[str, Any]) -> LaunchCounters:
    c = d["counters"]
    return LaunchCounters(kernel=d["kernel"], grid=tuple(d["grid"]), threads=d["threads"], smem_bytes=d["smem_bytes"],
                          blocks_total=d["blocks_total"], blocks_traced=d["blocks_traced"], fma=c["fma"], mma=c["mma"],
                          samples=c["samples"], descriptors=c["descriptors"], dram_read_bytes=c["dram_read_bytes"],
                          dram_write_bytes=c["dram_write_bytes"], sites=[SiteCounters(**s) for s in c["sites"]])


def _library() -> ctypes.CDLL:
    lib = native.cpuref_library()
    lib.dynconv_cpuref_trace.restype = ctypes.c_char_p
    lib.dynconv_cpuref_trace_planted.restype = ctypes.c_char_p
    return lib


def trace_op(op_name: str, inputs: Sequence[np.ndarray | None], attrs: Mapping[str, Any], fp16: bool = False,
             picks: int = 4) -> list[LaunchCounters]:
    """Counters of every launch ``op_name`` makes on ``inputs`` (FP32 arrays; ``fp16``: the FP16 kernels on
    FP16 copies), tracing at most ``picks`` blocks per launch."""
    lib = _library()
    fields = native.FieldArray(attrs)
    packed = native.InputArrays(op_name, inputs)
    n, ptrs, ranks, dims = packed.count, packed.ptrs, packed.ranks, packed.dims
    err = ctypes.create_string_buffer(1024)
    out = lib.dynconv_cpuref_trace(op_name.encode(), fields.array, fields.count, n, ptrs, ranks, dims, int(fp16),
                                   int(picks), err, len(err))
    if out is None:
        raise DynconvError(err.value.decode())
    return [_launch(d) for d in json.loads(out.decode())]


def trace_planted(name: str) -> LaunchCounters:
    """Counters of a planted access pattern of the tracer's self-test (one block of 256 threads)."""
    err = ctypes.create_string_buffer(1024)
    out = _library().dynconv_cpuref_trace_planted(name.encode(), err, len(err))
    if out is None:
        raise DynconvError(err.value.decode())
    return _launch(json.loads(out.decode())[0])
