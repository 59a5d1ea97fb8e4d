"""Home Assistant MQTT discovery payloads: topics, the keys HA's MQTT schemas accept, unique ids, devices."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2

from edge_depth.alerts.camera import default_entities
from edge_depth.mqtt.discovery import discovery_messages, gone, load_announced, nearest_payload, save_announced
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
        "options",
        "entity_category",
    },
}
REQUIRED = {"image": {"image_topic"}, "binary_sensor": {"state_topic"}, "sensor": {"state_topic"}}
DEVICE_KEYS = {"identifiers", "name", "manufacturer", "model", "sw_version"}
DEVICE_CLASSES = {"binary_sensor": {"occupancy", "safety"}, "sensor": {"distance", "enum"}}


def messages() -> list[tuple[str, dict[str, object]]]:
    raw = discovery_messages(
        topics=Topics("edge-depth", "homeassistant"),
        node_id="edge-depth",
        cameras=[("kitchen", ("door", "stove")), ("hall", ())],
        version="0.1.0",
        nearest_units={"kitchen": "m", "hall": "baseline"},
        # The kitchen detects falls, the hall does not.
        entities={"kitchen": default_entities(("door", "stove"), fall=True), "hall": default_entities(())},
    )
    return [(topic, json.loads(payload)) for topic, payload in raw]


def test_every_camera_gets_heatmap_zones_nearest_quality_and_a_fall_sensor_only_with_fall_detection() -> None:
    topics = [t for t, _ in messages()]
    assert topics == [
        "homeassistant/image/edge-depth/kitchen_heatmap/config",
        "homeassistant/binary_sensor/edge-depth/kitchen_zone_door/config",
        "homeassistant/binary_sensor/edge-depth/kitchen_zone_stove/config",
        "homeassistant/binary_sensor/edge-depth/kitchen_fall/config",
        "homeassistant/sensor/edge-depth/kitchen_nearest/config",
        "homeassistant/sensor/edge-depth/kitchen_connection_quality/config",
        "homeassistant/image/edge-depth/hall_heatmap/config",
        "homeassistant/sensor/edge-depth/hall_nearest/config",
        "homeassistant/sensor/edge-depth/hall_connection_quality/config",
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


# Home Assistant's MQTT sensor, as far as these configs use it: the value template's result "None" makes the state
# unknown; a numeric sensor (state_class, unit or numeric device class) ignores an empty result and needs a number
# otherwise; an enum sensor takes only its options.
HA_UNKNOWN = "None"
ENTITY_CATEGORIES = {"config", "diagnostic"}


def ha_sensor_state(config: dict[str, object], payload: str) -> object:
    """What Home Assistant would show for ``payload`` on a sensor with ``config``: None for unknown, a float for a
    numeric sensor, the option for an enum; AssertionError where Home Assistant would reject the value."""
    template = jinja2.Environment().from_string(str(config["value_template"]))
    rendered = template.render(value=payload, value_json=json.loads(payload))
    if rendered == HA_UNKNOWN:
        return None
    if config.get("device_class") == "enum":
        options = config["options"]
        assert isinstance(options, list) and rendered in options, f"{rendered!r} is not an option of {options}"
        return rendered
    numeric = "state_class" in config or "unit_of_measurement" in config
    assert numeric and rendered, f"{rendered!r} would be ignored or not a number"
    return float(rendered)


def test_sensors_follow_home_assistants_rules_for_their_kind() -> None:
    for topic, payload in messages():
        if "/sensor/" not in topic:
            continue
        if "entity_category" in payload:
            assert payload["entity_category"] in ENTITY_CATEGORIES
        if payload.get("device_class") == "enum":
            options = payload["options"]
            assert isinstance(options, list) and options and all(isinstance(o, str) for o in options), topic
            assert "state_class" not in payload and "unit_of_measurement" not in payload, topic
        else:
            assert "options" not in payload, topic
        assert "value_template" in payload, topic


def test_nearest_sensor_gets_a_number_or_unknown_never_an_invalid_value() -> None:
    by_topic = dict(messages())
    for camera, unit in (("kitchen", "m"), ("hall", "baseline")):
        config = by_topic[f"homeassistant/sensor/edge-depth/{camera}_nearest/config"]
        assert config["state_class"] == "measurement"
        assert ha_sensor_state(config, nearest_payload(1.23456, unit, True)) == 1.235
        assert ha_sensor_state(config, nearest_payload(0.0, unit, True)) == 0.0  # zero is a distance, not unknown
        assert ha_sensor_state(config, nearest_payload(-0.25, unit, True)) == -0.25  # nearer than the baseline
        assert ha_sensor_state(config, nearest_payload(None, unit, False)) is None


def test_connection_quality_is_an_enum_sensor_on_the_cameras_status() -> None:
    config = dict(messages())["homeassistant/sensor/edge-depth/kitchen_connection_quality/config"]
    assert config["state_topic"] == Topics("edge-depth").status("kitchen")
    assert config["device_class"] == "enum" and config["entity_category"] == "diagnostic"
    assert config["options"] == ["excellent", "fair", "poor", "unusable"]
    for quality in ("excellent", "fair", "poor", "unusable"):
        assert ha_sensor_state(config, json.dumps({"connection_quality": quality, "fps": 1.0})) == quality
    assert ha_sensor_state(config, json.dumps({"connection_quality": None})) is None


def test_what_was_announced_is_remembered_and_what_is_gone_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "state" / "announced.json"
    assert load_announced(path) == set()  # first start: nothing to clear
    save_announced(path, ["a/status", "b/status", "a/door/state"])
    assert load_announced(path) == {"a/status", "b/status", "a/door/state"}
    assert gone(load_announced(path), {"a/status"}) == ["a/door/state", "b/status"]
    path.write_text("{not json")
    assert load_announced(path) == set()  # a damaged file clears nothing rather than stopping the daemon
