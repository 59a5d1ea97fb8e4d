"""Obstacle and fall alerts of one camera, from its depth frames.

:class:`CameraAlerts` is called once per :class:`~edge_depth.frames.DepthFrame`, in order, and returns an
:class:`AlertOutput`: the events to publish now, the zone states that changed, the depth health and the
nearest distance. All timing uses the frames' own timestamps (``captured_mono`` for durations,
``captured_wall`` for reported times), so a replayed recording gives the same events every time.

Alert events (JSON on ``<prefix>/<camera>/alert``, QoS 1, not retained), :meth:`AlertEvent.payload`:

==================== ===================================================================================
``id``               stable for the alert's whole lifecycle: ``<camera>-<zone>-<start in epoch ms>``
``type``             ``new`` (raised), ``update`` (still there; rate-limited), ``end`` (over)
``kind``             ``obstacle`` (a zone) or ``fall``
``camera``           camera name
``zone``             zone name; ``fall`` for falls
``severity``         ``info``, ``warning`` or ``critical`` (from the zone's or the fall's config)
``nearest``          nearest distance of the counted pixels (5th percentile), in ``unit``; null if unknown
``unit``             ``m`` (metric: metres), ``relative`` (0 = as near as the frame's nearest 2 %,
                     1 = as far as its farthest 2 %), ``baseline`` (0 = as near as the nearest 2 % of the
                     learned empty scene, 1 = as far as its farthest 2 %, negative = nearer than anything in it)
``occupied_fraction`` obstacle: fraction (0..1) of the zone's pixels that counted; fall: area of the fallen
                     region as a fraction of the image
``bbox``             [x0, y0, x1, y1] of the counted pixels / the region, normalised (0..1, y down)
``centroid``         [x, y] of the same, normalised
``start``            when the zone became occupied / the fall happened (ISO 8601 UTC, ms, ``Z``)
``last_seen``        last frame the zone was occupied / the fallen region was seen (ISO 8601 UTC)
``frame``            the frame's sequence number (``DepthFrame.seq``) this event was made from
``precision``        model precision (``fp32``, ``int8``, ...) as given by the daemon
``latched``          fall alerts: true until the person rises or the alert is acknowledged
``acknowledged``     an acknowledgement with this id was received
``reason``           ``end`` events: ``cleared`` (zone empty for hold_s), ``risen`` (fallen person upright
                     again) or ``acknowledged``; null otherwise
==================== ===================================================================================

``nearest``, ``occupied_fraction``, ``bbox`` and ``centroid`` are measured on the frame of each ``new`` and
``update``; an ``end`` repeats the last measured ones (the zone is empty by then) with a fresh ``last_seen``.

Zone states: ``ON``/``OFF`` per zone (retained on ``<prefix>/<camera>/<zone>/state``), ON from ``new`` to
``end``; the fall sensor is zone ``fall``, ON while a fall is latched.

Commands (raw MQTT payloads): :func:`parse_ack` (``{"id": "<event id>"}`` on ``<prefix>/<camera>/alert/ack``)
and :func:`parse_baseline_reset` (``{}`` on ``<prefix>/<camera>/baseline/reset``) raise ``ValueError`` with
a one-line reason for anything else.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from edge_depth.alerts.fall import FallDetector, Region, main_region
from edge_depth.alerts.health import DepthHealth, HealthMonitor
from edge_depth.alerts.reference import BaselineReference, Measure, Reference, make_reference
from edge_depth.alerts.zones import GRID_STRIDE, MaskCache, ZoneMasks, ZonePixels, ZoneSpec
from edge_depth.config.alerts import FALL_ZONE, CameraAlertsConfig, Severity, ZoneConfig
from edge_depth.frames import DepthFrame

log = logging.getLogger(__name__)

EventType = Literal["new", "update", "end"]
EventKind = Literal["obstacle", "fall"]

_NEAREST_PERCENTILE = 0.05  # "nearest" = 5th percentile of distances: one noisy pixel does not decide it
_FRAME_NEAREST_PERCENTILE = 0.01
_MAX_COMMAND_BYTES = 4096
_MAX_ID_CHARS = 200
_FREEZE_MARGIN = 0.05  # a latched fall freezes the baseline in its box grown by 5 % of the image


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert message; the fields are documented in the module docstring. Times are epoch seconds."""

    id: str
    type: EventType
    kind: EventKind
    camera: str
    zone: str
    severity: Severity
    nearest: float | None
    unit: str
    occupied_fraction: float
    bbox: tuple[float, float, float, float] | None
    centroid: tuple[float, float] | None
    start: float
    last_seen: float
    frame: int
    precision: str
    latched: bool
    acknowledged: bool
    reason: str | None = None

    def payload(self) -> dict[str, object]:
        """The JSON-ready dict published on ``<prefix>/<camera>/alert``."""
        return {
            "id": self.id,
            "type": self.type,
            "kind": self.kind,
            "camera": self.camera,
            "zone": self.zone,
            "severity": self.severity,
            "nearest": _rounded(self.nearest, 3),
            "unit": self.unit,
            "occupied_fraction": round(self.occupied_fraction, 4),
            "bbox": None if self.bbox is None else [round(v, 4) for v in self.bbox],
            "centroid": None if self.centroid is None else [round(v, 4) for v in self.centroid],
            "start": iso_utc(self.start),
            "last_seen": iso_utc(self.last_seen),
            "frame": self.frame,
            "precision": self.precision,
            "latched": self.latched,
            "acknowledged": self.acknowledged,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class AlertOutput:
    """What one frame produced.

    ``events``: to publish now, in order. ``zone_states``: (zone, ON?) for zones whose state changed this
    frame (every zone, and ``fall`` when enabled, on the first frame). ``health``: the depth health.
    ``nearest``: nearest distance (1st percentile) in the watched area (the union of the zones, or the whole
    image without zones; exclusions removed), in ``unit``; None when unknown. ``unit``: ``m``, ``relative``
    or ``baseline`` (see the module docstring). ``calibrated``: the reference could map this frame (metric:
    enough usable points; baseline: learned and aligned). ``snapshot_zones``: zones whose ``new`` event in
    ``events`` wants a heatmap snapshot.
    """

    events: tuple[AlertEvent, ...]
    zone_states: tuple[tuple[str, bool], ...]
    health: DepthHealth
    nearest: float | None
    unit: str
    calibrated: bool
    snapshot_zones: tuple[str, ...]


def iso_utc(epoch_s: float) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z``: ``2024-05-01T12:00:00.250Z``."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def _command_object(payload: bytes, what: str) -> dict[str, object]:
    if len(payload) > _MAX_COMMAND_BYTES:
        raise ValueError(f"{what}: payload of {len(payload)} bytes is larger than {_MAX_COMMAND_BYTES}")
    try:
        value = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: payload is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: payload must be a JSON object, got {type(value).__name__}")
    return value


def parse_ack(payload: bytes) -> str:
    """The event id of an acknowledgement ``{"id": "<event id>"}``; ValueError naming what is wrong."""
    obj = _command_object(payload, "ack")
    extra = sorted(set(obj) - {"id"})
    if extra:
        raise ValueError(f"ack: unknown key(s) {', '.join(map(repr, extra))}; expected only 'id'")
    event_id = obj.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise ValueError("ack: 'id' must be a non-empty string (the alert's id)")
    if len(event_id) > _MAX_ID_CHARS:
        raise ValueError(f"ack: 'id' is longer than {_MAX_ID_CHARS} characters")
    return event_id


def parse_baseline_reset(payload: bytes) -> None:
    """Validate a baseline-reset command: exactly the JSON object ``{}``; ValueError otherwise."""
    obj = _command_object(payload, "baseline reset")
    if obj:
        raise ValueError(f"baseline reset: expected {{}}, got key(s) {', '.join(map(repr, sorted(obj)))}")


@dataclass(frozen=True, slots=True)
class _Stats:
    nearest: float | None
    fraction: float
    bbox: tuple[float, float, float, float] | None
    centroid: tuple[float, float] | None


_NO_STATS = _Stats(None, 0.0, None, None)


@dataclass(slots=True)
class _OpenAlert:
    id: str
    start: float
    last_seen: float
    stats: _Stats
    acknowledged: bool = False


class _ZoneTracker:
    """One zone's state machine: idle -> pending -> active <-> holding -> cooldown -> idle."""

    def __init__(self, cfg: ZoneConfig, enter_score: float, exit_score: float) -> None:
        self.cfg = cfg
        self.enter_score = enter_score
        self.exit_score = exit_score
        self.state: Literal["idle", "pending", "active", "holding", "cooldown"] = "idle"
        self._since = 0.0  # pending: occupied since; holding: empty since; cooldown: until
        self._since_wall = 0.0
        self._last_event = 0.0
        self.alert: _OpenAlert | None = None

    @property
    def on(self) -> bool:
        return self.state in ("active", "holding")

    @property
    def threshold(self) -> float:
        return self.exit_score if self.on else self.enter_score

    def step(self, occupied: bool, t: float, wall: float) -> EventType | None:
        """Advance with this frame's verdict; the event type to emit, if any."""
        cfg = self.cfg
        if self.state == "cooldown":
            if t < self._since:
                return None
            self.state = "idle"
        if self.state == "idle":
            if not occupied:
                return None
            self.state, self._since, self._since_wall = "pending", t, wall
        if self.state == "pending":
            if not occupied:
                self.state = "idle"
                return None
            if t - self._since < cfg.min_duration_s:
                return None
            self.state, self._last_event = "active", t
            return "new"
        if occupied:
            self.state = "active"
            if t - self._last_event >= cfg.update_interval_s:
                self._last_event = t
                return "update"
            return None
        if self.state == "active":
            self.state, self._since = "holding", t
        if t - self._since >= cfg.hold_s:
            self.state, self._since = "cooldown", t + cfg.cooldown_s
            return "end"
        return None

    @property
    def occupied_since_wall(self) -> float:
        return self._since_wall


class CameraAlerts:
    """All alert logic of one camera. Thread-safe: :meth:`acknowledge` and :meth:`reset_baseline` may be
    called from another thread than :meth:`process`.
    """

    def __init__(
        self,
        camera: str,
        cfg: CameraAlertsConfig,
        *,
        precision: str = "unknown",
        state_dir: Path | None = None,
    ) -> None:
        self.camera = camera
        self._cfg = cfg
        self._precision = precision
        self.mode = cfg.reference.mode
        path = None if state_dir is None else state_dir / f"{camera}.baseline.npy"
        self._reference: Reference = make_reference(cfg.reference, path)
        self.unit = self._reference.unit
        self.zones = tuple(ZoneSpec(z.name, tuple(z.polygon)) for z in cfg.zones)
        self._masks = MaskCache(self.zones, [e.polygon for e in cfg.exclusions])
        self._trackers = []
        for zone in cfg.zones:
            enter, exit_ = cfg.thresholds(zone)
            scores = self._reference.threshold_score(enter), self._reference.threshold_score(exit_)
            self._trackers.append(_ZoneTracker(zone, *scores))
        self._health = HealthMonitor(cfg.health)
        self._fall = FallDetector(cfg.fall) if cfg.fall.enabled else None
        self._fall_alert: _OpenAlert | None = None
        self._fall_last_event = 0.0
        self._frozen: np.ndarray | None = None
        self._reported: dict[str, bool] = {}
        self._queued: list[AlertEvent] = []
        self._last_frame: tuple[int, float] = (0, 0.0)
        self._was_ready = self.baseline_ready
        self._lock = threading.Lock()

    # -- commands ---------------------------------------------------------------------------------

    def acknowledge(self, event_id: str) -> bool:
        """Acknowledge an open alert. A latched fall is cleared: its ``end`` (reason ``acknowledged``)
        comes out of the next :meth:`process`. An open obstacle alert is marked acknowledged in its
        next events. False when no open alert has this id.
        """
        with self._lock:
            fall = self._fall_alert
            if fall is not None and fall.id == event_id and self._fall is not None:
                fall.acknowledged = True
                seq, _ = self._last_frame
                self._queued.append(self._fall_event("end", fall, seq, reason="acknowledged"))
                self._fall.clear()
                self._fall_alert = None
                self._frozen = None
                return True
            for tracker in self._trackers:
                if tracker.alert is not None and tracker.alert.id == event_id:
                    tracker.alert.acknowledged = True
                    return True
            return False

    def reset_baseline(self) -> None:
        """Relearn the empty scene from the next frames (baseline mode; nothing in other modes).

        Whatever is in view while it learns (``learn_s``) becomes the empty scene: reset with the room empty.
        Zones keep their state and resume once the new baseline is ready.
        """
        with self._lock:
            if isinstance(self._reference, BaselineReference):
                self._reference.reset()
                if self._fall is not None and not self._fall.latched:
                    self._fall.clear()

    def save(self) -> None:
        """Persist the baseline to ``state_dir`` (baseline mode with a state_dir; else nothing)."""
        with self._lock:
            if isinstance(self._reference, BaselineReference):
                self._reference.save()

    @property
    def baseline_ready(self) -> bool:
        """Baseline mode: the empty scene is learned. Other modes: always True."""
        ref = self._reference
        return not isinstance(ref, BaselineReference) or ref.ready

    # -- per frame ----------------------------------------------------------------------------------

    def process(self, frame: DepthFrame) -> AlertOutput:
        """Evaluate one frame (call for every frame of this camera, in ``seq`` order)."""
        with self._lock:
            return self._process(frame)

    def _process(self, frame: DepthFrame) -> AlertOutput:
        t, wall = frame.captured_mono, frame.captured_wall
        self._last_frame = (frame.seq, wall)
        depth = frame.depth if frame.depth.dtype == np.float32 else frame.depth.astype(np.float32)
        health = self._health.update(frame.image, depth, t)
        masks = self._masks.get((depth.shape[0], depth.shape[1]))
        measure = self._reference.measure(depth, t) if health.frame_ok else None
        events, self._queued = self._queued, []
        snapshots: list[str] = []
        nearest = None
        if measure is not None:
            nearest = self._frame_nearest(measure, masks)
            if health.reliable:
                self._zones_step(measure, masks, frame, events, snapshots)
                self._fall_step(measure, masks, frame, events, snapshots)
            if isinstance(self._reference, BaselineReference):
                self._reference.adapt(measure.score, t, self._frozen)
        if self.baseline_ready != self._was_ready:
            self._was_ready = self.baseline_ready
            log.info("%s: baseline %s", self.camera, "learned" if self._was_ready else "being learned")
        return AlertOutput(
            events=tuple(events),
            zone_states=self._state_changes(),
            health=health,
            nearest=nearest,
            unit=self.unit,
            calibrated=measure is not None,
            snapshot_zones=tuple(snapshots),
        )

    def _frame_nearest(self, measure: Measure, masks: ZoneMasks) -> float | None:
        flat = masks.watched_grid
        return self._nearest_of(measure.score.ravel()[flat], flat, _FRAME_NEAREST_PERCENTILE)

    def _nearest_of(self, scores: np.ndarray, flat: np.ndarray, percentile: float) -> float | None:
        distances = self._reference.distances(scores, flat)
        distances = distances[np.isfinite(distances)]
        if distances.size == 0:
            return None
        k = int(percentile * (distances.size - 1))
        return float(np.partition(distances, k)[k])

    def _zones_step(
        self, measure: Measure, masks: ZoneMasks, frame: DepthFrame, events: list[AlertEvent], snapshots: list[str]
    ) -> None:
        score = measure.score.ravel()
        t, wall = frame.captured_mono, frame.captured_wall
        for tracker, pixels in zip(self._trackers, masks.zones, strict=True):
            if pixels.flat.size == 0:
                continue
            values = score[pixels.flat]
            near = values >= np.float32(tracker.threshold)
            fraction = np.count_nonzero(near) / values.size
            occupied = fraction >= tracker.cfg.min_area
            change = tracker.step(occupied, t, wall)
            alert = tracker.alert
            if change == "new":
                start = tracker.occupied_since_wall
                alert = tracker.alert = _OpenAlert(
                    _alert_id(self.camera, tracker.cfg.name, start), start, wall, _NO_STATS
                )
                if tracker.cfg.snapshot:
                    snapshots.append(tracker.cfg.name)
            if alert is None:
                continue
            if occupied:
                alert.last_seen = wall
                if change is not None:
                    alert.stats = self._zone_stats(values, near, pixels, fraction)
            if change is not None:
                events.append(self._zone_event(change, tracker, alert, frame.seq))
            if change == "end":
                tracker.alert = None

    def _zone_stats(self, values: np.ndarray, near: np.ndarray, pixels: ZonePixels, fraction: float) -> _Stats:
        xs, ys = pixels.xs[near], pixels.ys[near]
        nearest = self._nearest_of(values[near], pixels.flat[near], _NEAREST_PERCENTILE)
        bbox = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        return _Stats(nearest, float(fraction), bbox, (float(xs.mean()), float(ys.mean())))

    def _zone_event(self, kind: EventType, tracker: _ZoneTracker, alert: _OpenAlert, seq: int) -> AlertEvent:
        reason = "cleared" if kind == "end" else None
        cfg = tracker.cfg
        return self._event(kind, alert, seq, kind_of="obstacle", zone=cfg.name, severity=cfg.severity, reason=reason)

    def _fall_step(
        self, measure: Measure, masks: ZoneMasks, frame: DepthFrame, events: list[AlertEvent], snapshots: list[str]
    ) -> None:
        detector = self._fall
        if detector is None or measure.foreground is None:
            return
        t, wall = frame.captured_mono, frame.captured_wall
        grid = measure.foreground[::GRID_STRIDE, ::GRID_STRIDE] & masks.grid_allowed
        region = main_region(grid, self._cfg.fall.min_region_area)
        change = detector.update(t, region)
        alert = self._fall_alert
        if change == "fallen" and region is not None:
            stats = self._region_stats(region, measure, masks)
            start = wall - (t - detector.fell_at)
            alert = self._fall_alert = _OpenAlert(_alert_id(self.camera, FALL_ZONE, start), start, wall, stats)
            self._fall_last_event = t
            self._frozen = _box_mask(region, masks.shape)
            events.append(self._fall_event("new", alert, frame.seq))
            if self._cfg.fall.snapshot:
                snapshots.append(FALL_ZONE)
            return
        if alert is None:
            return
        if region is not None:
            alert.last_seen = wall
        if change == "risen":
            events.append(self._fall_event("end", alert, frame.seq, reason="risen"))
            self._fall_alert = None
            self._frozen = None
        elif t - self._fall_last_event >= self._cfg.fall.update_interval_s:
            self._fall_last_event = t
            events.append(self._fall_event("update", alert, frame.seq))

    def _region_stats(self, region: Region, measure: Measure, masks: ZoneMasks) -> _Stats:
        width = masks.shape[1]
        flat = (region.grid[:, 0] * GRID_STRIDE * width + region.grid[:, 1] * GRID_STRIDE).astype(np.int64)
        nearest = self._nearest_of(measure.score.ravel()[flat], flat, _NEAREST_PERCENTILE)
        return _Stats(
            nearest, region.area, (region.left, region.top, region.right, region.bottom), (region.cx, region.cy)
        )

    def _fall_event(self, kind: EventType, alert: _OpenAlert, seq: int, reason: str | None = None) -> AlertEvent:
        severity = self._cfg.fall.severity
        latched = kind != "end"
        return self._event(
            kind, alert, seq, kind_of="fall", zone=FALL_ZONE, severity=severity, reason=reason, latched=latched
        )

    def _event(
        self,
        kind: EventType,
        alert: _OpenAlert,
        seq: int,
        *,
        kind_of: EventKind,
        zone: str,
        severity: Severity,
        reason: str | None,
        latched: bool = False,
    ) -> AlertEvent:
        s = alert.stats
        return AlertEvent(
            id=alert.id,
            type=kind,
            kind=kind_of,
            camera=self.camera,
            zone=zone,
            severity=severity,
            nearest=s.nearest,
            unit=self.unit,
            occupied_fraction=s.fraction,
            bbox=s.bbox,
            centroid=s.centroid,
            start=alert.start,
            last_seen=alert.last_seen,
            frame=seq,
            precision=self._precision,
            latched=latched,
            acknowledged=alert.acknowledged,
            reason=reason,
        )

    def _state_changes(self) -> tuple[tuple[str, bool], ...]:
        current = {tracker.cfg.name: tracker.on for tracker in self._trackers}
        if self._fall is not None:
            current[FALL_ZONE] = self._fall_alert is not None
        changes = tuple((name, on) for name, on in current.items() if self._reported.get(name) != on)
        self._reported = current
        return changes


def _alert_id(camera: str, zone: str, start: float) -> str:
    """Stable for the alert's lifecycle and unique per zone: ``<camera>-<zone>-<start in epoch ms>``."""
    return f"{camera}-{zone}-{round(start * 1000)}"


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


__all__ = [
    "AlertEvent",
    "AlertOutput",
    "CameraAlerts",
    "DepthHealth",
    "ZoneSpec",
    "iso_utc",
    "parse_ack",
    "parse_baseline_reset",
]
