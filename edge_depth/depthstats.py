"""Frame-wide statistics of a depth map, shared by heatmaps, depth references, zones and depth health.

MiDaS's output has an unknown scale and shift in every frame, so every stage that needs a frame's range uses
the same robust one (2nd..98th percentile, which ignores a few wild pixels), computed on the same subsampled
grid (every 4th pixel in each direction: 1/16 of the work, 3072 values at 256x192, the same range to a few
tenths of a percent).
"""

from __future__ import annotations

import numpy as np

GRID_STRIDE = 4
ROBUST_PERCENTILES = (2.0, 98.0)


def grid(values: np.ndarray) -> np.ndarray:
    """(H, W[, C]) array -> the (ceil(H/4), ceil(W/4)[, C]) view of every ``GRID_STRIDE``-th pixel (no copy)."""
    return values[::GRID_STRIDE, ::GRID_STRIDE]


def robust_range(depth: np.ndarray, percentiles: tuple[float, float] = ROBUST_PERCENTILES) -> tuple[float, float]:
    """(low, high) percentiles of a (H, W) float32 depth map's finite values on the grid; NaN when none."""
    sample = grid(depth)
    finite = np.isfinite(sample)
    values = sample if finite.all() else sample[finite]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, percentiles)
    return float(low), float(high)
