"""Obstacle zones on a real NYU room (ground-truth depth) with MiDaS-like per-frame scale, shift and noise.

Every scenario starts with 6 s of empty scene (baseline learned in the first 5 s) and runs at 15 fps.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pytest

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.alerts.zones import polygon_mask
from edge_depth.config.alerts import CameraAlertsConfig
from tests.support.scenes import Box, Run, frames, keyframes, load_scene, replay
from tests.test_reference import reference_points

SCENE = "nyu_00122"
DOOR = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]
OBJECT = Box(0.2, 0.3, 0.4, 0.9, 1.5)


def config(**alerts: Any) -> CameraAlertsConfig:
    alerts.setdefault("zones", [{"name": "door", "polygon": DOOR}])
    return CameraAlertsConfig.model_validate(alerts)


def approach_and_leave() -> Run:
    """The object comes nearer inside the zone (6.5 m -> 1.5 m in 5 s), stays, then slides out to the right."""
    timeline = keyframes(
        (7.0, Box(0.2, 0.3, 0.4, 0.9, 6.5)),
        (12.0, OBJECT),
        (16.0, OBJECT),
        (18.0, OBJECT.moved(dx=0.7)),
        (18.01, None),
    )
    return replay(CameraAlerts("cam", config(), precision="int8"), frames(load_scene(SCENE), timeline, duration_s=30))


def test_an_object_approaching_a_zone_gives_one_alert_lifecycle() -> None:
    run = approach_and_leave()
    events = run.events(zone="door")
    types = [e.type for e in events]
    assert types[0] == "new" and types[-1] == "end"
    assert types.count("new") == 1 and types.count("end") == 1 and types.count("update") >= 1
    assert len({e.id for e in events}) == 1
    assert run.changes("door") == [True, False]
    assert run.outputs[0].zone_states == (("door", False),)

    new, end = events[0], events[-1]
    assert 7.0 < run.time_of(new) < 13.0  # raised on the way in, after min_duration_s
    assert 16.0 < run.time_of(end) < 22.0  # ended hold_s after the object left
    assert new.kind == "obstacle" and new.unit == "baseline" and new.severity == "warning"
    assert new.precision == "int8" and not new.latched and end.reason == "cleared"
    assert new.bbox is not None and new.centroid is not None
    x0, y0, x1, y1 = new.bbox
    assert 0.1 <= x0 < x1 <= 0.5 and 0.3 <= y0 < y1 <= 0.95  # inside the zone
    assert 0.15 < new.centroid[0] < 0.45 and 0.3 < new.centroid[1] < 0.9  # on the object
    assert new.start <= new.last_seen <= end.last_seen < run.frames[-1].captured_wall
    assert all(a.frame < b.frame for a, b in itertools.pairwise(events))
    payload = json.loads(json.dumps(new.payload()))
    assert payload["start"].endswith("Z") and payload["id"] == new.id and payload["type"] == "new"
    assert run.outputs[-1].snapshot_zones == () and any(out.snapshot_zones == ("door",) for out in run.outputs)


def test_the_alert_lifecycle_replays_identically() -> None:
    first, second = approach_and_leave(), approach_and_leave()
    assert [e.payload() for e in first.events()] == [e.payload() for e in second.events()]


def hover_distance(zone_fraction: float, box: Box, enter: float) -> float:
    """The distance at which ``box`` makes ``zone_fraction`` of the door zone count (enter threshold), from the
    true scene normalised as the baseline is (p2 -> 0, p98 -> 1)."""
    scene = load_scene(SCENE)
    low, high = np.percentile(scene.inverse, (2, 98))
    baseline = (scene.inverse - low) / (high - low)
    zone = polygon_mask([(x, y) for x, y in DOOR], scene.inverse.shape)
    covered = zone & polygon_mask(
        [(box.left, box.top), (box.right, box.top), (box.right, box.bottom), (box.left, box.bottom)], zone.shape
    )

    def fraction(distance: float) -> float:
        nearness = (1.0 / distance - low) / (high - low)
        return float(np.count_nonzero(covered & (nearness - baseline >= enter))) / np.count_nonzero(zone)

    near, far = 0.5, 10.0
    for _ in range(40):
        mid = (near + far) / 2
        near, far = (mid, far) if fraction(mid) > zone_fraction else (near, mid)
    return (near + far) / 2


def hovering_run(cfg: CameraAlertsConfig, period_s: float) -> Run:
    """An object whose distance wobbles (+-4 %) around where it just fills min_area of the zone, for 30 s."""
    box = Box(0.15, 0.35, 0.45, 0.9, 1.0)
    distance = hover_distance(0.05, box, 0.15)

    def wobble(t: float) -> Box:
        return Box(box.left, box.top, box.right, box.bottom, distance * (1 + 0.04 * np.sin(2 * np.pi * t / period_s)))

    keys = [(6.0 + i * 0.1, wobble(i * 0.1)) for i in range(300)]
    return replay(CameraAlerts("cam", cfg), frames(load_scene(SCENE), keyframes(*keys), duration_s=36, seed=5))


# 1.3 s: never occupied for min_duration_s; 6 s: long enough to raise, then the exit threshold holds it.
@pytest.mark.parametrize("period_s", [1.3, 6.0])
def test_an_object_hovering_at_the_threshold_does_not_flap(period_s: float) -> None:
    run = hovering_run(config(), period_s)
    assert len(run.changes("door")) <= 2
    assert run.types().count("new") <= 1 and run.types().count("end") <= 1
    if period_s > 1.3:
        assert run.changes("door") == [True]


@pytest.mark.parametrize("period_s", [1.3, 6.0])
def test_the_hovering_object_flaps_without_hysteresis_hold_and_duration(period_s: float) -> None:
    """Control for the test above: the same frames with every stabiliser off do flap."""
    bare = {"name": "door", "polygon": DOOR, "exit": 0.15, "min_duration_s": 0, "hold_s": 0, "cooldown_s": 0}
    run = hovering_run(config(zones=[bare]), period_s)
    assert len(run.changes("door")) >= 8


def test_an_object_inside_an_exclusion_gives_nothing() -> None:
    timeline = keyframes((7.0, OBJECT), (20.0, OBJECT), (20.01, None))
    bed = {"name": "bed", "polygon": [[0.15, 0.25], [0.45, 0.25], [0.45, 0.95], [0.15, 0.95]]}
    excluded = replay(CameraAlerts("cam", config(exclusions=[bed])), frames(load_scene(SCENE), timeline, duration_s=25))
    assert excluded.events() == []
    assert excluded.changes("door") == []
    control = replay(CameraAlerts("cam", config()), frames(load_scene(SCENE), timeline, duration_s=25))
    assert control.types() == ["new", "update", "update", "end"]


def test_cooldown_stops_a_burst_of_alerts() -> None:
    """Leave and come back within the cooldown: the second visit raises only after the cooldown."""
    timeline = keyframes(
        (7.0, OBJECT), (9.0, OBJECT), (9.01, None), (12.0, None), (12.01, OBJECT), (40.0, OBJECT), (40.01, None)
    )
    zone = {"name": "door", "polygon": DOOR, "cooldown_s": 10.0, "update_interval_s": 60}
    run = replay(CameraAlerts("cam", config(zones=[zone])), frames(load_scene(SCENE), timeline, duration_s=45))
    events = run.events()
    assert [e.type for e in events] == ["new", "end", "new", "end"]
    assert events[0].id != events[2].id
    first_end, second_new = run.time_of(events[1]), run.time_of(events[2])
    assert 11.0 <= first_end < 12.0  # hold_s after 9 s
    assert second_new >= first_end + 10.0  # cooldown_s, then min_duration_s


WALL = [[0.05, 0.05], [0.55, 0.05], [0.55, 0.4], [0.05, 0.4]]  # the far wall (4-7 m) above the floor
NEAR_WALL = Box(0.2, 0.1, 0.4, 0.35, 1.8)


def test_relative_mode_raises_and_clears_an_alert() -> None:
    cfg = config(reference={"mode": "relative"}, zones=[{"name": "wall", "polygon": WALL}])
    box = Box(*NEAR_WALL.as_tuple()[:4], 1.4)  # as near as the nearest floor: relative distance about 0
    timeline = keyframes((3.0, box), (10.0, box), (10.01, None))
    run = replay(CameraAlerts("cam", cfg), frames(load_scene(SCENE), timeline, duration_s=16))
    assert run.types(zone="wall") == ["new", "update", "end"]
    new = run.events()[0]
    assert new.unit == "relative"
    assert new.nearest is not None and new.nearest < 0.2


def test_metric_mode_reports_the_object_distance_in_metres() -> None:
    scene = load_scene(SCENE)
    points = [p.model_dump() for p in reference_points(scene)]
    wall = {"name": "wall", "polygon": WALL, "enter": 2.5}
    cfg = config(reference={"mode": "metric", "metric": {"points": points}}, zones=[wall])
    timeline = keyframes((2.0, NEAR_WALL), (8.0, NEAR_WALL), (8.01, None))
    run = replay(CameraAlerts("cam", cfg), frames(scene, timeline, duration_s=12))
    events = run.events(zone="wall")
    assert [e.type for e in events] == ["new", "update", "end"]
    assert events[0].unit == "m" and events[0].nearest is not None
    assert abs(events[0].nearest - 1.8) < 0.18
    assert all(out.calibrated for out in run.outputs)
