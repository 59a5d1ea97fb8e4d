"""Frame-wide statistics of a depth map, shared by heatmaps, depth references, zones and depth health.

MiDaS's output has an unknown scale and shift in every frame, so every stage that needs a frame's range uses
the same robust one (2nd..98th percentile, which ignores a few wild pixels), computed on the same subsampled
grid (every 4th pixel in each direction: 1/16 of the work, 3072 values at 256x192, the same range to a few
tenths of a percent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GRID_STRIDE = 4
ROBUST_PERCENTILES = (2.0, 98.0)
_LERP_SWITCH = 0.5  # NumPy's _lerp interpolates from the upper end from this weight on


def grid(values: np.ndarray) -> np.ndarray:
    """(H, W[, C]) array -> the (ceil(H/4), ceil(W/4)[, C]) view of every ``GRID_STRIDE``-th pixel (no copy)."""
    return values[::GRID_STRIDE, ::GRID_STRIDE]


def robust_range(depth: np.ndarray, percentiles: tuple[float, float] = ROBUST_PERCENTILES) -> tuple[float, float]:
    """(low, high) percentiles of a (H, W) float32 depth map's finite values on the grid; NaN when none."""
    stats = grid_stats(depth, percentiles)
    return stats.low, stats.high


@dataclass(frozen=True, slots=True)
class GridStats:
    """The figures of one (H, W) float32 depth map's grid that several stages need in every frame (heatmap
    colours, depth health): computed once per frame by :func:`grid_stats` and handed to each.

    ``size``: values on the grid. ``finite``: how many of them are finite. ``low``, ``high``: the robust range
    of the finite ones, as :func:`robust_range` gives it (relative inverse depth, the model's unit); NaN when
    none is finite.
    """

    size: int
    finite: int
    low: float
    high: float


def grid_stats(depth: np.ndarray, percentiles: tuple[float, float] = ROBUST_PERCENTILES) -> GridStats:
    """:class:`GridStats` of a (H, W) float32 depth map (not empty); ``low``, ``high`` at ``percentiles``."""
    sample = grid(depth)
    finite = np.isfinite(sample)
    count = int(np.count_nonzero(finite))
    if count == 0:
        return GridStats(sample.size, 0, math.nan, math.nan)
    low, high = percentiles_of(sample if count == sample.size else sample[finite], percentiles)
    return GridStats(sample.size, count, float(low), float(high))


def percentiles_of(values: np.ndarray, percentiles: Sequence[float]) -> list[np.float64]:
    """``np.percentile(values, percentiles)`` (linear method) to the last bit for finite ``values`` (NumPy's NaN
    propagation is not reproduced), in a quarter of the time for a few percentiles of a small array: the ranks
    the percentiles fall between are found once, then NumPy's own interpolation step runs per percentile. Per
    frame these run several times per camera, where NumPy's general path costs more than the ranking itself."""
    flat = values.ravel()
    last = flat.size - 1
    spots = []
    for p in percentiles:
        virtual = p / 100.0 * last
        lo = math.floor(virtual)
        spots.append((lo, min(lo + 1, last), np.float64(virtual - lo)))
    ranks = sorted({i for lo, hi, _ in spots for i in (lo, hi)})
    # A partition around one rank is NumPy's vectorised selection; around several it falls back to a scalar
    # introselect that costs more than a full (vectorised) sort of a few thousand values. Both rank alike.
    ranked = np.partition(flat, ranks[0]) if len(ranks) == 1 else np.sort(flat)
    out = []
    for lo, hi, t in spots:
        a, b = ranked[lo], ranked[hi]
        diff = b - a
        # NumPy's _lerp: from the nearer end, so that t = 1 gives b exactly
        out.append(np.float64(b - diff * (1 - t) if t >= _LERP_SWITCH else a + diff * t))
    return out


def median_of(values: np.ndarray) -> np.floating:
    """``np.median(values)`` to the last bit for finite float32 or float64 ``values``, without NumPy's general
    path (which costs more than the partition itself for the few hundred values a region or a fit has)."""
    flat = values.ravel()
    n = flat.size
    if n == 0:
        return np.float64(math.nan)
    half = n // 2
    # One partition around the upper middle (vectorised; one around both middles is not): everything below
    # it is no larger, so the lower middle is the largest of those.
    ranked = np.partition(flat, half)
    upper: np.floating = ranked[half]
    if n % 2:
        # NumPy's mean of the one middle value, which adds it to +0.0: a middle -0.0 comes out as +0.0.
        odd: np.floating = upper + 0
        return odd
    lower: np.floating = ranked[:half].max()
    # NumPy's mean of the two middle values: their sum in the values' dtype (a sum that adds to a +0.0 start:
    # two negative zeros give +0.0), divided by the count in float64 (np.mean divides by an intp, which
    # promotes to float64; Python's division is the same operation, faster), cast back.
    total = lower + (upper + 0)
    mean: np.floating = total.dtype.type(float(total) / 2)
    return mean
