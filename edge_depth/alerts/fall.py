"""Fall detection on tracked foreground regions (baseline mode).

Each frame, the connected regions of foreground (pixels clearly nearer than the baseline, outside
exclusions) are measured on a 4x subsampled grid: bounding box, centroid, area, aspect ratio (width / height
in pixels) and *top gap*, how much nearer than the empty scene the region's top rows are (baseline-range
units). Regions are *tracked*: each track continues with the region that best overlaps its last box within
one body length (a falling person lands within their own length of where they stood); a region that splits
off inside a track's reach inherits that track's history; others start tracks of their own, so a passer-by
never reads as a drop of someone else. A fall is, on one track:

1. a *drop*: within ``drop_window_s``, the track's top edge came down from its highest point (the
   *standing* region, whatever its posture: standing or sitting on a chair) by at least ``min_drop`` of
   the standing height, its centroid by ``min_centroid_drop``, and the top fell at ``min_drop_speed``
   standing heights per second or faster over the fastest 0.5 s of the drop (measured over the drop
   itself: a slow lean before it does not count against it);
2. ending *down*: at most ``max_lying_height`` of the standing height and one of: lying shape (aspect
   >= ``lying_aspect``), very low (height <= ``low_height`` x standing, a body lying along the line of
   sight, whose outline is about as tall as wide), or *near the floor* in depth (top gap <= ``floor_gap`` x
   the standing region's top gap: a standing head stands out from the far wall or floor behind it, a head
   on the floor does not);
3. *staying down* for ``confirm_s``, seen down in the confirming frame. Once down, the track stays down
   until clearly not (looser thresholds by a factor 0.8), until something is standing again where the
   person stood (a region reaching the upper half of the standing box: the body had only split), or until
   the track is lost for more than 1.5 s.

What does not qualify: bending over, crouching and sitting end taller than wide, above a third of the
standing height and with the head still standing out from what is behind it; sitting down on purpose and
lying down on purpose are slow; walking past moves sideways without a drop. A confirmed fall *latches*: it
ends only when the track is upright again (aspect <= ``upright_aspect`` and at least 70 % of the standing
height) for ``rise_s``, or when the alert is acknowledged.

What the detector cannot see: a body that is not nearer than the baseline by the foreground threshold
(someone lying on a low mattress or a thick rug is barely nearer than it; someone lying where they had lain
while the baseline was learned is part of the empty scene), a fall hidden behind furniture, and a fall that
ends outside the view. The depth test needs the standing person to stand out from what is behind them: far
from the camera, near a wall, it is not used and the shape tests decide alone.

:class:`FallAlerts` is the alert kind: it runs the detector on each judged frame and turns its verdicts into
one alert lifecycle per fall (``new`` when confirmed, ``update`` reminders every ``update_interval_s`` while
latched, ``end`` when risen or acknowledged), reported as zone ``fall``; every fall event carries the
:class:`~edge_depth.alerts.events.FallEvidence` of its drop. While a fall is latched, the baseline does not
adapt in the fallen region's box (grown by 5 % of the image), so a person lying still is never learned as
part of the empty room.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

import cv2
import numpy as np

from edge_depth.alerts.events import AlertEvent, EventType, FallEvidence, OpenAlert, Origin, Stats
from edge_depth.alerts.kinds import Entity, FrameView, Step
from edge_depth.alerts.reference import Measure, Reference, nearest
from edge_depth.alerts.zones import ZoneMasks
from edge_depth.config.alerts import FALL_ZONE, CameraAlertsConfig, FallConfig
from edge_depth.depthstats import GRID_STRIDE, grid, median_of

_STAY_DOWN_FACTOR = 0.8  # hysteresis: once down, every "down" threshold is 1 / 0.8 looser
_RISEN_HEIGHT = 0.7
_KERNEL = np.ones((3, 3), np.uint8)
_NEAREST_FRACTION = 0.05  # "nearest" = 5th percentile of the region's distances
_FREEZE_MARGIN = 0.05  # a latched fall freezes the baseline in its box grown by 5 % of the image
_TOP_ROWS = 0.2  # the top gap is measured on the top fifth of a region's rows
_SPEED_SPAN_S = 0.5  # drop speed: fastest descent of the top over this long (or the whole drop if shorter)
_TRACK_LOST_S = 2.0  # a track unseen this long is forgotten (not the one that is down or latched)
_DOWN_LOST_S = 1.5  # a down track unseen this long is no longer down: "down" needs evidence
_REACH_ABOVE = 0.25  # a track's reach: its box grown by this x its height upwards ...
_REACH = 1.0  # ... and by its height (one body length) down and to the sides
_MIN_STANDING_GAP = 0.16  # the depth test needs a standing top at least 2 x the default foreground nearer

log = logging.getLogger(__name__)

FALL_ENTITY = Entity("binary_sensor", FALL_ZONE, "Fall", FALL_ZONE, "safety")
"""The fall binary sensor (device class ``safety``: ON = unsafe), showing zone ``fall``'s retained state."""

FallChange = Literal["fallen", "risen"]

_MIN_SAMPLES = 2  # a speed needs two positions


@dataclass(frozen=True, slots=True)
class Region:
    """A foreground region. Coordinates normalised (0..1, y down); ``area``: fraction of the image;
    ``aspect``: width / height in pixels; ``labels``: the (h, w) int32 label grid of its frame on the 4x grid,
    where its cells are ``label``; ``score``: the frame's (h, w) float32 scores on that grid (how much nearer
    than the baseline, baseline-range units), None when unmeasured.
    """

    top: float
    bottom: float
    left: float
    right: float
    cx: float
    cy: float
    area: float
    aspect: float
    labels: np.ndarray = field(compare=False, repr=False)
    label: int = 1
    score: np.ndarray | None = field(default=None, compare=False, repr=False)
    _top_gap: float | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def cells(self) -> np.ndarray:
        """(N, 2) int32 (row, column) of its cells on the 4x grid, row-major. Found when asked for: only the
        region of a confirmed fall needs them, and finding them for every region of every frame costs more."""
        return np.argwhere(self.labels == self.label).astype(np.int32)

    @property
    def top_gap(self) -> float:
        """Median score of its cells in the top fifth of its rows (at least one row); NaN without a score or
        without a finite score there. Measured when first asked for: a frame's regions are many, and only the
        few that a fall check compares with their standing height need it."""
        gap = self._top_gap
        if gap is None:
            gap = self._measure_top_gap()
            object.__setattr__(self, "_top_gap", gap)  # a cache: the region's value does not change
        return gap

    def _measure_top_gap(self) -> float:
        if self.score is None:
            return math.nan
        rows = self.labels.shape[0]
        first, last = round(self.top * rows), round(self.bottom * rows)
        band = slice(first, first + max(1, round(_TOP_ROWS * (last - first))))
        values = self.score[band][self.labels[band] == self.label]
        values = values[np.isfinite(values)]
        return float(median_of(values)) if values.size else math.nan

    def overlaps(self, top: float, bottom: float, left: float, right: float) -> bool:
        """Its box intersects the box (top, bottom, left, right), normalised."""
        return self.top < bottom and top < self.bottom and self.left < right and left < self.right

    def iou(self, other: Region) -> float:
        """Intersection over union of the two boxes (0..1)."""
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        w = min(self.right, other.right) - max(self.left, other.left)
        inter = max(h, 0.0) * max(w, 0.0)
        union = self.height * (self.right - self.left) + other.height * (other.right - other.left) - inter
        return inter / union if union > 0 else 0.0

    def in_reach(self, other: Region) -> bool:
        """``other`` lies within this region's reach: its box grown by one body length down and sideways."""
        h = self.height
        top = self.top - _REACH_ABOVE * h
        return other.overlaps(top, self.bottom + _REACH * h, self.left - _REACH * h, self.right + _REACH * h)


def regions(foreground: np.ndarray, min_area: float, score: np.ndarray | None = None) -> list[Region]:
    """The 8-connected regions of an (h, w) bool grid after a 3x3 opening, of at least ``min_area`` of the
    grid, largest first. ``score``: (h, w) float32 scores on the same grid, for the regions' ``top_gap``
    (copied: the regions keep it)."""
    opened = cv2.morphologyEx(foreground.astype(np.uint8), cv2.MORPH_OPEN, _KERNEL)
    _, labels, stats, centroids = cv2.connectedComponentsWithStats(opened, connectivity=8)
    gh, gw = opened.shape
    kept = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_area * gh * gw) + 1
    if not kept.size:
        return []
    scores = None if score is None else score.copy()
    found = [
        Region(
            top=y / gh,
            bottom=(y + h) / gh,
            left=x / gw,
            right=(x + w) / gw,
            cx=(cx + 0.5) / gw,
            cy=(cy + 0.5) / gh,
            area=area / (gh * gw),
            aspect=w / h,
            labels=labels,
            label=label,
            score=scores,
        )
        for label, (x, y, w, h, area), (cx, cy) in zip(
            kept.tolist(), stats[kept].tolist(), centroids[kept].tolist(), strict=True
        )
    ]
    found.sort(key=lambda r: -r.area)
    return found


def main_region(foreground: np.ndarray, min_area: float) -> Region | None:
    """The largest region of an (h, w) bool grid (see :func:`regions`); None when none is large enough."""
    found = regions(foreground, min_area)
    return found[0] if found else None


class _Track:
    """One region followed across frames: its recent (monotonic s, region) history, when it was last seen, and
    the highest point of that history, kept as the history moves (at a file's full speed the history holds
    hundreds of frames, and every frame asks for its highest point)."""

    __slots__ = ("_highs", "history", "last_seen")

    def __init__(self, history: Iterable[tuple[float, Region]], t: float) -> None:
        self.history: deque[tuple[float, Region]] = deque()
        self.last_seen = t
        # Candidates for the highest point: tops strictly rising from the front, so the front is the earliest of
        # the highest (what ``min`` over the history by top would give).
        self._highs: deque[tuple[float, Region]] = deque()
        for item in history:
            self.add(item)

    @property
    def region(self) -> Region:
        return self.history[-1][1]

    @property
    def highest(self) -> tuple[float, Region]:
        """The (monotonic s, region) of the history with the smallest top, the earliest of equals."""
        return self._highs[0]

    def add(self, item: tuple[float, Region]) -> None:
        """Append a (monotonic s, region) seen after every item of the history."""
        top = item[1].top
        while self._highs and self._highs[-1][1].top > top:
            self._highs.pop()
        self._highs.append(item)
        self.history.append(item)

    def forget_before(self, horizon: float) -> None:
        """Drop the items older than monotonic ``horizon`` (s), always keeping the latest."""
        history, highs = self.history, self._highs
        while len(history) > 1 and history[0][0] < horizon:
            if highs[0] is history.popleft():
                highs.popleft()


@dataclass(frozen=True, slots=True)
class _Drop:
    """A track's drop to the floor, as first seen down: the standing region and the measured evidence."""

    standing: Region
    speed: float  # standing heights / s
    drop: float  # fraction of the standing height
    aspect: float
    height: float  # fraction of the standing height
    floor_gap: float | None


class FallDetector:
    """Per-camera fall state: watching -> down -> latched, over tracked regions. Feed :meth:`update` every
    usable frame with all its regions."""

    def __init__(self, cfg: FallConfig) -> None:
        self._cfg = cfg
        self._tracks: dict[int, _Track] = {}
        self._next_id = 0
        self._state: Literal["watching", "down", "latched"] = "watching"
        self._focus: int | None = None  # the track that is down or latched
        self._drop: _Drop | None = None
        self._since = 0.0
        self._standing_height = 0.0
        self._rise_since: float | None = None
        self._seen: dict[int, Region] = {}

    @property
    def latched(self) -> bool:
        return self._state == "latched"

    @property
    def fell_at(self) -> float:
        """Monotonic time (s) the current or last fall reached the floor."""
        return self._since

    @property
    def standing_height(self) -> float:
        """Height (image heights) of the region the current or last fall started from."""
        return self._standing_height

    @property
    def seen_focus(self) -> bool:
        """The fall that is down or latched was seen in the last frame."""
        return self._focus is not None and self._focus in self._seen

    @property
    def tracked(self) -> Region | None:
        """The region of the fall that is down or latched, as last seen; None without one."""
        track = None if self._focus is None else self._tracks.get(self._focus)
        return None if track is None else track.region

    def evidence(self, t: float) -> FallEvidence | None:
        """What was measured on the current fall, with its time down at monotonic ``t`` (s)."""
        drop = self._drop
        if drop is None:
            return None
        return FallEvidence(
            drop.speed, drop.drop, drop.aspect, drop.height, drop.floor_gap, self._standing_height, t - self._since
        )

    def latch(self, standing_height: float) -> None:
        """Latched on a fall confirmed in an earlier run, by someone ``standing_height`` tall (image heights)."""
        self.clear()
        self._state, self._standing_height = "latched", standing_height

    def clear(self) -> None:
        """Back to watching with no history (after an acknowledgement)."""
        self._state = "watching"
        self._tracks.clear()
        self._focus = None
        self._drop = None
        self._rise_since = None

    def update(self, t: float, found: Sequence[Region]) -> FallChange | None:
        """Advance to monotonic time ``t`` (s) with this frame's regions; report a confirmed fall or rise."""
        self._seen = self._associate(t, found)
        if self._state == "watching":
            for key, region in self._seen.items():
                drop = self._onset(t, self._tracks[key], region)
                if drop is not None:
                    self._state, self._focus, self._drop, self._since = "down", key, drop, t
                    self._standing_height = drop.standing.height
                    break
        elif self._state == "down":
            return self._confirm(t)
        else:
            return self._rise(t)
        return None

    def _confirm(self, t: float) -> FallChange | None:
        assert self._focus is not None and self._drop is not None
        region = self._seen.get(self._focus)
        track = self._tracks[self._focus]
        standing = self._drop.standing
        lost = region is None and t - track.last_seen > _DOWN_LOST_S
        if (
            lost
            or self._standing_again(standing, region)
            or (region is not None and not self._still_down(region, standing))
        ):
            self._state, self._focus, self._drop = "watching", None, None
            return None
        if region is not None and t - self._since >= self._cfg.confirm_s:
            self._state = "latched"
            self._rise_since = None
            return "fallen"
        return None

    def _rise(self, t: float) -> FallChange | None:
        if self._focus is None and self._seen:
            self._focus = max(self._seen, key=lambda key: self._seen[key].area)  # restored: the largest region
        region = None if self._focus is None else self._seen.get(self._focus)
        if region is None:
            return None  # a lost region is no evidence either way
        if self._upright_again(region):
            self._rise_since = t if self._rise_since is None else self._rise_since
            if t - self._rise_since >= self._cfg.rise_s:
                self.clear()
                return "risen"
        else:
            self._rise_since = None
        return None

    def _associate(self, t: float, found: Sequence[Region]) -> dict[int, Region]:
        """Continue each track with this frame's best region in its reach; returns track id -> region seen."""
        seen: dict[int, Region] = {}
        taken: set[int] = set()
        keys = list(self._tracks)
        for key, i in self._pairs(keys, found):
            if key in seen or i in taken:
                continue
            seen[key] = found[i]
            taken.add(i)
            if len(seen) == len(keys) or len(taken) == len(found):
                break
        parents = dict(self._tracks)
        for key, region in seen.items():
            track = self._tracks[key]
            track.add((t, region))
            track.last_seen = t
        for i, region in enumerate(found):
            if i in taken:
                continue
            # A region split off a tracked one (a body seen in two parts) continues its history.
            reach = [(-region.iou(p.region), k) for k, p in parents.items() if p.region.in_reach(region)]
            inherited = [] if not reach else [item for item in parents[min(reach)[1]].history if item[0] < t]
            self._tracks[self._next_id] = _Track([*inherited, (t, region)], t)
            seen[self._next_id] = region
            self._next_id += 1
        horizon = t - self._cfg.drop_window_s
        for key in list(self._tracks):
            track = self._tracks[key]
            if key != self._focus and t - track.last_seen > _TRACK_LOST_S:
                del self._tracks[key]
                continue
            track.forget_before(horizon)
        return seen

    def _pairs(self, keys: list[int], found: Sequence[Region]) -> list[tuple[int, int]]:
        """(track id, index in ``found``) of every region in a track's reach, best first: the down or latched
        track first (it is the one a fall depends on), then by overlap (IoU) with the track's last box, by
        centroid distance, by track id and by index. The same arithmetic as :meth:`Region.in_reach` and
        :meth:`Region.iou`, on every pair at once: a cluttered scene has dozens of tracks and regions."""
        if not keys or not found:
            return []
        last = np.array([_box(self._tracks[key].region) for key in keys]).T[:, :, np.newaxis]  # (6, T, 1)
        new = np.array([_box(region) for region in found]).T[:, np.newaxis, :]  # (6, 1, R)
        (top, bottom, left, right, cx, cy), (n_top, n_bottom, n_left, n_right, n_cx, n_cy) = last, new
        height = bottom - top
        reach = (
            (n_top < bottom + _REACH * height)
            & (top - _REACH_ABOVE * height < n_bottom)
            & (n_left < right + _REACH * height)
            & (left - _REACH * height < n_right)
        )
        track, index = np.nonzero(reach)
        if not track.size:
            return []
        inter = np.maximum(np.minimum(n_bottom, bottom) - np.maximum(n_top, top), 0.0) * np.maximum(
            np.minimum(n_right, right) - np.maximum(n_left, left), 0.0
        )
        union = (n_bottom - n_top) * (n_right - n_left) + height * (right - left) - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)[track, index]
        distance = np.hypot(n_cx - cx, n_cy - cy)[track, index]
        ids = np.array(keys)[track]
        order = np.lexsort((index, ids, distance, -iou, ids != self._focus))
        return list(zip(ids[order].tolist(), index[order].tolist(), strict=True))

    def _onset(self, t: float, track: _Track, region: Region) -> _Drop | None:
        cfg = self._cfg
        start, standing = track.highest  # the history holds exactly the drop window (see _associate)
        height = standing.height
        if height <= 0 or not self._down(region, standing, 1.0):
            return None
        drop = (region.top - standing.top) / height
        if drop < cfg.min_drop or region.cy - standing.cy < cfg.min_centroid_drop * height:
            return None
        if self._standing_again(standing, region):
            return None
        speed = _drop_speed([(ts, r.top) for ts, r in track.history if ts >= start]) / height
        if speed < cfg.min_drop_speed:
            return None
        return _Drop(standing, speed, drop, region.aspect, region.height / height, _floor_gap(region, standing))

    def _down(self, region: Region, standing: Region, looser: float) -> bool:
        """``region`` is down relative to ``standing``; ``looser`` > 1 widens every threshold (hysteresis)."""
        cfg = self._cfg
        height = region.height / standing.height
        if height > cfg.max_lying_height * looser:
            return False
        if region.aspect >= cfg.lying_aspect / looser or height <= cfg.low_height * looser:
            return True
        gap = _floor_gap(region, standing)
        return gap is not None and gap <= cfg.floor_gap * looser

    def _still_down(self, region: Region, standing: Region) -> bool:
        """Down with looser thresholds, or lying-shaped and still lower than the standing region: the outline
        of a body settling on the floor grows and shrinks as its parts join and split."""
        lying = region.aspect >= self._cfg.lying_aspect and region.height < standing.height
        return lying or self._down(region, standing, 1 / _STAY_DOWN_FACTOR)

    def _standing_again(self, standing: Region, region: Region | None) -> bool:
        """Another region of this frame reaches the upper half of where the person stood: the body had only
        split in two (legs and torso), or someone is standing there."""
        top, bottom = standing.top, standing.top + standing.height / 2
        return any(
            other is not region
            and other.top < bottom
            and other.overlaps(top, standing.bottom, standing.left, standing.right)
            for other in self._seen.values()
        )

    def _upright_again(self, region: Region) -> bool:
        tall = region.height >= _RISEN_HEIGHT * self._standing_height
        return region.aspect <= self._cfg.upright_aspect and tall


def _drop_speed(tops: Sequence[tuple[float, float]]) -> float:
    """Fastest descent (image heights / s) of a top edge given as (monotonic s, top) in time order: over the
    fastest ``_SPEED_SPAN_S`` (spans of at least half that), or over the whole drop when it is shorter."""
    if len(tops) < _MIN_SAMPLES:
        return 0.0
    (t0, top0), (t1, top1) = tops[0], tops[-1]
    if t1 - t0 <= _SPEED_SPAN_S:
        return (top1 - top0) / max(t1 - t0, 1e-3)
    # Every pair at once: a drop seen at a file's full speed has hundreds of samples.
    times, heights = np.array(tops).T
    span = times[np.newaxis, :] - times[:, np.newaxis]  # [i, j]: from sample i to a later sample j
    pairs = np.triu(span >= _SPEED_SPAN_S / 2, k=1) & (span <= _SPEED_SPAN_S + 1e-6)
    if not pairs.any():
        return 0.0
    rates = (heights[np.newaxis, :] - heights[:, np.newaxis])[pairs] / span[pairs]
    return max(0.0, float(rates.max()))


def _box(region: Region) -> tuple[float, float, float, float, float, float]:
    return region.top, region.bottom, region.left, region.right, region.cx, region.cy


def _floor_gap(region: Region, standing: Region) -> float | None:
    """The region's top gap as a fraction of the standing region's (1 = its top stands out from what is behind
    it as the standing head did, 0 = as the floor does); None when the standing top hardly stood out."""
    if not standing.top_gap >= _MIN_STANDING_GAP or not math.isfinite(region.top_gap):
        return None
    return max(region.top_gap, 0.0) / standing.top_gap


class FallAlerts:
    """Fall alerts of one camera (``fall`` of its alert config); an :class:`~edge_depth.alerts.kinds.AlertKind`.

    With ``fall.enabled`` false it detects nothing, publishes no state and announces no entity.

    A latched fall outlives a restart (:class:`~edge_depth.alerts.kinds.KeepsState`): it is saved at a clean
    stop and latched again at the next start, with the same id, until the person rises or it is acknowledged.
    """

    state_key = FALL_ZONE

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
        self._restored_box: tuple[float, float, float, float] | None = None  # frozen once a frame gives the shape
        self._restored_down_s: float | None = None  # time down saved with a latched fall, counted on from there
        self._down_since = 0.0  # monotonic s (this run's clock) the latched fall went down

    def step(self, frame: FrameView) -> Step:
        earlier, self._earlier = tuple(self._earlier), []
        self._last_seq = frame.seq
        if self._restored_box is not None and self._alert is not None:
            x0, y0, x1, y1 = self._restored_box
            box = Region(y0, y1, x0, x1, (x0 + x1) / 2, (y0 + y1) / 2, 0.0, 1.0, np.zeros((0, 0), np.int32))
            self._frozen = _box_mask(box, frame.masks.shape)
        self._restored_box = None
        if self._restored_down_s is not None:
            self._down_since = frame.t - self._restored_down_s
            self._restored_down_s = None
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
        return () if self._detector is None else (FALL_ENTITY,)

    def save_state(self) -> dict[str, Any] | None:
        """The latched fall (its alert, last stats and the standing height), or None when none is latched."""
        alert, detector = self._alert, self._detector
        if alert is None or detector is None:
            return None
        stats = alert.stats
        return {
            "id": alert.id,
            "start": alert.start,
            "last_seen": alert.last_seen,
            "acknowledged": alert.acknowledged,
            "nearest": stats.nearest,
            "fraction": stats.fraction,
            "bbox": stats.bbox,
            "centroid": stats.centroid,
            "standing_height": detector.standing_height,
            "evidence": None if alert.evidence is None else asdict(alert.evidence),
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Latch the fall saved by :meth:`save_state`; an ``update`` reminder follows the first judged frame."""
        if self._detector is None:
            return  # fall detection was turned off since: nothing to keep latched
        try:
            x0, y0, x1, y1 = map(float, state["bbox"])
            cx, cy = map(float, state["centroid"])
            nearest_ = None if state["nearest"] is None else float(state["nearest"])
            bbox = (x0, y0, x1, y1)
            stats = Stats(nearest_, float(state["fraction"]), bbox, (cx, cy))
            alert = OpenAlert(str(state["id"]), float(state["start"]), float(state["last_seen"]), stats)
            alert.acknowledged = bool(state["acknowledged"])
            standing = float(state["standing_height"])
            alert.evidence = _restored_evidence(state.get("evidence"))
            self._restored_down_s = None if alert.evidence is None else alert.evidence.down_s
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("%s: ignoring the saved fall: %r", self._origin.camera, exc)
            return
        self._detector.latch(standing)
        self._alert = alert
        self._last_event = -math.inf
        self._restored_box = bbox

    def _advance(self, detector: FallDetector, frame: FrameView) -> tuple[tuple[AlertEvent, ...], tuple[str, ...]]:
        measure = frame.measure
        if measure is None or measure.foreground is None:
            return (), ()
        cfg, t, wall = self._cfg, frame.t, frame.wall
        foreground = grid(measure.foreground) & frame.masks.grid_allowed
        change = detector.update(t, regions(foreground, cfg.min_region_area, grid(measure.score)))
        region = detector.tracked
        alert = self._alert
        if change == "fallen" and region is not None:
            start = wall - (t - detector.fell_at)
            stats = self._stats(region, measure, frame.masks)
            alert = self._alert = OpenAlert(self._origin.alert_id(FALL_ZONE, start), start, wall, stats)
            alert.evidence = detector.evidence(t)
            self._down_since = detector.fell_at
            self._last_event = t
            self._frozen = _box_mask(region, frame.masks.shape)
            return (self._event("new", alert, frame.seq),), (FALL_ZONE,) if cfg.snapshot else ()
        if alert is None:
            return (), ()
        if region is not None and detector.seen_focus:
            alert.last_seen = wall
        evidence = detector.evidence(t)
        if evidence is not None:
            alert.evidence = evidence  # the same drop, with the time down so far
        elif alert.evidence is not None:
            alert.evidence = replace(alert.evidence, down_s=t - self._down_since)
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


def _restored_evidence(saved: object) -> FallEvidence | None:
    """The ``FallEvidence`` of a saved fall; None when the state file has none (written by an older version).

    Raises TypeError or ValueError when it is malformed."""
    if saved is None:
        return None
    if not isinstance(saved, Mapping):
        raise TypeError(f"evidence is {type(saved).__name__}, not a mapping")
    values = {f.name: saved[f.name] for f in fields(FallEvidence)}
    gap = values.pop("floor_gap")
    return FallEvidence(**{k: float(v) for k, v in values.items()}, floor_gap=None if gap is None else float(gap))


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
