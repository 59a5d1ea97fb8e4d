"""Depth health: is this camera's depth worth alerting on?

A frame is bad when (checked in this order, the first match is the reason):

- ``"invalid depth"``: more than ``max_invalid_fraction`` of the depth pixels are not finite;
- ``"dark"``: the grey image has less contrast (standard deviation, 0..255) than ``min_contrast`` and its
  mean is below ``dark_level``;
- ``"covered"``: the same lack of contrast in a brighter image (a lens cap, a cloth, fog, a blank wall);
- ``"flat depth"``: the depth's robust spread (p98 - p2) is below ``min_depth_spread`` times its running
  level (an exponential average of the spread over good frames, 30 s time constant), or below 1 % of the
  depth's p98 before any level is known.

The camera turns unreliable after ``bad_frames`` consecutive bad frames and reliable again after
``recover_frames`` consecutive good ones. The alert logic ignores every frame that is bad or that arrives
while the camera is unreliable: open alerts stay open (neither updated nor ended) and no new alert starts,
because an obstacle behind a covered lens is unknown, not gone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_depth.config.alerts import HealthConfig
from edge_depth.depthstats import GRID_STRIDE, GridStats, grid_stats

_LEVEL_TIME_CONSTANT_S = 30.0
_ABSOLUTE_FLAT = 0.01
_MIN_SPREAD_VALUES = 16  # fewer finite depth values than this tell nothing about the depth's spread


@dataclass(frozen=True, slots=True)
class DepthHealth:
    """Health of one camera's depth after a frame.

    ``reliable``: alerts may be raised (the status-level verdict, with hysteresis).
    ``reason``: why not ("invalid depth", "dark", "covered", "flat depth"), None when reliable.
    ``frame_ok``: this frame alone passed every check.
    ``contrast``: standard deviation of the grey image (0..255). ``brightness``: its mean (0..255).
    ``depth_spread``: p98 - p2 of the depth divided by its running level (1 = usual), NaN if unknown.
    ``invalid_fraction``: fraction of depth pixels that are not finite.
    """

    reliable: bool
    reason: str | None
    frame_ok: bool
    contrast: float
    brightness: float
    depth_spread: float
    invalid_fraction: float

    @property
    def status(self) -> str:
        """'ok' or 'depth unreliable', for the camera's status message."""
        return "ok" if self.reliable else "depth unreliable"


class HealthMonitor:
    """Per-camera depth health with hysteresis. Call :meth:`update` once per frame, in order."""

    def __init__(self, cfg: HealthConfig) -> None:
        self._cfg = cfg
        self._level: float | None = None
        self._last_t: float | None = None
        self._reliable = True
        self._reason: str | None = None
        self._streak = 0  # consecutive frames disagreeing with the current verdict

    def update(self, image: np.ndarray, depth: np.ndarray, t: float, stats: GridStats | None = None) -> DepthHealth:
        """Check one frame. ``image``: (H, W, 3) uint8 BGR; ``depth``: (H, W) float32; ``t``: monotonic s;
        ``stats``: ``grid_stats(depth)`` when the caller has it already (computed here otherwise)."""
        # The grey of the grid's pixels: every GRID_STRIDE-th row converted whole (OpenCV takes a view with a row
        # stride), then every GRID_STRIDE-th column copied contiguous for meanStdDev. Grey is per pixel, so
        # these are the grid's own grey values; copying single bytes is cheaper than NumPy's copy of the 3-byte
        # pixels of grid(image), which cost more than the conversion itself.
        rows = cv2.cvtColor(image[::GRID_STRIDE], cv2.COLOR_BGR2GRAY)
        mean, std = cv2.meanStdDev(np.ascontiguousarray(rows[:, ::GRID_STRIDE]))
        brightness, contrast = float(mean[0, 0]), float(std[0, 0])
        if stats is None:
            stats = grid_stats(depth)
        invalid = 1.0 - float(stats.finite) / stats.size
        spread, spread_ratio, flat = self._depth_spread(stats)

        reason: str | None = None
        if invalid > self._cfg.max_invalid_fraction:
            reason = "invalid depth"
        elif contrast < self._cfg.min_contrast:
            reason = "dark" if brightness < self._cfg.dark_level else "covered"
        elif flat:
            reason = "flat depth"
        frame_ok = reason is None
        if frame_ok:
            self._learn_level(spread, t)
        self._last_t = t
        self._vote(frame_ok, reason)
        if not self._cfg.enabled:
            return DepthHealth(True, None, True, contrast, brightness, spread_ratio, invalid)
        return DepthHealth(self._reliable, self._reason, frame_ok, contrast, brightness, spread_ratio, invalid)

    def _depth_spread(self, stats: GridStats) -> tuple[float, float, bool]:
        """(spread, spread / running level, flat?) of the finite depth values on the grid."""
        if stats.finite < _MIN_SPREAD_VALUES:
            return math.nan, math.nan, True
        spread = stats.high - stats.low
        if self._level is None:
            return spread, math.nan, spread <= _ABSOLUTE_FLAT * max(abs(stats.high), 1e-12)
        ratio = spread / self._level
        return spread, ratio, ratio < self._cfg.min_depth_spread

    def _learn_level(self, spread: float, t: float) -> None:
        if self._level is None:
            self._level = spread
            return
        dt = 0.0 if self._last_t is None else min(max(t - self._last_t, 0.0), 1.0)
        alpha = 1.0 - math.exp(-dt / _LEVEL_TIME_CONSTANT_S)
        self._level += alpha * (spread - self._level)

    def _vote(self, frame_ok: bool, reason: str | None) -> None:
        if frame_ok == self._reliable:
            self._streak = 0
            if not frame_ok:
                self._reason = reason
            return
        self._streak += 1
        needed = self._cfg.recover_frames if frame_ok else self._cfg.bad_frames
        if self._streak >= needed:
            self._reliable = frame_ok
            self._reason = reason
            self._streak = 0
