"""Home Assistant MQTT discovery: one device per camera with its heatmap, zones, fall sensor and nearest distance.

Each config is published retained on ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` and
again whenever Home Assistant announces ``online`` on ``<discovery_prefix>/status``. Per camera:

- ``image`` ``<camera>_heatmap``: the raw JPEG heatmap topic (``image_topic``, ``content_type: image/jpeg``);
- ``binary_sensor`` ``<camera>_<zone>`` per zone (device class ``occupancy``), state ``ON``/``OFF`` on
  the zone's state topic;
- ``binary_sensor`` ``<camera>_fall`` (device class ``safety``: ON = unsafe) on the state topic of zone
  ``fall``;
- ``sensor`` ``<camera>_nearest`` on ``<prefix>/<camera>/nearest``, whose payload :func:`nearest_payload`
  makes: JSON ``{"value": <float or null>, "unit": "m" | "relative" | "baseline", "calibrated": bool}``.
  The value template renders ``None`` for null, which Home Assistant shows as unknown. With unit ``m``
  the sensor is a ``distance`` in metres; otherwise unitless.

Every entity uses the daemon's availability topic (``online``/``offline``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from edge_depth.config.alerts import FALL_ZONE
from edge_depth.mqtt.topics import Topics


def nearest_payload(nearest: float | None, unit: str, calibrated: bool) -> str:
    """The JSON published on ``Topics.nearest`` for one frame (``AlertOutput.nearest`` etc.)."""
    value = None if nearest is None else round(nearest, 3)
    return json.dumps({"value": value, "unit": unit, "calibrated": calibrated})


def discovery_messages(
    *,
    topics: Topics,
    node_id: str,
    cameras: Sequence[tuple[str, tuple[str, ...]]],
    version: str,
    nearest_units: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """(topic, JSON config) of every discovery message, to publish retained.

    ``cameras``: (camera name, its zone names). ``nearest_units``: camera -> unit of its nearest distance
    (``m`` makes a metric distance sensor); cameras not in it get a unitless sensor.
    """
    units = nearest_units or {}
    messages: list[tuple[str, str]] = []
    for camera, zones in cameras:
        device = {
            "identifiers": [f"{node_id}_{camera}"],
            "name": f"edge-depth {camera}",
            "manufacturer": "edge-depth",
            "model": "MiDaS v2.1 small depth camera",
            "sw_version": version,
        }
        common = {
            "availability_topic": topics.available,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        }

        entities: list[tuple[str, str, dict[str, object]]] = [
            (
                "image",
                "heatmap",
                {"name": "Heatmap", "image_topic": topics.heatmap(camera), "content_type": "image/jpeg"},
            ),
            *(
                ("binary_sensor", f"zone_{zone}", _binary(f"Zone {zone}", topics.zone_state(camera, zone), "occupancy"))
                for zone in zones
            ),
            ("binary_sensor", FALL_ZONE, _binary("Fall", topics.zone_state(camera, FALL_ZONE), "safety")),
            ("sensor", "nearest", _nearest(topics.nearest(camera), units.get(camera))),
        ]
        for component, object_id, config in entities:
            full_id = f"{camera}_{object_id}"
            payload = {**config, "unique_id": f"{node_id}_{full_id}", **common}
            topic = topics.discovery(component, node_id, full_id)
            messages.append((topic, json.dumps(payload, sort_keys=True)))
    return messages


def _binary(name: str, state_topic: str, device_class: str) -> dict[str, object]:
    return {
        "name": name,
        "state_topic": state_topic,
        "payload_on": "ON",
        "payload_off": "OFF",
        "device_class": device_class,
    }


def _nearest(state_topic: str, unit: str | None) -> dict[str, object]:
    config: dict[str, object] = {
        "name": "Nearest distance",
        "state_topic": state_topic,
        "value_template": "{{ value_json.value }}",
        "json_attributes_topic": state_topic,
        "state_class": "measurement",
    }
    if unit == "m":
        config |= {"unit_of_measurement": "m", "device_class": "distance", "suggested_display_precision": 2}
    return config
