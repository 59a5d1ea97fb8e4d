"""All alerts of one camera, from its depth frames: the orchestrator over the camera's alert kinds.

:class:`CameraAlerts` is called once per :class:`~edge_depth.frames.DepthFrame`, in order, and returns an
:class:`~edge_depth.alerts.events.AlertOutput`: the events to publish now, the zone states that changed, the
depth health and the nearest distance. All timing uses the frames' own timestamps (``captured_mono`` for
durations, ``captured_wall`` for reported times), so a replayed recording gives the same events every time.

What every kind shares lives here: depth health (:mod:`~edge_depth.alerts.health`), the depth reference
(:mod:`~edge_depth.alerts.reference`), zone and exclusion masks (:mod:`~edge_depth.alerts.zones`) and the
nearest distance in the watched area. What differs lives in the kinds (:mod:`~edge_depth.alerts.kinds`),
built from :data:`KINDS`: obstacle zones (:mod:`~edge_depth.alerts.obstacle`) and falls
(:mod:`~edge_depth.alerts.fall`). Event payloads and zone states are described in
:mod:`~edge_depth.alerts.events`; MQTT commands are parsed by :mod:`~edge_depth.alerts.commands`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edge_depth.alerts.events import AlertOutput, Origin
from edge_depth.alerts.fall import FALL_ENTITY, FallAlerts
from edge_depth.alerts.health import HealthMonitor
from edge_depth.alerts.kinds import AlertKind, Entity, FrameView, KindFactory
from edge_depth.alerts.obstacle import ObstacleZones, zone_entities
from edge_depth.alerts.reference import BaselineReference, Reference, make_reference, nearest
from edge_depth.alerts.zones import MaskCache, ZoneSpec
from edge_depth.config.alerts import CameraAlertsConfig
from edge_depth.frames import DepthFrame

log = logging.getLogger(__name__)

KINDS: tuple[KindFactory, ...] = (ObstacleZones, FallAlerts)
"""Every camera's alert kinds, in the order their events, states and entities are reported."""

_FRAME_NEAREST_FRACTION = 0.01  # the frame's nearest distance: 1st percentile of the watched area


def default_entities(zones: Iterable[str]) -> tuple[Entity, ...]:
    """What :attr:`CameraAlerts.entities` announces for a camera with these zones, without building one:
    a zone sensor per zone, then the fall sensor. For callers that only know the zone names.
    """
    return (*zone_entities(zones), FALL_ENTITY)


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
        self.mode = cfg.reference.mode
        path = None if state_dir is None else state_dir / f"{camera}.baseline.npy"
        self._reference: Reference = make_reference(cfg.reference, path)
        self.unit = self._reference.unit
        self.zones = tuple(ZoneSpec(z.name, tuple(z.polygon)) for z in cfg.zones)
        self._masks = MaskCache(self.zones, [e.polygon for e in cfg.exclusions])
        origin = Origin(camera, self.unit, precision)
        self._kinds: tuple[AlertKind, ...] = tuple(make(cfg, self._reference, origin) for make in KINDS)
        self._health = HealthMonitor(cfg.health)
        self._reported: dict[str, bool] = {}
        self._rebased = False
        self._was_ready = self.baseline_ready
        self._lock = threading.Lock()

    @property
    def entities(self) -> tuple[Entity, ...]:
        """The Home Assistant entities of this camera's alert kinds, in display order."""
        return tuple(entity for kind in self._kinds for entity in kind.entities())

    # -- commands ---------------------------------------------------------------------------------

    def acknowledge(self, event_id: str) -> bool:
        """Acknowledge an open alert. A latched fall is cleared: its ``end`` (reason ``acknowledged``)
        comes out of the next :meth:`process`. An open obstacle alert is marked acknowledged in its
        next events. False when no open alert has this id.
        """
        with self._lock:
            return any(kind.acknowledge(event_id) for kind in self._kinds)

    def reset_baseline(self) -> None:
        """Relearn the empty scene from the next frames (baseline mode; nothing in other modes).

        Whatever is in view while it learns (``learn_s``) becomes the empty scene: reset with the room empty.
        Zones keep their state and resume once the new baseline is ready.
        """
        with self._lock:
            if isinstance(self._reference, BaselineReference):
                self._reference.reset()
                self._rebased = True

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
        t = frame.captured_mono
        # astype makes a new array: the frame's own arrays are only ever read.
        depth = frame.depth if frame.depth.dtype == np.float32 else frame.depth.astype(np.float32)
        health = self._health.update(frame.image, depth, t)
        masks = self._masks.get((depth.shape[0], depth.shape[1]))
        measure = self._reference.measure(depth, t) if health.frame_ok else None
        judged = measure if health.reliable else None
        view = FrameView(frame.seq, t, frame.captured_wall, judged, masks, self._rebased)
        self._rebased = False
        steps = [kind.step(view) for kind in self._kinds]
        nearest_distance = None
        if measure is not None:
            flat = masks.watched_grid
            nearest_distance = nearest(self._reference, measure.score.ravel()[flat], flat, _FRAME_NEAREST_FRACTION)
            if isinstance(self._reference, BaselineReference):
                self._reference.adapt(measure.score, t, _union(s.frozen for s in steps))
        if self.baseline_ready != self._was_ready:
            self._was_ready = self.baseline_ready
            log.info("%s: baseline %s", self.camera, "learned" if self._was_ready else "being learned")
        return AlertOutput(
            events=tuple(e for s in steps for e in s.earlier) + tuple(e for s in steps for e in s.events),
            zone_states=self._state_changes(),
            health=health,
            nearest=nearest_distance,
            unit=self.unit,
            calibrated=measure is not None,
            snapshot_zones=tuple(zone for s in steps for zone in s.snapshots),
        )

    def _state_changes(self) -> tuple[tuple[str, bool], ...]:
        current: dict[str, bool] = {}
        for kind in self._kinds:
            current.update(kind.states())
        changes = tuple((name, on) for name, on in current.items() if self._reported.get(name) != on)
        self._reported = current
        return changes


def _union(masks: Iterable[np.ndarray | None]) -> np.ndarray | None:
    """The union of the (H, W) bool masks given, None when none is."""
    given = [m for m in masks if m is not None]
    if len(given) <= 1:
        return given[0] if given else None
    union: np.ndarray = np.logical_or.reduce(given)
    return union

