"""What the alert logic reports: alert events (one per lifecycle step) and the per-frame output of a camera.

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

Fall events also carry ``evidence``, what the detector measured on the fall (to tune its settings by):
``drop_speed`` (fastest descent of the region's top edge over 0.5 s during the drop, standing heights per
second), ``drop`` (how far the top edge came down, fraction of the standing height), ``aspect`` (width /
height in pixels of the fallen region) and ``height`` (its height, fraction of the standing height) when it
was first seen down, ``floor_gap`` (how far its top stood out in depth from what is behind it, fraction of
what the standing person's top did; null when the standing person hardly stood out), ``standing_height``
(image heights) and ``down_s`` (seconds down by this event's frame). Obstacle events have no ``evidence`` key.

``nearest``, ``occupied_fraction``, ``bbox`` and ``centroid`` are measured on the frame of each ``new`` and
``update``; an ``end`` repeats the last measured ones (the zone is empty by then) with a fresh ``last_seen``.

Zone states: ``ON``/``OFF`` per zone (retained on ``<prefix>/<camera>/<zone>/state``), ON from ``new`` to
``end``; the fall sensor is zone ``fall``, ON while a fall is latched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from edge_depth.alerts.health import DepthHealth
from edge_depth.config.alerts import Severity
from edge_depth.timestamps import iso_utc

EventType = Literal["new", "update", "end"]
EventKind = Literal["obstacle", "fall"]


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
    evidence: FallEvidence | None = None

    def payload(self) -> dict[str, object]:
        """The JSON-ready dict published on ``<prefix>/<camera>/alert``."""
        payload: dict[str, object] = {
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
        if self.evidence is not None:
            payload["evidence"] = self.evidence.payload()
        return payload


@dataclass(frozen=True, slots=True)
class FallEvidence:
    """What the fall detector measured on one fall (see the module docstring for the payload keys).

    ``drop_speed``: standing heights per second; ``drop``, ``height``: fractions of the standing height;
    ``aspect``: width / height in pixels; ``floor_gap``: fraction of the standing top's depth gap, None when
    unknown; ``standing_height``: image heights (0..1); ``down_s``: seconds since the region was first down.
    """

    drop_speed: float
    drop: float
    aspect: float
    height: float
    floor_gap: float | None
    standing_height: float
    down_s: float

    def payload(self) -> dict[str, float | None]:
        return {
            "drop_speed": round(self.drop_speed, 3),
            "drop": round(self.drop, 3),
            "aspect": round(self.aspect, 3),
            "height": round(self.height, 3),
            "floor_gap": _rounded(self.floor_gap, 3),
            "standing_height": round(self.standing_height, 4),
            "down_s": round(self.down_s, 2),
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


@dataclass(frozen=True, slots=True)
class Stats:
    """What an alert measured on its latest frame: ``nearest`` (in the reference's unit, None if unknown),
    ``fraction`` (0..1), ``bbox`` (x0, y0, x1, y1) and ``centroid`` (x, y), normalised (0..1, y down)."""

    nearest: float | None
    fraction: float
    bbox: tuple[float, float, float, float] | None
    centroid: tuple[float, float] | None


NO_STATS = Stats(None, 0.0, None, None)


@dataclass(slots=True)
class OpenAlert:
    """An alert between its ``new`` and its ``end``: ``start``/``last_seen`` in epoch seconds."""

    id: str
    start: float
    last_seen: float
    stats: Stats
    acknowledged: bool = False
    evidence: FallEvidence | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """What every event of one camera shares: the camera's name, the unit of its distances, the model precision."""

    camera: str
    unit: str
    precision: str

    def alert_id(self, zone: str, start: float) -> str:
        """Stable for the alert's lifecycle and unique per zone: ``<camera>-<zone>-<start in epoch ms>``."""
        return f"{self.camera}-{zone}-{round(start * 1000)}"

    def event(
        self,
        type_: EventType,
        alert: OpenAlert,
        seq: int,
        *,
        kind: EventKind,
        zone: str,
        severity: Severity,
        reason: str | None = None,
        latched: bool = False,
    ) -> AlertEvent:
        """The ``type_`` event of ``alert``, made from frame ``seq``, with the alert's latest stats."""
        s = alert.stats
        return AlertEvent(
            id=alert.id,
            type=type_,
            kind=kind,
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
            precision=self.precision,
            latched=latched,
            acknowledged=alert.acknowledged,
            reason=reason,
            evidence=alert.evidence,
        )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)
