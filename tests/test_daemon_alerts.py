"""Alerts end to end: the daemon replays recorded depth (real NYU ground truth with a synthetic object and
MiDaS-like jitter) and a subscriber on a real Mosquitto sees the alert lifecycle, retained zone states, Home
Assistant discovery, and a latched fall cleared by an acknowledgement sent over MQTT."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
import pytest

from edge_depth.capture.replay import save_recording
from tests.support.broker import Mosquitto, MqttRecorder, Received
from tests.support.daemon import Daemon, daemon_config
from tests.support.scenes import Box, frames, keyframes, load_scene, person, posture

pytestmark = pytest.mark.slow

SCENE = "nyu_00122"
DOOR = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]
NEAR = Box(0.2, 0.3, 0.4, 0.9, 1.5)
STANDING = person(0.3, 0.92, 0.6, 1.5)
LYING = posture(STANDING, 0.25, 3.5)


def door_states(messages: list[Received]) -> list[bytes]:
    return [m.payload for m in messages if m.topic == "ed/room/door/state"]


def alerts_of(messages: list[Received], camera: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.topic == f"ed/{camera}/alert"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("recordings")
    scene = load_scene(SCENE)
    approach = keyframes((7.0, Box(0.2, 0.3, 0.4, 0.9, 6.5)), (12.0, NEAR), (16.0, NEAR), (18.0, NEAR.moved(dx=0.7)))
    fall = keyframes((2.5, STANDING), (3.5, STANDING), (4.2, LYING))
    paths = {"room": out / "room.npz", "hall": out / "hall.npz"}
    save_recording(paths["room"], frames(scene, approach, duration_s=30, camera="room"))
    save_recording(paths["hall"], frames(scene, fall, duration_s=40, camera="hall", seed=1))
    return paths


def test_replayed_depth_gives_alert_lifecycle_zone_states_discovery_and_acked_fall(
    mqtt_broker: Mosquitto, int8_ir: Path, recordings: dict[str, Path], run_daemon: Callable[..., Daemon]
) -> None:
    room = {
        "name": "room",
        "source": str(recordings["room"]),
        "realtime": False,  # as fast as the alert logic goes: the recording's own timestamps drive the timing
        "alerts": {"zones": [{"name": "door", "polygon": DOOR}]},
    }
    hall = {
        "name": "hall",
        "source": str(recordings["hall"]),
        "realtime": True,  # paced, so the fall is still latched when the acknowledgement arrives
        "alerts": {"reference": {"baseline": {"learn_s": 2.0}}, "fall": {"enabled": True}},
    }
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, ["ed/#", "homeassistant/#"]) as rec:
        daemon = run_daemon(daemon_config(mqtt_broker, int8_ir, [room, hall]))

        # Obstacle: one new, updates, one end, all with one id; zone state ON then OFF, retained.
        lifecycle = rec.wait_for(lambda ms: (a := alerts_of(ms, "room")) and a[-1]["type"] == "end" and a, 60)
        assert [a["type"] for a in lifecycle].count("new") == 1 and lifecycle[0]["type"] == "new"
        assert "update" in [a["type"] for a in lifecycle] and len({a["id"] for a in lifecycle}) == 1
        new = lifecycle[0]
        assert new["camera"] == "room" and new["zone"] == "door" and new["kind"] == "obstacle"
        assert new["precision"] == "int8" and new["unit"] == "baseline" and new["start"].endswith("Z")
        # The zone state is a message of its own, published right after the `end` event: wait for it too.
        states = rec.wait_for(lambda ms: door_states(ms) if len(door_states(ms)) >= 3 else None)
        assert states == [b"OFF", b"ON", b"OFF"]
        rec.wait_for_message("ed/room/alert/snapshot")

        # Home Assistant discovery: heatmap image, zone and fall binary sensors, nearest sensor.
        configs = {m.topic: json.loads(m.payload) for m in rec.messages if m.topic.startswith("homeassistant/")}
        assert configs["homeassistant/image/edge-depth/room_heatmap/config"]["image_topic"] == "ed/room/heatmap"
        door = configs["homeassistant/binary_sensor/edge-depth/room_zone_door/config"]
        assert door["state_topic"] == "ed/room/door/state" and door["availability_topic"] == "ed/available"
        assert "homeassistant/binary_sensor/edge-depth/hall_fall/config" in configs
        assert any(t.startswith("homeassistant/sensor/edge-depth/room_nearest") for t in configs)

        # Fall: one latched alert, cleared by an ack sent over MQTT.
        fall = rec.wait_for(lambda ms: next((a for a in alerts_of(ms, "hall") if a["type"] == "new"), None), 60)
        assert fall["kind"] == "fall" and fall["latched"] is True and fall["severity"] == "critical"
        rec.wait_for_message("ed/hall/fall/state", b"ON")
        # A malformed command is logged and ignored, never a crash.
        mqtt_publish.single("ed/hall/alert/ack", "{not json", hostname=mqtt_broker.host, port=mqtt_broker.port)
        ack = json.dumps({"id": fall["id"]})
        mqtt_publish.single("ed/hall/alert/ack", ack, hostname=mqtt_broker.host, port=mqtt_broker.port)
        end = rec.wait_for(lambda ms: next((a for a in alerts_of(ms, "hall") if a["type"] == "end"), None), 30)
        assert end["id"] == fall["id"] and end["reason"] == "acknowledged" and end["acknowledged"] is True
        rec.wait_for(lambda ms: [m.payload for m in ms if m.topic == "ed/hall/fall/state"][-1] == b"OFF")
        assert [a["type"] for a in alerts_of(rec.messages, "hall")].count("new") == 1
        daemon.wait_for_log(lambda line: "ignored message on ed/hall/alert/ack" in line)
        code, _ = daemon.terminate()
        assert code == 0
