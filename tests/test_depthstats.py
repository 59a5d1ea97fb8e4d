"""The frame statistics' shortcuts give NumPy's own results to the last bit."""

from __future__ import annotations

import numpy as np
import pytest

from edge_depth.depthstats import GridStats, grid, grid_stats, median_of, percentiles_of, robust_range


def _samples(dtype: type[np.floating]) -> list[np.ndarray]:
    """Odd and even sizes, ties, tiny and huge magnitudes, one value, two."""
    rng = np.random.default_rng(7)
    out = [np.array([0.25]), np.array([1.0, 3.0]), np.array([-0.0, -0.0]), np.array([-0.0, 0.0])]
    for n in (3, 4, 63, 64, 1627, 1628, 2048):
        out += [
            rng.normal(size=n),
            rng.integers(-4, 4, n).astype(np.float64),
            rng.random(n) * 1e-30,
            np.abs(rng.standard_cauchy(n)) * 1e30,
        ]
    return [v.astype(dtype) for v in out]


def _same(a: object, b: object) -> bool:
    """Same dtype and same bits."""
    x, y = np.asarray(a), np.asarray(b)
    return x.dtype == y.dtype and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_of_is_numpys_median(dtype: type[np.floating]) -> None:
    # A -0.0 in the middle of an odd count: NumPy's median is +0.0 (a region's top gap is published).
    signed_zeros = [np.array(v, dtype) for v in ([-0.0], [1.0, -0.0, -1.0], [0.0, -0.0, 0.0, -1.0, 2.0])]
    for values in _samples(dtype) + signed_zeros:
        assert _same(median_of(values), np.median(values)), values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("percentiles", [(2.0, 98.0), (10.0, 90.0), (50.0,), (0.0, 100.0), (33.3, 66.6, 99.9)])
def test_percentiles_of_is_numpys_percentile(dtype: type[np.floating], percentiles: tuple[float, ...]) -> None:
    for values in _samples(dtype):
        got = percentiles_of(values, percentiles)
        want = np.percentile(values, percentiles)
        assert all(_same(g, w) for g, w in zip(got, want, strict=True)), (values, percentiles)


def test_median_of_nothing_is_nan() -> None:
    assert np.isnan(median_of(np.array([], np.float32)))


@pytest.mark.parametrize("invalid", [0.0, 0.3, 0.999, 1.0])
def test_grid_stats_are_the_grids_counts_and_robust_range(invalid: float) -> None:
    rng = np.random.default_rng(5)
    depth = rng.normal(500, 80, (130, 254)).astype(np.float32)  # sides not multiples of the grid's stride
    depth[rng.random(depth.shape) < invalid] = np.nan
    stats = grid_stats(depth)
    finite = int(np.count_nonzero(np.isfinite(grid(depth))))
    low, high = robust_range(depth)
    assert (stats.size, stats.finite) == (grid(depth).size, finite)
    assert np.array_equal([stats.low, stats.high], [low, high], equal_nan=True)
    assert isinstance(stats, GridStats) and (finite > 0) == (stats.low <= stats.high)
