"""The alert-kind protocol: CameraAlerts drives any kind the same way, kinds announce their own Home Assistant
entities, and nothing downstream of inference writes into a frame it was given."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from edge_depth.alerts import camera as camera_module
from edge_depth.alerts.camera import KINDS, CameraAlerts, default_entities
from edge_depth.alerts.events import NO_STATS, OpenAlert, Origin
from edge_depth.alerts.kinds import AlertKind, Entity, FrameView, Step
from edge_depth.alerts.reference import BaselineReference, Reference
from edge_depth.alerts.zones import ZoneSpec, build_masks
from edge_depth.config.alerts import CameraAlertsConfig
from edge_depth.config.schema import CameraConfig
from edge_depth.mqtt.discovery import discovery_messages
from edge_depth.mqtt.topics import Topics
from edge_depth.outputs.camera import CameraOutput
from tests.support.scenes import Box, frames, keyframes, load_scene, replay

SCENE = "nyu_00122"
DOOR = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]
STOVE = [[0.6, 0.3], [0.9, 0.3], [0.9, 0.95], [0.6, 0.95]]


def config(**alerts: Any) -> CameraAlertsConfig:
    return CameraAlertsConfig.model_validate(alerts)


@pytest.mark.parametrize(
    "cfg",
    [
        {"zones": [{"name": "door", "polygon": DOOR}, {"name": "stove", "polygon": STOVE}], "fall": {"enabled": True}},
        {},  # no zones, no fall detection: no fall sensor either, only what exists is announced
    ],
)
def test_a_cameras_entities_come_from_its_kinds_and_render_as_before(cfg: dict[str, Any]) -> None:
    alerts = CameraAlerts("kitchen", config(**cfg))
    zones = tuple(z.name for z in alerts.zones)
    fall = "fall" in cfg
    assert alerts.entities == default_entities(zones, fall=fall)
    assert [e.object_id for e in alerts.entities] == [*(f"zone_{z}" for z in zones), *(["fall"] if fall else [])]
    call: dict[str, Any] = {"topics": Topics("ed"), "node_id": "n", "cameras": [("kitchen", zones)], "version": "1"}
    defaults = {"kitchen": default_entities(zones, fall=fall)}
    assert discovery_messages(**call, entities={"kitchen": alerts.entities}) == discovery_messages(
        **call, entities=defaults
    )
    if not fall:
        assert discovery_messages(**call, entities={"kitchen": alerts.entities}) == discovery_messages(**call)


class Wire:
    """A toy kind: its zone ``wire`` goes ON on the first judged frame and stays ON until acknowledged."""

    def __init__(self, cfg: CameraAlertsConfig, reference: Reference, origin: Origin) -> None:
        self.origin = origin
        self.views: list[FrameView] = []
        self.alert: OpenAlert | None = None
        self.raised = False
        self.acked: list[str] = []
        self.frozen = np.zeros((192, 256), bool)
        self.frozen[:10] = True

    def step(self, frame: FrameView) -> Step:
        self.views.append(frame)
        earlier = tuple(
            self.origin.event(
                "end", OpenAlert(i, 0.0, 0.0, NO_STATS), frame.seq, kind="obstacle", zone="wire", severity="info"
            )
            for i in self.acked
        )
        self.acked = []
        if frame.measure is None:
            return Step(earlier=earlier)
        if not self.raised:
            self.raised = True
            self.alert = OpenAlert(self.origin.alert_id("wire", frame.wall), frame.wall, frame.wall, NO_STATS)
            new = self.origin.event("new", self.alert, frame.seq, kind="obstacle", zone="wire", severity="info")
            return Step((new,), ("wire",), earlier, self.frozen)
        return Step(earlier=earlier, frozen=self.frozen)

    def states(self) -> dict[str, bool]:
        return {"wire": self.alert is not None}

    def acknowledge(self, event_id: str) -> bool:
        if self.alert is None or self.alert.id != event_id:
            return False
        self.acked.append(event_id)
        self.alert = None
        return True

    def entities(self) -> tuple[Entity, ...]:
        return (Entity("binary_sensor", "wire", "Wire", "wire"),)


def test_a_new_kind_is_driven_like_the_built_in_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    wires: list[Wire] = []

    def make_wire(cfg: CameraAlertsConfig, reference: Reference, origin: Origin) -> AlertKind:
        wires.append(Wire(cfg, reference, origin))
        return wires[-1]

    frozen_seen: list[np.ndarray | None] = []
    adapt = BaselineReference.adapt

    def spy(self: BaselineReference, score: np.ndarray, t: float, frozen: np.ndarray | None = None) -> None:
        frozen_seen.append(frozen)
        adapt(self, score, t, frozen)

    monkeypatch.setattr(camera_module, "KINDS", (*KINDS, make_wire))
    monkeypatch.setattr(BaselineReference, "adapt", spy)
    cfg = config(zones=[{"name": "door", "polygon": DOOR}], fall={"enabled": True})
    obj = Box(0.2, 0.3, 0.4, 0.9, 1.5)
    scene_frames = list(frames(load_scene(SCENE), keyframes((7.0, obj)), duration_s=10))

    alerts = CameraAlerts("cam", cfg)
    wire = wires[-1]
    assert [e.object_id for e in alerts.entities] == ["zone_door", "fall", "wire"]
    run = replay(alerts, scene_frames)
    assert run.outputs[0].zone_states == (("door", False), ("fall", False), ("wire", False))
    assert [v.seq for v in wire.views] == [f.seq for f in run.frames]  # every frame reaches every kind
    assert wire.views[0].measure is None and wire.views[-1].measure is not None  # unjudged while learning
    (new,) = run.events(zone="wire")
    assert run.changes("wire") == [True] and new.camera == "cam" and new.unit == "baseline"
    assert ("wire",) in [out.snapshot_zones for out in run.outputs]
    judged = [f for f in frozen_seen if f is not None]
    assert judged and all(f is wire.frozen for f in judged)  # the fall kind freezes nothing: only the wire's mask
    door_new = next(i for i, out in enumerate(run.outputs) if any(e.zone == "door" for e in out.events))

    # Again, acknowledging the wire just before the frame that raises the door alert.
    alerts = CameraAlerts("cam", cfg)
    replay(alerts, scene_frames[:door_new])
    assert not alerts.acknowledge("cam-wire-0")
    assert alerts.acknowledge(new.id)
    out = alerts.process(scene_frames[door_new])
    assert [(e.zone, e.type) for e in out.events] == [("wire", "end"), ("door", "new")]  # acknowledged first
    assert out.events[0].frame == scene_frames[door_new].seq
    assert ("wire", False) in out.zone_states and ("door", True) in out.zone_states


def test_kinds_announce_entities_that_discovery_renders() -> None:
    (raw,) = [
        payload
        for topic, payload in discovery_messages(
            topics=Topics("ed"),
            node_id="n",
            cameras=[("cam", ())],
            version="1",
            entities={"cam": (Entity("binary_sensor", "wire", "Wire", "wire"),)},
        )
        if topic == "homeassistant/binary_sensor/n/cam_wire/config"
    ]
    payload = json.loads(raw)
    assert payload["state_topic"] == "ed/cam/wire/state" and payload["unique_id"] == "n_cam_wire"
    assert "device_class" not in payload and (payload["payload_on"], payload["payload_off"]) == ("ON", "OFF")


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | str]] = []

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False) -> bool:
        self.messages.append((topic, payload))
        return True

    def set_retained(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.messages.append((topic, payload))


def test_outputs_only_read_the_frames_they_are_given() -> None:
    """Scene frames are read-only (as the daemon's are): alerts, heatmaps and snapshots must copy, not write."""
    cam = CameraConfig.model_validate(
        {
            "name": "cam",
            "source": "rtsp://camera/stream",
            "heatmap": {"rate_hz": 5},
            "alerts": {"zones": [{"name": "door", "polygon": DOOR}], "fall": {"enabled": True}},
        }
    )
    publisher = Recorder()
    output = CameraOutput(cam, Topics("ed"), publisher, CameraAlerts("cam", cam.alerts))
    obj = Box(0.2, 0.3, 0.4, 0.9, 1.5)
    for frame in frames(load_scene(SCENE), keyframes((7.0, obj)), duration_s=10):
        assert not frame.depth.flags.writeable and not frame.image.flags.writeable
        output.handle(frame)
    topics = {topic for topic, _ in publisher.messages}
    assert {"ed/cam/heatmap", "ed/cam/alert", "ed/cam/alert/snapshot", "ed/cam/door/state"} <= topics


def test_cached_masks_are_read_only() -> None:
    """Every frame and every kind shares them: a write would change what all later frames see."""
    exclusion = [(0.0, 0.9), (1.0, 0.9), (1.0, 1.0), (0.0, 1.0)]
    masks = build_masks((192, 256), [ZoneSpec("door", tuple((x, y) for x, y in DOOR))], [exclusion])
    arrays = [masks.watched_grid, masks.grid_allowed, *(a for z in masks.zones for a in (z.flat, z.xs, z.ys))]
    assert not any(a.flags.writeable for a in arrays)
