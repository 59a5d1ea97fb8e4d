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

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_depth.alerts.events import AlertEvent, AlertOutput, Origin
from edge_depth.alerts.fall import FALL_ENTITY, FallAlerts
from edge_depth.alerts.health import HealthMonitor
from edge_depth.alerts.kinds import (
    AlertKind,
    Entity,
    FrameView,
    KindFactory,
    restore_state,
    saved_state,
    shutdown_step,
)
from edge_depth.alerts.obstacle import ObstacleZones, zone_entities
from edge_depth.alerts.reference import (
    BaselineReference,
    Measure,
    Reference,
    atomic_write,
    make_reference,
    nearest,
)
from edge_depth.alerts.zones import MaskCache, Point, ZoneSpec, polygon_mask
from edge_depth.config.alerts import CameraAlertsConfig, ZoneConfig
from edge_depth.depthstats import GridStats
from edge_depth.frames import DepthFrame

log = logging.getLogger(__name__)

KINDS: tuple[KindFactory, ...] = (ObstacleZones, FallAlerts)
"""Every camera's alert kinds, in the order their events, states and entities are reported."""

_FRAME_NEAREST_FRACTION = 0.01  # the frame's nearest distance: 1st percentile of the watched area
_PROBE_NEAREST_FRACTION = 0.05  # a probed polygon's nearest distance, as an obstacle event reports it


@dataclass(frozen=True, slots=True)
class ZoneProbe:
    """A polygon on the latest frame: ``occupied_fraction`` (0..1) of its pixels nearer than the zone threshold
    (None in metric mode without a threshold), ``nearest`` (5th percentile of its distances, in ``unit``; None
    when none is finite), ``pixels`` it covers at the model's resolution (exclusions removed)."""

    occupied_fraction: float | None
    nearest: float | None
    unit: str
    pixels: int


def default_entities(zones: Iterable[str], *, fall: bool = False) -> tuple[Entity, ...]:
    """What :attr:`CameraAlerts.entities` announces for a camera with these zones, without building one:
    a zone sensor per zone, then the fall sensor when ``fall`` detection is on. For callers that only know
    the zone names.
    """
    return (*zone_entities(zones), *((FALL_ENTITY,) if fall else ()))


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
        self._reference: Reference = make_reference(cfg.reference, path, camera)
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
        self._cfg = cfg
        self._latest: Measure | None = None  # the last frame's measure, for probe()
        self._last_seq = 0
        self._state_path = None if state_dir is None else state_dir / f"{camera}.alerts.json"
        self._saved_state: str | None = None  # the JSON last written, so that unchanged state is not rewritten
        self._restore()

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
        """Persist to ``state_dir`` (nothing without one): the baseline (baseline mode) and what the kinds keep
        across a restart (a latched fall) in ``<camera>.alerts.json``, each written atomically and only when it
        changed since the last save; a kind with nothing to keep leaves no entry, so a stale one is never restored.

        Raises OSError when a file cannot be written (after trying both): its previous version stays intact.
        """
        errors: list[OSError] = []
        with self._lock:
            if isinstance(self._reference, BaselineReference):
                try:
                    self._reference.save()
                except OSError as exc:
                    errors.append(exc)
            if self._state_path is not None:
                kept = dict(entry for kind in self._kinds if (entry := saved_state(kind)) is not None)
                text = json.dumps(kept, sort_keys=True)
                if text != self._saved_state:
                    try:
                        self._state_path.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write(self._state_path, lambda f: f.write(text.encode()))
                        self._saved_state = text
                    except OSError as exc:
                        errors.append(exc)
        if errors:
            raise errors[0]

    def shutdown(self) -> tuple[tuple[AlertEvent, ...], tuple[tuple[str, bool], ...]]:
        """End what a clean stop closes (each kind's ``shutdown``: open obstacle alerts end with reason
        ``shutdown``; a latched fall stays latched): the ``end`` events, then the zone states that changed.
        Call once, after the last frame."""
        with self._lock:
            wall = time.time()
            steps = [shutdown_step(kind, self._last_seq, wall) for kind in self._kinds]
            return tuple(e for s in steps for e in (*s.earlier, *s.events)), self._state_changes()

    def _restore(self) -> None:
        """Hand each kind what it kept at the last clean stop (a missing or unreadable file: nothing)."""
        if self._state_path is None or not self._state_path.exists():
            return
        try:
            saved = json.loads(self._state_path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("ignoring alert state %s: %s", self._state_path, exc)
            return
        if not isinstance(saved, dict):
            log.warning("ignoring alert state %s: not a JSON object", self._state_path)
            return
        for kind in self._kinds:
            restore_state(kind, saved)

    @property
    def baseline_ready(self) -> bool:
        """Baseline mode: the empty scene is learned. Other modes: always True."""
        ref = self._reference
        return not isinstance(ref, BaselineReference) or ref.ready

    def probe(self, polygon: Sequence[Point], enter: float | None = None) -> ZoneProbe | None:
        """How a zone drawn as ``polygon`` (normalised corners) sees the latest frame, without changing any state:
        for a zone editor. ``enter``: the zone threshold (the reference mode's unit; its default when None).
        None before the reference could measure a frame (baseline still learning, metric uncalibrated).
        """
        with self._lock:
            measure = self._latest
            if measure is None:
                return None
            shape = (measure.score.shape[0], measure.score.shape[1])
            flat = np.flatnonzero(polygon_mask(polygon, shape) & ~self._masks.excluded(shape))
            values = measure.score.ravel()[flat]
            fraction = None
            if enter is not None or self.mode != "metric":
                zone = ZoneConfig(name="probe", polygon=list(polygon), enter=enter)
                threshold = np.float32(self._reference.threshold_score(self._cfg.thresholds(zone)[0]))
                fraction = float(np.count_nonzero(values >= threshold)) / values.size if values.size else 0.0
            distance = nearest(self._reference, values, flat, _PROBE_NEAREST_FRACTION) if values.size else None
            return ZoneProbe(fraction, distance, self.unit, int(values.size))

    # -- per frame ----------------------------------------------------------------------------------

    def process(self, frame: DepthFrame, stats: GridStats | None = None) -> AlertOutput:
        """Evaluate one frame (call for every frame of this camera, in ``seq`` order). ``stats``:
        ``grid_stats(frame.depth)`` when the caller has it already (computed here otherwise)."""
        with self._lock:
            return self._process(frame, stats)

    def _process(self, frame: DepthFrame, stats: GridStats | None) -> AlertOutput:
        t = frame.captured_mono
        # astype makes a new array: the frame's own arrays are only ever read.
        depth = frame.depth if frame.depth.dtype == np.float32 else frame.depth.astype(np.float32)
        # The caller's stats are of frame.depth: for a converted copy the health computes its own.
        health = self._health.update(frame.image, depth, t, stats if depth is frame.depth else None)
        masks = self._masks.get((depth.shape[0], depth.shape[1]))
        measure = self._reference.measure(depth, t) if health.frame_ok else None
        self._latest = measure
        self._last_seq = frame.seq
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
