"""Pair items of the DDF / involution strips (common/pixel_filter_strip.h, FP16 kernels; the CPU reference runs
them wherever the FP16 kernel does): edge handling at even widths, where pairs apply."""

from __future__ import annotations

import numpy as np
import pytest

from dynconv.plugins import native


def _ddf_inside_taps(x, fc, fs, combine: str, i: int, j: int) -> np.ndarray:
    """out[0, :, i, j] by the definition: taps (u, v) inside the image only (3x3, padding 1)."""
    _, c, h, w = x.shape
    acc = np.zeros(c)
    for u in range(3):
        for v in range(3):
            y, z = i + u - 1, j + v - 1
            if 0 <= y < h and 0 <= z < w:
                s = fs[0, 3 * u + v, i, j]
                f = s * fc[0, :, u, v] if combine == "mul" else s + fc[0, :, u, v]
                acc += x[0, :, y, z] * f
    return acc


@pytest.mark.parametrize("combine", ["mul", "add"])
@pytest.mark.parametrize("edge", ["row", "col_first", "col_last"])
def test_pair_items_ignore_non_finite_channel_filters_outside(combine, edge):
    """Where the channel filter is inf on the tap row / column that lies outside the image for the edge outputs
    (row 0; column 0: the first half of a pair; column W-1: the second half), those outputs stay finite."""
    rng = np.random.default_rng(7)
    h, w = 6, 8
    x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
    fc = rng.standard_normal((1, 3, 3, 3)).astype(np.float32)
    fs = rng.standard_normal((1, 9, h, w)).astype(np.float32)
    if edge == "row":
        fc[:, :, 0, :] = np.inf
        pixels = [(0, j) for j in range(w)]
    elif edge == "col_first":
        fc[:, :, :, 0] = np.inf
        pixels = [(i, 0) for i in range(h)]
    else:
        fc[:, :, :, 2] = np.inf
        pixels = [(i, w - 1) for i in range(h)]
    got = native.run_reference("ddf", [x, fc, fs], dict(kernel_size=3, dilation=1, stride=1, combine=combine))
    for i, j in pixels:
        np.testing.assert_allclose(got[0, :, i, j], _ddf_inside_taps(x, fc, fs, combine, i, j), rtol=1e-5, atol=1e-5)
