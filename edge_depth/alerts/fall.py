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

:class:`FallAlerts` is the alert kind: it runs the detector on each judged frame and turns its verdicts into
one alert lifecycle per fall (``new`` when confirmed, ``update`` reminders every ``update_interval_s`` while
latched, ``end`` when risen or acknowledged), reported as zone ``fall``. While a fall is latched, the
baseline does not adapt in the fallen region's box (grown by 5 % of the image), so a person lying still is
never learned as part of the empty room.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from edge_depth.alerts.events import AlertEvent, EventType, OpenAlert, Origin, Stats
from edge_depth.alerts.kinds import Entity, FrameView, Step
from edge_depth.alerts.reference import Measure, Reference, nearest
from edge_depth.alerts.zones import ZoneMasks
from edge_depth.config.alerts import FALL_ZONE, CameraAlertsConfig, FallConfig
from edge_depth.depthstats import GRID_STRIDE, grid

_STAND_TOLERANCE = 0.1  # the drop starts when the top leaves the standing top by 10 % of the standing height
_STAY_DOWN_FACTOR = 0.8  # hysteresis: once down, a region stays down while its aspect >= 0.8 x lying_aspect
_RISEN_HEIGHT = 0.7
_KERNEL = np.ones((3, 3), np.uint8)
_NEAREST_FRACTION = 0.05  # "nearest" = 5th percentile of the region's distances
_FREEZE_MARGIN = 0.05  # a latched fall freezes the baseline in its box grown by 5 % of the image

FALL_ENTITY = Entity("binary_sensor", FALL_ZONE, "Fall", FALL_ZONE, "safety")
"""The fall binary sensor (device class ``safety``: ON = unsafe), showing zone ``fall``'s retained state."""

FallChange = Literal["fallen", "risen"]


@dataclass(frozen=True, slots=True)
class Region:
    """The main foreground region. Coordinates normalised (0..1, y down); ``area``: fraction of the image;
    ``aspect``: width / height in pixels; ``cells``: (N, 2) int32 (row, column) of its cells on the 4x grid.
    """

    top: float
    bottom: float
    left: float
    right: float
    cx: float
    cy: float
    area: float
    aspect: float
    cells: np.ndarray = field(compare=False, repr=False)

    @property
    def height(self) -> float:
        return self.bottom - self.top


def main_region(foreground: np.ndarray, min_area: float) -> Region | None:
    """The largest 8-connected region of an (h, w) bool grid, after a 3x3 opening; None when too small."""
    opened = cv2.morphologyEx(foreground.astype(np.uint8), cv2.MORPH_OPEN, _KERNEL)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if count < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[best])
    gh, gw = opened.shape
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
        cells=np.argwhere(labels == best).astype(np.int32),
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


class FallAlerts:
    """Fall alerts of one camera (``fall`` of its alert config); an :class:`~edge_depth.alerts.kinds.AlertKind`.

    With ``fall.enabled`` false it detects nothing and publishes no state, but still announces its entity, so
    every camera has the same Home Assistant entities whatever its fall setting.
    """

    def __init__(self, cfg: CameraAlertsConfig, reference: Reference, origin: Origin) -> None:
        self._cfg = cfg.fall
        self._detector = FallDetector(cfg.fall) if cfg.fall.enabled else None
        self._reference = reference
        self._origin = origin
        self._alert: OpenAlert | None = None
        self._last_event = 0.0  # monotonic s of the last new/update
        self._frozen: np.ndarray | None = None
        self._earlier: list[AlertEvent] = []
        self._last_seq = 0

    def step(self, frame: FrameView) -> Step:
        earlier, self._earlier = tuple(self._earlier), []
        self._last_seq = frame.seq
        detector = self._detector
        if detector is None:
            return Step(earlier=earlier)
        if frame.rebased and not detector.latched:
            detector.clear()  # its history was measured against the old baseline; a latched fall stays latched
        events, snapshots = self._advance(detector, frame)
        return Step(events, snapshots, earlier, self._frozen)

    def states(self) -> dict[str, bool]:
        return {} if self._detector is None else {FALL_ZONE: self._alert is not None}

    def acknowledge(self, event_id: str) -> bool:
        """Clear the latched fall ``event_id``: its ``end`` (reason ``acknowledged``) comes with the next frame."""
        alert = self._alert
        if alert is None or alert.id != event_id or self._detector is None:
            return False
        alert.acknowledged = True
        self._earlier.append(self._event("end", alert, self._last_seq, reason="acknowledged"))
        self._detector.clear()
        self._alert = None
        self._frozen = None
        return True

    def entities(self) -> tuple[Entity, ...]:
        return (FALL_ENTITY,)

    def _advance(self, detector: FallDetector, frame: FrameView) -> tuple[tuple[AlertEvent, ...], tuple[str, ...]]:
        measure = frame.measure
        if measure is None or measure.foreground is None:
            return (), ()
        cfg, t, wall = self._cfg, frame.t, frame.wall
        region = main_region(grid(measure.foreground) & frame.masks.grid_allowed, cfg.min_region_area)
        change = detector.update(t, region)
        alert = self._alert
        if change == "fallen" and region is not None:
            start = wall - (t - detector.fell_at)
            stats = self._stats(region, measure, frame.masks)
            alert = self._alert = OpenAlert(self._origin.alert_id(FALL_ZONE, start), start, wall, stats)
            self._last_event = t
            self._frozen = _box_mask(region, frame.masks.shape)
            return (self._event("new", alert, frame.seq),), (FALL_ZONE,) if cfg.snapshot else ()
        if alert is None:
            return (), ()
        if region is not None:
            alert.last_seen = wall
        if change == "risen":
            self._alert = None
            self._frozen = None
            return (self._event("end", alert, frame.seq, reason="risen"),), ()
        if t - self._last_event >= cfg.update_interval_s:
            self._last_event = t
            return (self._event("update", alert, frame.seq),), ()
        return (), ()

    def _stats(self, region: Region, measure: Measure, masks: ZoneMasks) -> Stats:
        width = masks.shape[1]
        flat = (region.cells[:, 0] * GRID_STRIDE * width + region.cells[:, 1] * GRID_STRIDE).astype(np.int64)
        distance = nearest(self._reference, measure.score.ravel()[flat], flat, _NEAREST_FRACTION)
        box = (region.left, region.top, region.right, region.bottom)
        return Stats(distance, region.area, box, (region.cx, region.cy))

    def _event(self, type_: EventType, alert: OpenAlert, seq: int, reason: str | None = None) -> AlertEvent:
        return self._origin.event(
            type_,
            alert,
            seq,
            kind="fall",
            zone=FALL_ZONE,
            severity=self._cfg.severity,
            reason=reason,
            latched=type_ != "end",
        )


def _box_mask(region: Region, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the region's box grown by a margin, where the baseline must not adapt."""
    height, width = shape
    mask = np.zeros(shape, bool)
    x0 = max(int((region.left - _FREEZE_MARGIN) * width), 0)
    x1 = min(math.ceil((region.right + _FREEZE_MARGIN) * width), width)
    y0 = max(int((region.top - _FREEZE_MARGIN) * height), 0)
    y1 = min(math.ceil((region.bottom + _FREEZE_MARGIN) * height), height)
    mask[y0:y1, x0:x1] = True
    return mask
