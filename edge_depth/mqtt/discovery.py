"""Home Assistant MQTT discovery: one device per camera with its heatmap, zones, fall sensor, nearest distance and
connection quality.

Each config is published retained on ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` and
again whenever Home Assistant announces ``online`` on ``<discovery_prefix>/status``. Per camera:

- ``image`` ``<camera>_heatmap``: the raw JPEG heatmap topic (``image_topic``, ``content_type: image/jpeg``);
- the entities of the camera's alert kinds (:class:`~edge_depth.alerts.kinds.Entity`), only those that
  exist: each a ``binary_sensor`` ``<camera>_<object_id>`` with state ``ON``/``OFF`` on its zone's state
  topic: obstacle zones give ``<camera>_zone_<zone>`` per zone (device class ``occupancy``), fall detection
  (when enabled) ``<camera>_fall`` (device class ``safety``: ON = unsafe) on the state topic of zone ``fall``;
- ``sensor`` ``<camera>_nearest`` on ``<prefix>/<camera>/nearest``, whose payload :func:`nearest_payload`
  makes: JSON ``{"value": <float or null>, "unit": "m" | "relative" | "baseline", "calibrated": bool}``.
  A numeric sensor (``state_class: measurement``): its value template yields the number, or the word
  ``None`` for null, which Home Assistant's MQTT sensor takes as unknown (any other word would be an
  invalid number, and an empty result is ignored, leaving the last distance shown). With unit ``m`` the
  sensor is a ``distance`` in metres; otherwise unitless;
- ``sensor`` ``<camera>_connection_quality`` (device class ``enum``, a diagnostic): ``connection_quality``
  of the camera's retained status (:mod:`~edge_depth.capture.quality`), unknown while it is null.

Every entity uses the daemon's availability topic (``online``/``offline``).

What was announced is remembered (:func:`save_announced`), so that a camera, zone or feature taken out of the
config can be removed from Home Assistant and the broker at the next start (:func:`gone`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

from edge_depth.alerts.camera import default_entities
from edge_depth.alerts.kinds import Entity
from edge_depth.capture.quality import QUALITIES
from edge_depth.mqtt.topics import Topics

log = logging.getLogger(__name__)

# Home Assistant's MQTT sensor sets a numeric or enum sensor to unknown when its template yields this word.
UNKNOWN = "None"
NEAREST_TEMPLATE = "{{ value_json.value if value_json.value is number else '" + UNKNOWN + "' }}"
QUALITY_TEMPLATE = (
    "{{ value_json.connection_quality if value_json.connection_quality is string else '" + UNKNOWN + "' }}"
)


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
    entities: Mapping[str, Sequence[Entity]] | None = None,
) -> list[tuple[str, str]]:
    """(topic, JSON config) of every discovery message, to publish retained.

    ``cameras``: (camera name, its zone names). ``nearest_units``: camera -> unit of its nearest distance
    (``m`` makes a metric distance sensor); cameras not in it get a unitless sensor. ``entities``: camera ->
    the entities of its alert kinds (``CameraAlerts.entities``); a camera not in it gets
    :func:`~edge_depth.alerts.camera.default_entities` of its zone names: its zones, and no fall sensor.
    """
    units = nearest_units or {}
    announced = entities or {}
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

        configs: list[tuple[str, str, dict[str, object]]] = [
            (
                "image",
                "heatmap",
                {"name": "Heatmap", "image_topic": topics.heatmap(camera), "content_type": "image/jpeg"},
            ),
            *(
                (entity.component, entity.object_id, _entity(entity, topics.zone_state(camera, entity.state)))
                for entity in announced.get(camera, default_entities(zones))
            ),
            ("sensor", "nearest", _nearest(topics.nearest(camera), units.get(camera))),
            ("sensor", "connection_quality", _quality(topics.status(camera))),
        ]
        for component, object_id, config in configs:
            full_id = f"{camera}_{object_id}"
            payload = {**config, "unique_id": f"{node_id}_{full_id}", **common}
            topic = topics.discovery(component, node_id, full_id)
            messages.append((topic, json.dumps(payload, sort_keys=True)))
    return messages


def _entity(entity: Entity, state_topic: str) -> dict[str, object]:
    """The config of a kind's binary sensor: its zone's retained ``ON``/``OFF``."""
    config: dict[str, object] = {
        "name": entity.name,
        "state_topic": state_topic,
        "payload_on": "ON",
        "payload_off": "OFF",
    }
    if entity.device_class is not None:
        config["device_class"] = entity.device_class
    return config


def _nearest(state_topic: str, unit: str | None) -> dict[str, object]:
    config: dict[str, object] = {
        "name": "Nearest distance",
        "state_topic": state_topic,
        "value_template": NEAREST_TEMPLATE,
        "json_attributes_topic": state_topic,
        "state_class": "measurement",
    }
    if unit == "m":
        config |= {"unit_of_measurement": "m", "device_class": "distance", "suggested_display_precision": 2}
    return config


def _quality(status_topic: str) -> dict[str, object]:
    return {
        "name": "Connection quality",
        "state_topic": status_topic,
        "value_template": QUALITY_TEMPLATE,
        "device_class": "enum",
        "options": list(QUALITIES),
        "entity_category": "diagnostic",
    }


def gone(previous: Iterable[str], current: Collection[str]) -> list[str]:
    """The retained topics announced before and not now, sorted: to clear with an empty retained payload."""
    return sorted(set(previous) - set(current))


def load_announced(path: Path) -> set[str]:
    """The retained topics :func:`save_announced` wrote to ``path``; none when it is missing or unreadable."""
    try:
        topics = json.loads(path.read_text())
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return set()
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        log.warning("ignoring %s: not a list of topics", path)
        return set()
    return set(topics)


def save_announced(path: Path, topics: Iterable[str]) -> None:
    """Remember the retained topics (discovery configs, statuses, zone states) this run publishes, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted(set(topics)), indent=0))
    os.replace(tmp, path)
