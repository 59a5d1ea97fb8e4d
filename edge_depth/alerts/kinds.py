"""The one protocol every alert kind (obstacle zones, falls, ...) implements, and what passes through it.

:class:`~edge_depth.alerts.camera.CameraAlerts` owns what all kinds share (depth health, the depth reference,
zone and exclusion masks, the nearest distance) and drives a list of kinds built from the camera's config.
Each frame it hands every kind a :class:`FrameView` and collects a :class:`Step`; it publishes the retained
:meth:`AlertKind.states` that changed, routes acknowledgements, and announces :meth:`AlertKind.entities` to
Home Assistant. A kind never sees MQTT: topics and discovery JSON are made from these values by ``mqtt/``.

A kind is built by a :data:`KindFactory` (usually its class) from the camera's alert config, the camera's
depth reference and the :class:`~edge_depth.alerts.events.Origin` its events carry.

Two optional hooks concern a clean stop and the next start; a kind that has neither method keeps the default
behaviour of :func:`shutdown_step`, :func:`saved_state` and :func:`restore_state`:

- :class:`EndsOnShutdown`: ``shutdown`` ends what must not outlive the process (an obstacle nobody watches
  any more), with ``end`` events of reason ``shutdown``; by default nothing ends.
- :class:`KeepsState`: ``save_state``/``restore_state`` carry what must survive a restart (a latched fall)
  through the daemon's state file, as JSON under the kind's ``state_key``; by default nothing is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from edge_depth.alerts.events import AlertEvent, Origin
from edge_depth.alerts.reference import Measure, Reference
from edge_depth.alerts.zones import ZoneMasks
from edge_depth.config.alerts import CameraAlertsConfig


@dataclass(frozen=True, slots=True)
class FrameView:
    """One frame as the alert kinds see it.

    ``seq``: ``DepthFrame.seq``. ``t``: ``captured_mono`` (s, for durations). ``wall``: ``captured_wall``
    (epoch s, for reported times). ``measure``: the frame in the reference's terms (see
    :class:`~edge_depth.alerts.reference.Measure`), or None when the frame cannot be judged (it failed a
    health check, the depth is unreliable, or the reference could not map it): open alerts then stay as they
    are, since an obstacle nobody can see is unknown, not gone. ``masks``: zone and exclusion masks at the
    depth's shape (read-only, shared by every frame of that shape). ``rebased``: the reference was reset
    since the previous frame (a baseline reset), so anything tracked against the old one is void.
    """

    seq: int
    t: float
    wall: float
    measure: Measure | None
    masks: ZoneMasks
    rebased: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """What one kind made of one frame.

    ``events``: this frame's events, in order. ``snapshots``: zones whose ``new`` event in ``events`` wants a
    heatmap snapshot. ``earlier``: events caused between the previous frame and this one (the ``end`` of an
    acknowledged alert); they are published before any kind's ``events`` of this frame, as they happened
    first. ``frozen``: (H, W) bool pixels the reference must not adapt to now (a fallen person must not
    become background), or None.
    """

    events: tuple[AlertEvent, ...] = ()
    snapshots: tuple[str, ...] = ()
    earlier: tuple[AlertEvent, ...] = ()
    frozen: np.ndarray | None = None


NOTHING = Step()


@dataclass(frozen=True, slots=True)
class Entity:
    """A Home Assistant entity an alert kind adds to its camera's device (rendered by ``mqtt/discovery.py``).

    ``component``: the Home Assistant platform; kinds report ON/OFF states, so binary sensors only.
    ``object_id``: unique within the camera (``zone_door``, ``fall``); the entity is ``<camera>_<object_id>``.
    ``name``: as Home Assistant shows it. ``state``: the zone (a key of :meth:`AlertKind.states`) whose
    retained ``ON``/``OFF`` the entity shows. ``device_class``: Home Assistant's binary sensor device class
    (``occupancy``, ``safety``, ...), or None for a plain on/off sensor.
    """

    component: Literal["binary_sensor"]
    object_id: str
    name: str
    state: str
    device_class: str | None = None


class AlertKind(Protocol):
    """One kind of alert of one camera. ``CameraAlerts`` calls every method under one lock:
    :meth:`step` once per frame, in ``seq`` order, for every frame (also those it cannot judge); the others
    from any thread between frames.
    """

    def step(self, frame: FrameView) -> Step:
        """Advance with this frame; return its events."""
        ...

    def states(self) -> dict[str, bool]:
        """Zone name -> ON? for every zone this kind publishes a retained state for (ON while an alert is open)."""
        ...

    def acknowledge(self, event_id: str) -> bool:
        """Acknowledge this kind's open alert ``event_id``; False when it has none with that id."""
        ...

    def entities(self) -> tuple[Entity, ...]:
        """The Home Assistant entities this kind adds to the camera, in display order."""
        ...


KindFactory = Callable[[CameraAlertsConfig, Reference, Origin], AlertKind]
"""Builds a kind from the camera's alert config, its depth reference and the origin its events carry."""


@runtime_checkable
class EndsOnShutdown(Protocol):
    """An alert kind whose open alerts end when the daemon stops cleanly."""

    def shutdown(self, seq: int, wall: float) -> Step:
        """End what a stop closes: ``end`` events (reason ``shutdown``) made at ``wall`` (epoch s) after frame
        ``seq``, the last one stepped; :meth:`AlertKind.states` then shows those zones OFF. Called once, after
        the last frame."""
        ...


@runtime_checkable
class KeepsState(Protocol):
    """An alert kind with state that survives a restart, kept as JSON in the daemon's state file."""

    state_key: str
    """Its key in the camera's state file, unique among the camera's kinds."""

    def save_state(self) -> dict[str, Any] | None:
        """JSON-ready state to restore at the next start; None when there is nothing to keep."""
        ...

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Take back what :meth:`save_state` returned in an earlier run; called before the first frame. A kind
        ignores (and may log) state it cannot use: a file from another version must not stop the daemon."""
        ...


def shutdown_step(kind: AlertKind, seq: int, wall: float) -> Step:
    """``kind.shutdown`` when it has one; by default nothing ends at a stop."""
    return kind.shutdown(seq, wall) if isinstance(kind, EndsOnShutdown) else NOTHING


def saved_state(kind: AlertKind) -> tuple[str, dict[str, Any]] | None:
    """(``state_key``, state) when ``kind`` keeps state and has some now; by default None."""
    if not isinstance(kind, KeepsState):
        return None
    state = kind.save_state()
    return None if state is None else (kind.state_key, state)


def restore_state(kind: AlertKind, saved: Mapping[str, Any]) -> None:
    """Hand ``kind`` its entry of ``saved`` (the camera's state file, by ``state_key``); by default nothing."""
    if isinstance(kind, KeepsState) and isinstance(state := saved.get(kind.state_key), Mapping):
        kind.restore_state(state)
