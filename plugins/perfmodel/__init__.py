"""Kernel performance model without a GPU (issue 11).

The CPU executor runs the CUDA block bodies thread by thread; with an access tracer installed
(``trt_plugins_cpp/common/trace.h``) it counts, per warp instruction, global-memory sectors and
shared-memory wavefronts, plus FMA / MMA / bilinear-sample work. :mod:`.counters` fetches those
counters, :mod:`.roofline` turns them into per-launch lower bounds for a GPU (:mod:`.hardware`) next to
a standard and a depthwise 3x3 convolution of the same shape, and :mod:`.report` prints the table
(``python -m dynconv.plugins.perfmodel [--json FILE]``).
"""

from .counters import LaunchCounters, trace_op, trace_planted
from .hardware import GPUS, H200, ORIN, Gpu
from .roofline import predict_launch

__all__ = ["GPUS", "H200", "ORIN", "Gpu", "LaunchCounters", "predict_launch", "trace_op", "trace_planted"]
