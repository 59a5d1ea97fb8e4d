"""Depth references: turn the model's relative inverse depth into values that are comparable between frames.

MiDaS returns inverse depth up to a scale and a shift that change in every frame. Each reference maps a
frame to a *score* map, (H, W) float32 where larger = nearer, and maps thresholds and scores to distances
in its unit:

- ``relative`` (unit ``"relative"``): each frame is normalised by its own robust percentiles (p2 -> far,
  p98 -> near by default), which cancels the per-frame scale and shift, and smoothed per pixel over time.
  Score = nearness (0 = as far as the frame's farthest 2 %, 1 = as near as its nearest 2 %); distance =
  1 - nearness. Comparable within one camera's view, not across cameras; a large object entering the
  view shifts everything else slightly.
- ``baseline`` (unit ``"baseline"``): the empty scene is learned as the per-pixel median of normalised
  frames over ``learn_s`` and kept in "baseline range" units (its own p2 = 0, p98 = 1). Each frame is
  aligned to it by a robust least-squares scale and shift fitted on background pixels, so the per-frame
  jitter cancels. Score = how much nearer than the baseline a pixel is (fraction of the baseline range);
  distance = 1 - aligned nearness (0 = as near as the nearest 2 % of the empty scene, 1 = as far as its
  farthest 2 %, negative = nearer than anything in the empty scene). The baseline adapts: unchanged pixels
  follow slowly (``drift_time_constant_s``), pixels that stay changed for ``absorb_after_s`` are replaced
  (a moved chair); pixels the caller freezes (a latched fall) never adapt.
- ``metric`` (unit ``"m"``): each frame, ``1/Z = a * d + b`` is fitted by least squares at the reference
  points (median of a small patch around each); score = fitted inverse distance (1/m), distance = metres.
  A frame with fewer usable points than ``min_points``, or a fit that is not increasing, is uncalibrated:
  no score at all rather than a guess. With 3+ points, points that disagree with the best line through
  the others by more than ``max_point_error`` are dropped as occluded before the least-squares fit.
  With a ``floor`` (``edge_depth.alerts.floor``), each frame is fitted to the floor's known geometry instead
  (RANSAC over the floor polygon, so whatever stands on the floor is left out), and no point is needed.
  Points given as well join that fit, each weighted ``point_weight`` times the whole floor; a point off the
  floor's own fit by more than ``max_point_error`` is dropped and reported (logged once, and in
  ``MetricFit.disagreeing``). A frame whose floor is too covered falls back to the points alone.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from edge_depth.alerts.floor import FloorCamera, FloorFit, FloorModel, relative_error, weighted_line
from edge_depth.config.alerts import (
    BaselineConfig,
    FloorConfig,
    MetricConfig,
    ReferenceConfig,
    ReferencePoint,
    RelativeConfig,
)
from edge_depth.depthstats import ROBUST_PERCENTILES, grid, median_of, percentiles_of, robust_range

log = logging.getLogger(__name__)
_IMAGE_NDIM = 2  # a saved baseline is one (H, W) map
_MAX_BASELINE_SIDE = 8192  # a saved baseline larger than this on a side is not one this daemon wrote
_MIN_LEARN_FRAMES = 3  # a median of fewer is one noisy frame
_ADAPT_PERIOD_S = 0.25  # drift and absorption need not follow faster than 4 times a second

_MIN_FIT_PIXELS = 32  # finite values on the subsampled grid a frame needs for its range or its alignment
_SIGMA_FLOOR = 0.01  # in baseline-range units: noise below 1 % of the range is never an outlier
_MAD_TO_SIGMA = 1.4826
_MAX_STEP_S = 1.0  # a gap in the stream counts as at most this much time for adaptation
_MIN_EXPLAINED = 0.5  # a metric fit must explain half the variance of the points' inverse distances
# The background a baseline fit rests on must span a fifth of the baseline's range between its 10th and 90th
# percentiles: a slope fitted on one flat wall (every pixel at one depth), or on that wall plus the sliver of a
# person that happens to lie near the line, is noise. A tenth of the background at each end must differ.
_MIN_FIT_SPREAD = 0.2
_FIT_SPREAD_PERCENTILES = (10.0, 90.0)


def _temporary(path: Path) -> Path:
    """The temporary file ``atomic_write`` writes ``path``'s new content to: same directory, so os.replace is atomic."""
    return path.with_name(f"{path.stem}.tmp{path.suffix}")


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` so that it is, at every moment and after a crash or power loss, either its old or its new
    content: ``write`` fills a temporary file in the same directory, which is flushed, fsynced and renamed over
    ``path``; then the directory is fsynced. On any failure the temporary file is removed and the error raised."""
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the rename's durability; some filesystems cannot fsync a directory
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_baseline(path: Path) -> np.ndarray:
    """The (H, W) float32 baseline in a .npy file. The header is checked against the file's size before any
    data is read, so a file that claims a huge shape costs no memory; ValueError for anything unusable."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError("empty file")
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, EOFError, SyntaxError) as exc:
            raise ValueError(f"not a .npy file ({_one_line(str(exc))})") from None
        if len(shape) != _IMAGE_NDIM or dtype.kind != "f" or dtype.hasobject:
            raise ValueError(f"not a 2-D float array (shape {shape}, dtype {dtype})")
        if not all(0 < n <= _MAX_BASELINE_SIDE for n in shape):
            raise ValueError(f"implausible shape {shape}")
        expected = f.tell() + shape[0] * shape[1] * dtype.itemsize
        if size != expected:
            raise ValueError(f"truncated or padded: {size} bytes, the header announces {expected}")
        data = np.fromfile(f, dtype=dtype, count=shape[0] * shape[1])
    baseline = data.reshape(shape, order="F" if fortran else "C").astype(np.float32)
    if not np.isfinite(baseline).all():
        raise ValueError("not a finite 2-D array")
    return np.ascontiguousarray(baseline)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


@dataclass(frozen=True, slots=True)
class Measure:
    """One frame in the reference's terms.

    ``score``: (H, W) float32, larger = nearer (unit per mode, see the module docstring); NaN where the
    depth was not finite. ``foreground``: (H, W) bool, pixels clearly nearer than the baseline (baseline
    mode only, else None).
    """

    score: np.ndarray
    foreground: np.ndarray | None


class Reference(Protocol):
    unit: str

    def measure(self, depth: np.ndarray, t: float) -> Measure | None:
        """Score one (H, W) float32 depth map at monotonic time ``t`` (s); None when uncalibrated."""

    def threshold_score(self, threshold: float) -> float:
        """The score that a zone threshold (in this reference's unit) corresponds to."""

    def distances(self, scores: np.ndarray, flat: np.ndarray) -> np.ndarray:
        """Distances (this reference's unit) of ``scores`` taken at raveled pixel indices ``flat``."""


def _range(depth: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float] | None:
    """(low, high) percentiles of a (H, W) depth map on the subsampled grid; None with fewer than
    ``_MIN_FIT_PIXELS`` finite values there or without spread."""
    if np.count_nonzero(np.isfinite(grid(depth))) < _MIN_FIT_PIXELS:
        return None
    low, high = robust_range(depth, percentiles)
    return (low, high) if high > low else None


def _ema_alpha(dt: float, time_constant: float) -> float:
    if time_constant <= 0:
        return 1.0
    return 1.0 - math.exp(-min(max(dt, 0.0), _MAX_STEP_S * 10) / time_constant)


class RelativeReference:
    unit = "relative"

    def __init__(self, cfg: RelativeConfig) -> None:
        self._cfg = cfg
        self._smoothed: np.ndarray | None = None
        self._last_t = 0.0

    def measure(self, depth: np.ndarray, t: float) -> Measure | None:
        spread = _range(depth, (self._cfg.low_percentile, self._cfg.high_percentile))
        if spread is None:
            return None
        low, high = spread
        nearness = (depth - np.float32(low)) * np.float32(1.0 / (high - low))
        previous = self._smoothed
        alpha = _ema_alpha(t - self._last_t, self._cfg.smoothing_s)
        if previous is not None and previous.shape == nearness.shape and alpha < 1:
            blend = previous + np.float32(alpha) * (nearness - previous)
            # A non-finite pixel would stick in the average forever: restart it from the new frame.
            nearness = blend if np.isfinite(blend).all() else np.where(np.isfinite(blend), blend, nearness)
        self._smoothed = nearness
        self._last_t = t
        return Measure(nearness.astype(np.float32, copy=False), None)

    def threshold_score(self, threshold: float) -> float:
        return 1.0 - threshold

    def distances(self, scores: np.ndarray, flat: np.ndarray) -> np.ndarray:
        return 1.0 - scores


def _explained(line: tuple[float, float], x: np.ndarray, y: np.ndarray) -> float:
    """R squared of ``line`` for the points (x, y): 1 = perfect, 0 = no better than their mean."""
    total = float(np.sum((y - y.mean()) ** 2))
    if total <= 0:
        return 1.0
    return 1.0 - float(np.sum((line[0] * x + line[1] - y) ** 2)) / total


def _mean(values: np.ndarray) -> float:
    """``float(values.mean())`` to the last bit for a float32 or float64 array, without np.mean's overhead
    (which costs more than the sum itself for a fit's few thousand values): NumPy's own sum, divided by the
    count in float64 (np.mean divides by an intp, which promotes to float64), cast back to the values' dtype.
    The division is Python's: the same IEEE float64 operation without a NumPy scalar's slow mixed-type path."""
    total = np.add.reduce(values, axis=None)
    return float(total.dtype.type(float(total) / values.size))


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of y = slope * x + intercept for (N,) float32 or float64 ``x`` and
    ``y`` (N >= 1); None when x has no spread."""
    mx, my = _mean(x), _mean(y)
    dx = x - mx
    var = float(np.dot(dx, dx))
    if not var > 0:
        return None
    slope = float(np.dot(dx, y - my)) / var
    return slope, my - slope * mx


class BaselineReference:
    """The learned empty scene, in baseline-range units; see the module docstring."""

    unit = "baseline"

    def __init__(self, cfg: BaselineConfig, path: Path | None = None, camera: str = "") -> None:
        self._cfg = cfg
        self._path = path
        self._camera = camera  # for log lines
        self._baseline: np.ndarray | None = None
        self._changed_for: np.ndarray | None = None  # (H, W) float32 s each pixel has stayed changed
        self._background_grid: np.ndarray | None = None  # last frame's background, subsampled
        self._learn_start: float | None = None
        self._learn_last = -math.inf
        self._learn_frames: list[np.ndarray] = []
        self._last_adapt_t: float | None = None
        self._last_fit: tuple[float, float] | None = None  # the last good (scale, shift), for degenerate frames
        self._saved: np.ndarray | None = None  # what the file holds (last saved or loaded), to skip unchanged saves
        if path is not None and path.exists():
            self._load(path)

    @property
    def ready(self) -> bool:
        """A baseline is learned (or loaded) and in use."""
        return self._baseline is not None

    @property
    def baseline(self) -> np.ndarray | None:
        """(H, W) float32 baseline nearness (0 = far end, 1 = near end of the empty scene), or None."""
        return self._baseline

    def reset(self) -> None:
        """Forget the baseline and learn it again from the next frames."""
        self._baseline = None
        self._changed_for = None
        self._background_grid = None
        self._learn_start = None
        self._learn_last = -math.inf
        self._learn_frames = []
        self._last_adapt_t = None
        self._last_fit = None

    def save(self) -> bool:
        """Write the baseline to its .npy file atomically (``atomic_write``) when it changed since it was last
        saved or loaded; False when there was nothing to write (unlearned, unchanged, or without a path).

        Raises OSError (the temporary file removed) when it cannot be written: the previous file stays intact.
        """
        if self._path is None or self._baseline is None:
            return False
        if self._saved is not None and np.array_equal(self._saved, self._baseline):
            return False
        snapshot = self._baseline.copy()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path, lambda f: np.save(f, snapshot, allow_pickle=False))
        self._saved = snapshot
        log.info("saved baseline %s", self._path)
        return True

    def _load(self, path: Path) -> None:
        """Adopt the baseline saved in ``path``; anything wrong with the file is one warning and no baseline."""
        _temporary(path).unlink(missing_ok=True)  # left by a save that was killed: never the real file
        try:
            baseline = read_baseline(path)
        except (OSError, ValueError, EOFError, MemoryError) as exc:
            log.warning("ignoring baseline %s: %s", path, _one_line(str(exc)) or type(exc).__name__)
            return
        self._adopt(baseline)
        self._saved = baseline.copy()
        log.info("loaded baseline %s (%dx%d)", path, baseline.shape[1], baseline.shape[0])

    def _adopt(self, baseline: np.ndarray) -> None:
        self._baseline = baseline
        self._changed_for = np.zeros_like(baseline)
        self._background_grid = None
        self._last_adapt_t = None
        self._last_fit = None

    def measure(self, depth: np.ndarray, t: float) -> Measure | None:
        baseline = self._baseline
        if baseline is not None and baseline.shape != depth.shape:
            log.warning(
                "%s: the baseline's shape %s does not match depth %s (the camera's resolution changed): learning again",
                self._camera or "camera",
                baseline.shape,
                depth.shape,
            )
            self.reset()
            baseline = None
        if baseline is None:
            self._learn(depth, t)
            return None
        fit = self._align(depth, baseline)
        if fit is None:
            return None
        scale, shift = fit
        # depth * scale + shift - baseline, in place in one new array: the same float32 operations without two
        # full-frame temporaries.
        score = depth * np.float32(scale)
        score += np.float32(shift)
        score -= baseline
        return Measure(score, score >= np.float32(self._cfg.foreground))

    def _learn(self, depth: np.ndarray, t: float) -> None:
        cfg = self._cfg
        if self._learn_start is None:
            self._learn_start = t
        if t - self._learn_last >= cfg.learn_s / cfg.learn_frames:
            normalised = _normalise(depth)
            if normalised is not None:
                self._learn_frames.append(normalised)
                self._learn_last = t
        if t - self._learn_start >= cfg.learn_s and len(self._learn_frames) >= _MIN_LEARN_FRAMES:
            stack = np.stack(self._learn_frames)
            median = np.nanmedian(stack, axis=0) if not np.isfinite(stack).all() else np.median(stack, axis=0)
            learned = _normalise(np.nan_to_num(median, nan=float(np.nanmedian(median))).astype(np.float32))
            self._learn_frames = []
            self._learn_start = None
            if learned is not None:
                self._adopt(learned)

    def _align(self, depth: np.ndarray, baseline: np.ndarray) -> tuple[float, float] | None:
        """Robust (scale, shift) mapping ``depth`` onto ``baseline`` on background pixels of the grid.

        A fit is *degenerate* when it fails, is not increasing, or rests on background pixels that span less
        than ``_MIN_FIT_SPREAD`` of the baseline's range (a large person in front of a flat wall: the robust
        fit keeps only the wall, whose single depth cannot fix a slope). Such a background still fixes one
        number: the previous good scale is kept and the shift is fitted on it, so the wall stays where it is
        whatever the frame's own shift (without a previous fit: the frame's p2..p98 mapped onto 0..1, as the
        baseline was normalised). The background pixel set is then forgotten, so the next frame fits on every
        pixel again and recovers as soon as the scene allows.
        """
        d = grid(depth).ravel()
        b = grid(baseline).ravel()
        finite = np.isfinite(d)
        if np.count_nonzero(finite) < _MIN_FIT_PIXELS:
            return None
        previous = self._background_grid
        use = finite & previous if previous is not None and previous.shape == finite.shape else finite
        fit, background = self._robust_fit(d, b, finite, use)
        if fit is not None:
            self._background_grid = background
            self._last_fit = fit
            return fit
        self._background_grid = None
        if self._last_fit is None:
            return _percentile_fit(depth)
        scale = self._last_fit[0]
        if np.count_nonzero(background) < _MIN_FIT_PIXELS:
            return self._last_fit
        return scale, float(median_of(b[background] - scale * d[background]))

    def _robust_fit(
        self, d: np.ndarray, b: np.ndarray, finite: np.ndarray, use: np.ndarray
    ) -> tuple[tuple[float, float] | None, np.ndarray]:
        """((scale, shift) or None when degenerate (see :meth:`_align`), the background pixels it ended on) of
        the iterated robust fit on (N,) grid values."""
        for _ in range(self._cfg.fit_iterations + 1):
            # The indices once, then gathers: cheaper than a boolean mask applied to each array in turn.
            (kept,) = use.nonzero()
            if kept.size < _MIN_FIT_PIXELS:
                return None, use
            fit = _line_fit(d[kept], b[kept])
            if fit is None or fit[0] <= 0:
                return None, use
            deviation = np.abs(d * fit[0] + fit[1] - b)  # (N,) float32, |residual| of every pixel
            sigma = max(_MAD_TO_SIGMA * float(median_of(deviation[kept])), _SIGMA_FLOOR)
            use = finite & (deviation <= self._cfg.fit_outlier_sigma * sigma)
        if np.count_nonzero(use) < _MIN_FIT_PIXELS:
            return None, use
        low, high = percentiles_of(b[use], _FIT_SPREAD_PERCENTILES)
        if high - low < _MIN_FIT_SPREAD:
            return None, use
        return fit, use

    def threshold_score(self, threshold: float) -> float:
        return threshold

    def distances(self, scores: np.ndarray, flat: np.ndarray) -> np.ndarray:
        # Distance in baseline units needs the baseline at each pixel: aligned nearness = score + baseline.
        if self._baseline is None:
            return np.full(scores.shape, np.nan, np.float32)
        aligned: np.ndarray = scores + self._baseline.ravel()[flat]
        return 1.0 - aligned

    def adapt(self, score: np.ndarray, t: float, frozen: np.ndarray | None = None) -> None:
        """Let the baseline follow lasting changes; call after :meth:`measure` with its ``score``.

        ``frozen``: (H, W) bool pixels that must not adapt now (a latched fall). Runs at most 4 times a
        second: the time constants are minutes.
        """
        baseline, changed_for = self._baseline, self._changed_for
        if baseline is None or changed_for is None or score.shape != baseline.shape:
            return
        if self._last_adapt_t is None:
            self._last_adapt_t = t
            return
        dt = t - self._last_adapt_t
        if dt < _ADAPT_PERIOD_S:
            return
        self._last_adapt_t = t
        dt = min(dt, _MAX_STEP_S)
        step = np.nan_to_num(score, nan=0.0)
        changed = np.abs(step) >= np.float32(self._cfg.foreground)
        if frozen is not None:
            changed &= ~frozen
            step = np.where(frozen, np.float32(0), step)
        changed_for += np.float32(dt)
        changed_for[~changed] = 0
        absorb = changed_for >= np.float32(self._cfg.absorb_after_s)
        drift = np.float32(_ema_alpha(dt, self._cfg.drift_time_constant_s))
        baseline += np.where(changed, np.float32(0), drift * step)
        if absorb.any():
            baseline[absorb] += step[absorb]
            changed_for[absorb] = 0


def _percentile_fit(depth: np.ndarray) -> tuple[float, float] | None:
    """(scale, shift) mapping the (H, W) depth's p2..p98 onto 0..1, as the baseline was normalised; None
    without spread. Only a fallback: a person in view moves the frame's percentiles."""
    spread = _range(depth, ROBUST_PERCENTILES)
    if spread is None:
        return None
    low, high = spread
    return 1.0 / (high - low), -low / (high - low)


def _normalise(depth: np.ndarray) -> np.ndarray | None:
    """(H, W) float32 depth mapped so that its p2 -> 0 and p98 -> 1; None without spread."""
    spread = _range(depth, ROBUST_PERCENTILES)
    if spread is None:
        return None
    low, high = spread
    return ((depth - np.float32(low)) * np.float32(1.0 / (high - low))).astype(np.float32)


@dataclass(frozen=True, slots=True)
class MetricFit:
    """``inverse_m = a * depth + b``; ``points``: how many reference points the fit used.

    ``floor_pixels``: floor pixels (subsampled grid) the fit used, 0 without a floor. ``disagreeing``: names
    of the reference points that the floor contradicted in this frame (dropped from the fit).
    """

    a: float
    b: float
    points: int
    floor_pixels: int = 0
    disagreeing: tuple[str, ...] = ()


def floor_model(cfg: FloorConfig) -> FloorModel:
    """The floor fitter of a ``metric.floor`` config section."""
    camera = FloorCamera(
        height_m=cfg.camera_height_m,
        tilt_deg=cfg.tilt_deg,
        focal=cfg.focal(),
        roll_deg=cfg.roll_deg,
        centre_y=cfg.centre_y,
    )
    return FloorModel(camera, cfg.polygon, tolerance=cfg.inlier_tolerance, min_inliers=cfg.min_inliers)


def _point_name(index: int, point: ReferencePoint) -> str:
    return point.name or f"points[{index}] ({point.x:.2f}, {point.y:.2f})"


class MetricReference:
    """Metres from reference points; see the module docstring."""

    unit = "m"

    def __init__(self, cfg: MetricConfig) -> None:
        self._cfg = cfg
        self._floor = None if cfg.floor is None else floor_model(cfg.floor)
        self._disagreeing: tuple[str, ...] = ()

    def measure(self, depth: np.ndarray, t: float) -> Measure | None:
        fit = self.fit(depth)
        if fit is None:
            return None
        return Measure(depth * np.float32(fit.a) + np.float32(fit.b), None)

    def fit(self, depth: np.ndarray) -> MetricFit | None:
        """Fit ``1/Z = a * d + b`` at the usable reference points (and the floor) of one (H, W) depth map."""
        floor = self._floor.fit(depth) if self._floor is not None else None
        if floor is not None:
            return self._with_floor(depth, floor)
        samples = [(v, p.distance_m) for p in self._cfg.points if (v := self._sample(depth, p)) is not None]
        if len(samples) < self._cfg.min_points:
            return None
        d = np.array([s[0] for s in samples], np.float64)
        z = np.array([s[1] for s in samples], np.float64)
        inliers = np.ones(d.size, bool)
        line = _line_fit(d, 1.0 / z)
        if not self._acceptable(line, d, z):
            # Some point is off (or one outlier flattened the line until every point looks close enough):
            # keep the points that the best pair of points agrees with.
            consensus = self._consensus(d, z)
            if consensus is None:
                return None
            inliers = consensus
            line = _line_fit(d[inliers], 1.0 / z[inliers])
        used = int(np.count_nonzero(inliers))
        if line is None or line[0] <= 0 or used < self._cfg.min_points:
            return None
        if (line[0] * d[inliers] + line[1] <= 0).any():
            return None
        return MetricFit(line[0], line[1], used)

    def _with_floor(self, depth: np.ndarray, floor: FloorFit) -> MetricFit | None:
        """The floor's inliers and the points that agree with the floor, fitted together.

        Minimises the floor's mean squared relative error plus ``point_weight`` times each point's squared
        relative error: the points are measurements and pull the line to themselves, the floor fixes the
        rest. A point that the floor's own fit puts off by more than ``max_point_error`` is occluded or
        moved (or the floor settings are off): it is dropped and reported.
        """
        assert self._cfg.floor is not None  # a floor model exists only with its config
        sampled = [(i, p, self._sample(depth, p)) for i, p in enumerate(self._cfg.points)]
        usable = [(i, p, v) for i, p, v in sampled if v is not None]
        d = np.array([v for _, _, v in usable], np.float64)
        inverse = np.array([1.0 / p.distance_m for _, p, _ in usable], np.float64)
        agree = relative_error(floor.a, floor.b, d, inverse) <= self._cfg.max_point_error
        disagreeing = tuple(_point_name(i, p) for (i, p, _), ok in zip(usable, agree, strict=True) if not ok)
        self._report(disagreeing, floor, usable)
        floor_weight = 1.0 / (floor.inliers * floor.inverse**2)
        point_weight = np.full(int(np.count_nonzero(agree)), self._cfg.floor.point_weight) / inverse[agree] ** 2
        line = weighted_line(
            np.concatenate([floor.depth, d[agree]]),
            np.concatenate([floor.inverse, inverse[agree]]),
            np.concatenate([floor_weight, point_weight]),
        )
        if line is None or line[0] <= 0 or (line[0] * d[agree] + line[1] <= 0).any():
            return None
        return MetricFit(line[0], line[1], int(np.count_nonzero(agree)), floor.inliers, disagreeing)

    def _report(
        self, disagreeing: tuple[str, ...], floor: FloorFit, usable: list[tuple[int, ReferencePoint, float]]
    ) -> None:
        """Log the points the floor contradicts when that set changes (not every frame)."""
        if disagreeing == self._disagreeing:
            return
        self._disagreeing = disagreeing
        for i, point, value in usable:
            name = _point_name(i, point)
            if name in disagreeing:
                inverse = floor.a * value + floor.b
                seen = f"{1.0 / inverse:.2f} m" if inverse > 0 else "beyond the horizon"
                log.warning(
                    "metric: reference point %s disagrees with the floor: %s by the floor, %.2f m measured "
                    "(occluded or moved, or the floor's height, tilt or field of view is off); left out",
                    name,
                    seen,
                    point.distance_m,
                )

    def _acceptable(self, line: tuple[float, float] | None, d: np.ndarray, z: np.ndarray) -> bool:
        """An increasing line that every point agrees with and that explains their spread."""
        if line is None or line[0] <= 0:
            return False
        return bool(self._agreeing(line, d, z).all()) and _explained(line, d, 1.0 / z) >= _MIN_EXPLAINED

    def _agreeing(self, line: tuple[float, float], d: np.ndarray, z: np.ndarray) -> np.ndarray:
        inverse = line[0] * d + line[1]
        with np.errstate(divide="ignore"):
            error = np.where(inverse > 0, np.abs(1.0 / inverse - z) / z, np.inf)
        return np.asarray(error <= self._cfg.max_point_error)

    def _consensus(self, d: np.ndarray, z: np.ndarray) -> np.ndarray | None:
        """(n,) bool: the largest set of points that one increasing line fits within ``max_point_error``.

        Every pair of points defines a line (at most 496 for 32 points); the pair that agrees with most
        points wins, ties going to the smaller total error. A least-squares fit alone would let one
        occluded point drag the line until no single point looks wrong.
        """
        i, j = np.triu_indices(d.size, k=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (1.0 / z[i] - 1.0 / z[j]) / (d[i] - d[j])
            b = 1.0 / z[i] - a * d[i]
            inverse = a[:, None] * d[None, :] + b[:, None]
            error = np.where(inverse > 0, np.abs(1.0 / inverse - z) / z, np.inf)
        error[~(a > 0)] = np.inf
        agree = error <= self._cfg.max_point_error
        counts = agree.sum(axis=1)
        if counts.max() == 0:
            return None
        total = np.where(agree, error, 0.0).sum(axis=1)
        best = np.lexsort((total, -counts))[0]
        return np.asarray(agree[best])

    def _sample(self, depth: np.ndarray, point: ReferencePoint) -> float | None:
        """Median depth of the patch around ``point``; None when most of it is not finite."""
        height, width = depth.shape
        x = min(max(round(point.x * width - 0.5), 0), width - 1)
        y = min(max(round(point.y * height - 0.5), 0), height - 1)
        r = self._cfg.patch_px
        patch = depth[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1]
        finite = patch[np.isfinite(patch)]
        if finite.size * 2 <= patch.size:
            return None
        return float(np.median(finite))

    def threshold_score(self, threshold: float) -> float:
        return 1.0 / threshold

    def distances(self, scores: np.ndarray, flat: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.where(scores > 0, 1.0 / scores, np.inf)


def make_reference(cfg: ReferenceConfig, baseline_path: Path | None = None, camera: str = "") -> Reference:
    """The reference object for ``camera``'s ``reference`` config section."""
    if cfg.mode == "relative":
        return RelativeReference(cfg.relative)
    if cfg.mode == "metric":
        return MetricReference(cfg.metric)
    return BaselineReference(cfg.baseline, baseline_path, camera)


def nearest(reference: Reference, scores: np.ndarray, flat: np.ndarray, fraction: float) -> float | None:
    """The ``fraction`` (0..1) quantile of the finite distances of ``scores`` (taken at raveled pixel indices
    ``flat``), in the reference's unit; None when none is finite. A low quantile rather than the minimum: one
    noisy pixel does not decide it.
    """
    distances = reference.distances(scores, flat)
    distances = distances[np.isfinite(distances)]
    if distances.size == 0:
        return None
    k = int(fraction * (distances.size - 1))
    return float(np.partition(distances, k)[k])
