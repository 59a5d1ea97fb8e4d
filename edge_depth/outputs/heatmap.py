"""Colour heatmaps of relative inverse depth, with colours that keep their meaning over time.

Every demo normalises each frame by its own min and max, so a wall's colour jumps whenever something
near enters the view. Here the colour range is the frame's robust range
(:func:`edge_depth.depthstats.robust_range`: 2nd..98th percentile on a subsampled grid) followed by a
first-order low-pass with a time constant, so colours drift only as fast as the scene really changes.
The colormap is applied at the model's resolution and the result resized once to the published size.
The depth maps given are only read.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_depth.config.schema import HeatmapConfig
from edge_depth.depthstats import GridStats, grid_stats

COLORMAPS: dict[str, int] = {
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "turbo": cv2.COLORMAP_TURBO,
    "jet": cv2.COLORMAP_JET,
    "bone": cv2.COLORMAP_BONE,
}


@dataclass(slots=True)
class SmoothedRange:
    """Low-pass filtered robust range; ``time_constant_s`` is the filter's time constant (s)."""

    time_constant_s: float
    low: float = math.nan
    high: float = math.nan
    _last_t: float = math.nan

    def update(self, depth: np.ndarray, t: float, stats: GridStats | None = None) -> tuple[float, float]:
        """Fold in a (H, W) float32 depth map captured at monotonic time ``t`` (s); return (low, high).
        ``stats``: ``grid_stats(depth)`` when the caller has it already (computed here otherwise)."""
        if stats is None:
            stats = grid_stats(depth)
        low, high = stats.low, stats.high
        if math.isnan(self.low):
            self.low, self.high = low, high
        else:
            alpha = 1.0 - math.exp(-max(t - self._last_t, 0.0) / self.time_constant_s)
            self.low += alpha * (low - self.low)
            self.high += alpha * (high - self.high)
        self._last_t = t
        return self.low, self.high


@functools.cache
def _colour_table(colormap: int) -> np.ndarray:
    """(1, 256, 3) uint8 BGR: the colour ``cv2.applyColorMap`` gives each grey level under ``colormap``."""
    table = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), colormap).reshape(1, 256, 3)
    table.flags.writeable = False  # shared by every camera
    return table


def colorize(depth: np.ndarray, low: float, high: float, colormap: int = cv2.COLORMAP_INFERNO) -> np.ndarray:
    """(H, W) float32 inverse depth -> (H, W, 3) uint8 BGR, ``low`` dark and ``high`` (near) bright."""
    span = max(high - low, 1e-6)
    scaled = depth - low  # a new array: scaling and clipping it in place leaves ``depth`` alone
    scaled *= 255.0 / span
    grey = np.clip(scaled, 0.0, 255.0, out=scaled).astype(np.uint8)
    # applyColorMap builds its colour table on every call; the same table built once and applied with LUT gives
    # the same pixels in under a third of the time.
    return cv2.LUT(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), _colour_table(colormap))


def output_size(source_size: tuple[int, int], height: int) -> tuple[int, int]:
    """(width, height) of a heatmap ``height`` pixels high with the camera's (not the model's) aspect ratio."""
    src_w, src_h = source_size
    return max(1, round(height * src_w / src_h)), height


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


class HeatmapRenderer:
    """Per camera: keeps the smoothed colour range and renders JPEG heatmaps on demand."""

    def __init__(self, cfg: HeatmapConfig) -> None:
        self._cfg = cfg
        self._colormap = COLORMAPS[cfg.colormap]
        self.range = SmoothedRange(cfg.range_time_constant_s)

    def observe(self, depth: np.ndarray, t: float, stats: GridStats | None = None) -> None:
        """Track the colour range; called for every frame so the filter sees the scene's real pace.
        ``stats``: ``grid_stats(depth)`` when the caller has it already."""
        self.range.update(depth, t, stats)

    def render(self, depth: np.ndarray, source_size: tuple[int, int]) -> np.ndarray:
        """(H, W) float32 inverse depth -> (height, width, 3) uint8 BGR at the configured size."""
        colour = colorize(depth, self.range.low, self.range.high, self._colormap)
        size = output_size(source_size, self._cfg.height)
        return cv2.resize(colour, size, interpolation=cv2.INTER_LINEAR)

    def jpeg(self, depth: np.ndarray, source_size: tuple[int, int]) -> bytes:
        """:meth:`render` as JPEG bytes at the configured quality."""
        return encode_jpeg(self.render(depth, source_size), self._cfg.jpeg_quality)
