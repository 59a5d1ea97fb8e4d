"""Home Assistant MQTT discovery payloads: topics, the keys HA's MQTT schemas accept, unique ids, devices."""

from __future__ import annotations

import json
import re

from edge_depth.mqtt.discovery import discovery_messages, nearest_payload
from edge_depth.mqtt.topics import Topics

# Keys of Home Assistant's MQTT discovery schemas (abbreviations not used) that this module may emit.
COMMON = {"name", "unique_id", "availability_topic", "payload_available", "payload_not_available", "device"}
ALLOWED = {
    "image": COMMON | {"image_topic", "content_type"},
    "binary_sensor": COMMON | {"state_topic", "payload_on", "payload_off", "device_class"},
    "sensor": COMMON
    | {
        "state_topic",
        "value_template",
        "json_attributes_topic",
        "state_class",
        "unit_of_measurement",
        "device_class",
        "suggested_display_precision",
    },
}
REQUIRED = {"image": {"image_topic"}, "binary_sensor": {"state_topic"}, "sensor": {"state_topic"}}
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version"}
DEVICE_CLASSES = {"binary_sensor": {"occupancy", "safety"}, "sensor": {"distance"}}


def messages() -> list[tuple[str, dict[str, object]]]:
    raw = discovery_messages(
        topics=Topics("edge-depth", "homeassistant"),
        node_id="edge-depth",
        cameras=[("kitchen", ("door", "stove")), ("hall", ())],
        version="0.1.0",
        nearest_units={"kitchen": "m", "hall": "baseline"},
    )
    return [(topic, json.loads(payload)) for topic, payload in raw]


def test_every_camera_gets_heatmap_zones_fall_and_nearest() -> None:
    topics = [t for t, _ in messages()]
    assert topics == [
        "homeassistant/image/edge-depth/kitchen_heatmap/config",
        "homeassistant/binary_sensor/edge-depth/kitchen_zone_door/config",
        "homeassistant/binary_sensor/edge-depth/kitchen_zone_stove/config",
        "homeassistant/binary_sensor/edge-depth/kitchen_fall/config",
        "homeassistant/sensor/edge-depth/kitchen_nearest/config",
        "homeassistant/image/edge-depth/hall_heatmap/config",
        "homeassistant/binary_sensor/edge-depth/hall_fall/config",
        "homeassistant/sensor/edge-depth/hall_nearest/config",
    ]


def test_payloads_use_only_keys_of_home_assistants_schemas() -> None:
    for topic, payload in messages():
        match = re.fullmatch(r"homeassistant/(\w+)/([\w-]+)/([\w-]+)/config", topic)
        assert match, topic
        component = match[1]
        assert set(payload) <= ALLOWED[component], (topic, set(payload) - ALLOWED[component])
        assert REQUIRED[component] <= set(payload)
        assert set(payload) >= COMMON
        assert payload["availability_topic"] == "edge-depth/available"
        assert (payload["payload_available"], payload["payload_not_available"]) == ("online", "offline")
        device = payload["device"]
        assert isinstance(device, dict) and set(device) == DEVICE_KEYS and device["sw_version"] == "0.1.0"
        if "device_class" in payload:
            assert payload["device_class"] in DEVICE_CLASSES[component]


def test_unique_ids_are_unique_and_devices_are_per_camera() -> None:
    payloads = [p for _, p in messages()]
    ids = [p["unique_id"] for p in payloads]
    assert len(set(ids)) == len(ids)
    devices = {str(p["unique_id"]).split("_")[1]: json.dumps(p["device"]) for p in payloads}
    assert len(set(devices.values())) == 2


def test_entities_point_at_the_topics_the_daemon_publishes() -> None:
    topics = Topics("edge-depth")
    by_topic = dict(messages())
    heatmap = by_topic["homeassistant/image/edge-depth/kitchen_heatmap/config"]
    assert heatmap["image_topic"] == topics.heatmap("kitchen") and heatmap["content_type"] == "image/jpeg"
    door = by_topic["homeassistant/binary_sensor/edge-depth/kitchen_zone_door/config"]
    assert door["state_topic"] == topics.zone_state("kitchen", "door")
    assert (door["payload_on"], door["payload_off"], door["device_class"]) == ("ON", "OFF", "occupancy")
    fall = by_topic["homeassistant/binary_sensor/edge-depth/kitchen_fall/config"]
    assert fall["state_topic"] == topics.zone_state("kitchen", "fall") and fall["device_class"] == "safety"
    metric = by_topic["homeassistant/sensor/edge-depth/kitchen_nearest/config"]
    assert metric["state_topic"] == Topics("edge-depth").nearest("kitchen") == "edge-depth/kitchen/nearest"
    assert (metric["unit_of_measurement"], metric["device_class"]) == ("m", "distance")
    unitless = by_topic["homeassistant/sensor/edge-depth/hall_nearest/config"]
    assert "unit_of_measurement" not in unitless and "device_class" not in unitless


def test_nearest_payload() -> None:
    assert json.loads(nearest_payload(1.23456, "m", True)) == {"value": 1.235, "unit": "m", "calibrated": True}
    assert json.loads(nearest_payload(None, "m", False)) == {"value": None, "unit": "m", "calibrated": False}
