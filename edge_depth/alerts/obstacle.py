"""Obstacle zones: the alert kind that reports something near inside a zone.

A zone is *occupied* on a frame when at least ``min_area`` of its pixels (exclusions removed) are nearer
than its threshold: ``enter`` while the zone is off, the looser ``exit`` while it is on (hysteresis). Each
zone then runs its own lifecycle (:class:`_ZoneTracker`): occupied for ``min_duration_s`` raises ``new``,
``update`` follows at most every ``update_interval_s`` while occupied, ``hold_s`` without occupation gives
``end`` (reason ``cleared``), and ``cooldown_s`` of quiet follows. Acknowledging an open zone alert only
marks its next events ``acknowledged``: the zone ends when it is empty, not when someone has seen it.

A clean stop ends every open zone alert (reason ``shutdown``) and turns its zone OFF: after a restart nobody
would ever end it, and the zone is judged afresh from the first frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np

from edge_depth.alerts.events import NO_STATS, AlertEvent, EventType, OpenAlert, Origin, Stats
from edge_depth.alerts.kinds import NOTHING, Entity, FrameView, Step
from edge_depth.alerts.reference import Reference, nearest
from edge_depth.alerts.zones import ZonePixels
from edge_depth.config.alerts import CameraAlertsConfig, ZoneConfig

_NEAREST_FRACTION = 0.05  # "nearest" = 5th percentile of the counted pixels' distances


def zone_entities(zones: Iterable[str]) -> tuple[Entity, ...]:
    """An occupancy binary sensor per zone, showing the zone's retained state."""
    return tuple(Entity("binary_sensor", f"zone_{zone}", f"Zone {zone}", zone, "occupancy") for zone in zones)


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
        self.alert: OpenAlert | None = None

    @property
    def on(self) -> bool:
        return self.state in ("active", "holding")

    @property
    def threshold(self) -> float:
        return self.exit_score if self.on else self.enter_score

    @property
    def occupied_since_wall(self) -> float:
        return self._since_wall

    def step(self, occupied: bool, t: float, wall: float) -> EventType | None:  # noqa: PLR0911 -- a return per transition
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


class ObstacleZones:
    """The obstacle zones of one camera (``zones`` of its alert config).

    An :class:`~edge_depth.alerts.kinds.AlertKind`: one :class:`_ZoneTracker` per zone, in config order.
    """

    def __init__(self, cfg: CameraAlertsConfig, reference: Reference, origin: Origin) -> None:
        self._reference = reference
        self._origin = origin
        self._trackers: list[_ZoneTracker] = []
        for zone in cfg.zones:
            enter, exit_ = cfg.thresholds(zone)
            scores = reference.threshold_score(enter), reference.threshold_score(exit_)
            self._trackers.append(_ZoneTracker(zone, *scores))

    def step(self, frame: FrameView) -> Step:
        measure = frame.measure
        if measure is None:
            return NOTHING
        score = measure.score.ravel()
        events: list[AlertEvent] = []
        snapshots: list[str] = []
        # masks.zones follows the config's zone order, as the trackers do (CameraAlerts builds both from it).
        for tracker, pixels in zip(self._trackers, frame.masks.zones, strict=True):
            if pixels.flat.size == 0:
                continue
            values = score[pixels.flat]
            near = values >= np.float32(tracker.threshold)
            fraction = np.count_nonzero(near) / values.size
            occupied = fraction >= tracker.cfg.min_area
            change = tracker.step(occupied, frame.t, frame.wall)
            alert = tracker.alert
            if change == "new":
                start = tracker.occupied_since_wall
                alert = tracker.alert = OpenAlert(
                    self._origin.alert_id(tracker.cfg.name, start), start, frame.wall, NO_STATS
                )
                if tracker.cfg.snapshot:
                    snapshots.append(tracker.cfg.name)
            if alert is None:
                continue
            if occupied:
                alert.last_seen = frame.wall
                if change is not None:
                    alert.stats = self._stats(values, near, pixels, fraction)
            if change is not None:
                events.append(self._event(change, tracker, alert, frame.seq))
            if change == "end":
                tracker.alert = None
        return Step(tuple(events), tuple(snapshots))

    def states(self) -> dict[str, bool]:
        return {tracker.cfg.name: tracker.on for tracker in self._trackers}

    def shutdown(self, seq: int, wall: float) -> Step:
        """End every open zone alert (reason ``shutdown``, ``last_seen`` as measured) and turn its zone OFF."""
        events: list[AlertEvent] = []
        for tracker in self._trackers:
            if tracker.alert is not None:
                events.append(self._event("end", tracker, tracker.alert, seq, reason="shutdown"))
            tracker.alert = None
            tracker.state = "idle"
        return Step(tuple(events))

    def acknowledge(self, event_id: str) -> bool:
        for tracker in self._trackers:
            if tracker.alert is not None and tracker.alert.id == event_id:
                tracker.alert.acknowledged = True
                return True
        return False

    def entities(self) -> tuple[Entity, ...]:
        return zone_entities(tracker.cfg.name for tracker in self._trackers)

    def _stats(self, values: np.ndarray, near: np.ndarray, pixels: ZonePixels, fraction: float) -> Stats:
        xs, ys = pixels.xs[near], pixels.ys[near]
        distance = nearest(self._reference, values[near], pixels.flat[near], _NEAREST_FRACTION)
        bbox = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        return Stats(distance, float(fraction), bbox, (float(xs.mean()), float(ys.mean())))

    def _event(
        self, type_: EventType, tracker: _ZoneTracker, alert: OpenAlert, seq: int, reason: str | None = None
    ) -> AlertEvent:
        cfg = tracker.cfg
        reason = reason or ("cleared" if type_ == "end" else None)
        return self._origin.event(
            type_, alert, seq, kind="obstacle", zone=cfg.name, severity=cfg.severity, reason=reason
        )
