from __future__ import annotations

import dataclasses

import pytest

from edge_depth.mqtt.topics import Topics


def test_daemon_and_camera_topics_live_under_the_prefix() -> None:
    t = Topics("site/edge-depth")
    assert t.available == "site/edge-depth/available"
    assert t.stats == "site/edge-depth/stats"
    assert t.status("porch") == "site/edge-depth/porch/status"
    assert t.heatmap("porch") == "site/edge-depth/porch/heatmap"
    assert t.alert("porch") == "site/edge-depth/porch/alert"
    assert t.alert_snapshot("porch") == "site/edge-depth/porch/alert/snapshot"
    assert t.alert_ack("porch") == "site/edge-depth/porch/alert/ack"
    assert t.zone_state("porch", "door") == "site/edge-depth/porch/door/state"
    assert t.baseline_reset("porch") == "site/edge-depth/porch/baseline/reset"


def test_cameras_do_not_share_topics() -> None:
    t = Topics("edge-depth")
    assert t.status("a") != t.status("b")
    assert t.zone_state("a", "status") != t.status("a")


def test_topics_are_immutable() -> None:
    t = Topics("edge-depth")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.prefix = "other"  # type: ignore[misc]


def test_home_assistant_topics_live_under_the_discovery_prefix() -> None:
    t = Topics("edge-depth", "ha")
    assert t.nearest("porch") == "edge-depth/porch/nearest"
    assert t.homeassistant_status == "ha/status"
    assert t.discovery("sensor", "node", "porch_nearest") == "ha/sensor/node/porch_nearest/config"
