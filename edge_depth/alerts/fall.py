"""Fall detection on the main foreground region (baseline mode).

Each frame, the largest connected region of foreground (pixels clearly nearer than the baseline, outside
exclusions) is measured on a 4x subsampled grid: its bounding box, centroid, area and aspect ratio
(width / height in pixels). A fall is:

1. a *fast drop*: the region was upright (aspect <= ``upright_aspect``) within the last ``drop_window_s``,
   and its top edge has since dropped at ``min_drop_speed`` image heights per second or faster (measured
   from the last frame at which it still stood at its full height), with its centroid lower by at least
   ``min_centroid_drop`` of the standing height;
2. ending *low and wide*: aspect >= ``lying_aspect`` and height <= ``max_lying_height`` x standing height;
3. *staying down* for ``confirm_s``.

What does not qualify: bending over, crouching and sitting end taller than wide (and sitting is slow);
walking past moves sideways without a drop. A confirmed fall *latches*: it ends only when the region is
upright again (aspect <= ``upright_aspect`` and at least 70 % of the standing height) for ``rise_s``,
or when the alert is acknowledged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from edge_depth.config.alerts import FallConfig

_STAND_TOLERANCE = 0.1  # the drop starts when the top leaves the standing top by 10 % of the standing height
_STAY_DOWN_FACTOR = 0.8  # hysteresis: once down, a region stays down while its aspect >= 0.8 x lying_aspect
_RISEN_HEIGHT = 0.7
_KERNEL = np.ones((3, 3), np.uint8)

FallChange = Literal["fallen", "risen"]


@dataclass(frozen=True, slots=True)
class Region:
    """The main foreground region. Coordinates normalised (0..1, y down); ``area``: fraction of the image;
    ``aspect``: width / height in pixels; ``grid``: (N, 2) int32 (row, column) of its cells on the 4x grid.
    """

    top: float
    bottom: float
    left: float
    right: float
    cx: float
    cy: float
    area: float
    aspect: float
    grid: np.ndarray = field(compare=False, repr=False)

    @property
    def height(self) -> float:
        return self.bottom - self.top


def main_region(foreground: np.ndarray, min_area: float) -> Region | None:
    """The largest 8-connected region of an (h, w) bool grid, after a 3x3 opening; None when too small."""
    grid = cv2.morphologyEx(foreground.astype(np.uint8), cv2.MORPH_OPEN, _KERNEL)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(grid, connectivity=8)
    if count < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[best])
    gh, gw = grid.shape
    if area < min_area * gh * gw:
        return None
    cx, cy = centroids[best]
    return Region(
        top=y / gh,
        bottom=(y + h) / gh,
        left=x / gw,
        right=(x + w) / gw,
        cx=(cx + 0.5) / gw,
        cy=(cy + 0.5) / gh,
        area=area / (gh * gw),
        aspect=w / h,
        grid=np.argwhere(labels == best).astype(np.int32),
    )


class FallDetector:
    """Per-camera fall state: watching -> down -> latched. Feed :meth:`update` every usable frame."""

    def __init__(self, cfg: FallConfig) -> None:
        self._cfg = cfg
        self._history: deque[tuple[float, Region]] = deque()
        self._state: Literal["watching", "down", "latched"] = "watching"
        self._since = 0.0
        self._standing_height = 0.0
        self._rise_since: float | None = None

    @property
    def latched(self) -> bool:
        return self._state == "latched"

    @property
    def fell_at(self) -> float:
        """Monotonic time (s) the current or last fall reached the floor."""
        return self._since

    def clear(self) -> None:
        """Back to watching with no history (after an acknowledgement)."""
        self._state = "watching"
        self._history.clear()
        self._rise_since = None

    def update(self, t: float, region: Region | None) -> FallChange | None:
        """Advance to monotonic time ``t`` (s) with this frame's main region; report a confirmed fall or rise."""
        if region is None:
            return None  # a lost region is no evidence either way
        if self._state == "watching":
            self._remember(t, region)
            if self._fast_drop_to_lying(t, region):
                self._state, self._since = "down", t
        elif self._state == "down":
            if not self._still_down(region):
                self._state = "watching"
                self._remember(t, region)
            elif t - self._since >= self._cfg.confirm_s:
                self._state = "latched"
                self._rise_since = None
                return "fallen"
        elif self._upright_again(region):
            self._rise_since = t if self._rise_since is None else self._rise_since
            if t - self._rise_since >= self._cfg.rise_s:
                self.clear()
                return "risen"
        else:
            self._rise_since = None
        return None

    def _remember(self, t: float, region: Region) -> None:
        self._history.append((t, region))
        horizon = t - self._cfg.drop_window_s
        while self._history and self._history[0][0] < horizon:
            self._history.popleft()

    def _fast_drop_to_lying(self, t: float, region: Region) -> bool:
        cfg = self._cfg
        if region.aspect < cfg.lying_aspect:
            return False
        upright = [(ts, r) for ts, r in self._history if r.aspect <= cfg.upright_aspect]
        if not upright:
            return False
        _, standing = max(upright, key=lambda item: item[1].height)
        still_standing = [ts for ts, r in self._history if r.top <= standing.top + _STAND_TOLERANCE * standing.height]
        drop_s = max(t - max(still_standing), 1e-3)
        if (region.top - standing.top) / drop_s < cfg.min_drop_speed:
            return False
        if region.cy - standing.cy < cfg.min_centroid_drop * standing.height:
            return False
        if region.height > cfg.max_lying_height * standing.height:
            return False
        self._standing_height = standing.height
        return True

    def _still_down(self, region: Region) -> bool:
        cfg = self._cfg
        low = region.height <= cfg.max_lying_height * self._standing_height / _STAY_DOWN_FACTOR
        return region.aspect >= cfg.lying_aspect * _STAY_DOWN_FACTOR and low

    def _upright_again(self, region: Region) -> bool:
        tall = region.height >= _RISEN_HEIGHT * self._standing_height
        return region.aspect <= self._cfg.upright_aspect and tall
