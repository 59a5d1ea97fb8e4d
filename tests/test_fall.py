"""Fall detection on a real NYU room with a person-like box that falls, bends, sits, crouches or walks past.

The person stands 1.5 m from the camera, 0.6 image heights tall (width/height 0.3 in pixels), from t = 6 s
(after the baseline is learned); frames at 15 fps with MiDaS-like jitter and noise.
"""

from __future__ import annotations

from typing import Any

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.config.alerts import CameraAlertsConfig
from tests.support.scenes import (
    Box,
    Run,
    Timeline,
    combine,
    frames,
    keyframes,
    load_scene,
    person,
    posture,
    replay,
)

SCENE = "nyu_00122"
STANDING = person(0.3, 0.92, 0.6, 1.5)
LYING = posture(STANDING, 0.25, 3.5)


def alerts(**fall: Any) -> CameraAlerts:
    cfg: dict[str, Any] = {"fall": {"enabled": True, **fall}}
    return CameraAlerts("cam", CameraAlertsConfig.model_validate(cfg))


def run(timeline: Timeline, duration_s: float, camera: CameraAlerts | None = None) -> Run:
    return replay(camera or alerts(), frames(load_scene(SCENE), timeline, duration_s=duration_s))


def transition(to: Box, start: float, seconds: float, stay: float, back: bool = False) -> Timeline:
    """Stand from 6 s, change posture to ``to`` between ``start`` and ``start + seconds``, hold ``stay`` s."""
    keys: list[tuple[float, Box | None]] = [(6.0, STANDING), (start, STANDING), (start + seconds, to)]
    if back:
        keys += [(start + seconds + stay, to), (start + 2 * seconds + stay, STANDING)]
    return keyframes(*keys)


def test_a_fall_raises_one_latched_alert_until_acknowledged() -> None:
    camera = alerts(update_interval_s=5)
    fall = transition(LYING, 10.0, 0.7, 0)
    result = run(fall, 25, camera)
    events = result.events(kind="fall")
    assert [e.type for e in events] == ["new", "update", "update"]
    new = events[0]
    assert 12.0 <= result.time_of(new) <= 13.0  # confirm_s after the drop
    assert 10.0 <= new.start - result.frames[0].captured_wall <= 10.7  # when it fell
    assert new.zone == "fall" and new.latched and new.severity == "critical"
    assert new.bbox is not None and new.bbox[3] - new.bbox[1] < 0.25  # low and wide
    assert result.changes("fall") == [True]
    assert result.outputs[0].zone_states == (("fall", False),)
    assert any(out.snapshot_zones == ("fall",) for out in result.outputs)

    assert not camera.acknowledge("cam-fall-0")
    assert camera.acknowledge(new.id)
    after = replay(camera, frames(load_scene(SCENE), fall, duration_s=10, start_s=25))
    ended = after.events(kind="fall")
    assert [e.type for e in ended] == ["end"]
    assert ended[0].id == new.id and ended[0].acknowledged and not ended[0].latched
    assert ended[0].reason == "acknowledged"
    assert after.outputs[0].events == (ended[0],)  # comes out with the next frame
    assert ended[0].frame == after.frames[0].seq - 1  # the last frame seen when the ack arrived
    assert [s for out in after.outputs for s in out.zone_states] == [("fall", False)]
    assert not camera.acknowledge(new.id)  # already cleared


def test_a_latched_fall_ends_when_the_person_gets_up() -> None:
    result = run(transition(LYING, 10.0, 0.7, 8.0, back=True), 30)
    assert result.types(kind="fall") == ["new", "end"]
    end = result.events(kind="fall")[1]
    assert end.reason == "risen" and not end.acknowledged
    assert 19.4 <= result.time_of(end) <= 21.5  # up at 19.4 s, then rise_s


def test_a_fallen_person_is_not_absorbed_into_the_baseline() -> None:
    camera = CameraAlerts(
        "cam",
        CameraAlertsConfig.model_validate(
            {"fall": {"enabled": True, "update_interval_s": 10}, "reference": {"baseline": {"absorb_after_s": 5}}}
        ),
    )
    result = run(transition(LYING, 10.0, 0.7, 0), 40, camera)
    assert result.types(kind="fall") == ["new", "update", "update"]  # reminders, still latched
    assert result.changes("fall") == [True]


def test_bending_over_is_not_a_fall() -> None:
    bent = posture(STANDING, 0.6, 0.9)
    assert run(transition(bent, 10.0, 0.6, 4.0, back=True), 20).events() == []


def test_bending_over_and_staying_down_is_not_a_fall() -> None:
    bent = posture(STANDING, 0.55, 1.0)
    assert run(transition(bent, 10.0, 0.6, 8.0), 20).events() == []


def test_sitting_down_is_not_a_fall() -> None:
    seated = posture(STANDING, 0.65, 0.6)
    assert run(transition(seated, 10.0, 1.5, 10.0), 22).events() == []


def test_crouching_is_not_a_fall() -> None:
    crouched = posture(STANDING, 0.5, 0.8)
    assert run(transition(crouched, 10.0, 0.5, 5.0, back=True), 20).events() == []


def test_walking_past_is_not_a_fall() -> None:
    walk = keyframes((6.0, STANDING.moved(dx=-0.35)), (12.0, STANDING.moved(dx=0.75)), (12.01, None))
    assert run(walk, 16).events() == []


def test_a_slow_lie_down_is_not_a_fall() -> None:
    """Lying down on purpose takes seconds: the top edge drops too slowly."""
    assert run(transition(LYING, 10.0, 4.0, 5.0), 22).events() == []


def test_lying_down_inside_an_exclusion_is_not_a_fall() -> None:
    bed = {"name": "bed", "polygon": [[0.1, 0.7], [0.55, 0.7], [0.55, 1.0], [0.1, 1.0]]}
    camera = CameraAlerts("cam", CameraAlertsConfig.model_validate({"fall": {"enabled": True}, "exclusions": [bed]}))
    assert run(transition(LYING, 10.0, 0.7, 0), 20, camera).events() == []
    assert run(transition(LYING, 10.0, 0.7, 0), 20).types(kind="fall") == ["new"]  # control: without the bed


def test_a_fall_event_carries_its_evidence() -> None:
    new = run(transition(LYING, 10.0, 0.7, 0), 14).events(kind="fall")[0]
    evidence = new.payload()["evidence"]
    assert isinstance(evidence, dict)
    assert evidence["drop_speed"] > 1.0  # standing heights per second: 0.75 of the height in 0.7 s
    assert 0.5 <= evidence["drop"] <= 0.9 and evidence["aspect"] >= 1.2 and evidence["height"] <= 0.6
    assert 2.0 <= evidence["down_s"] <= 2.5 and 0.5 <= evidence["standing_height"] <= 0.7


def test_a_passer_by_neither_ends_a_fall_nor_reads_as_one() -> None:
    """Regions are tracked: a taller person walking past a fallen one is not the fallen one getting up."""
    passer = person(0.85, 0.95, 0.75, 1.2)
    walk = keyframes((16.0, passer), (18.0, passer.moved(dx=-0.2)), (18.01, None))
    result = run(combine(transition(LYING, 10.0, 0.7, 0), walk), 22)
    assert result.types(kind="fall") == ["new"]
    assert result.changes("fall") == [True]


def test_a_camera_at_full_speed_sees_the_same_fall() -> None:
    """Windows are in seconds, not frames: at 60 fps (a file read at full speed holds four times the history of
    a 15 fps camera in every window) the same fall is confirmed as fast, with the same measured drop."""
    timeline = transition(LYING, 10.0, 0.7, 0)
    slow_run = run(timeline, 14)
    slow = slow_run.events(kind="fall")
    fast_run = replay(alerts(), frames(load_scene(SCENE), timeline, duration_s=14, fps=60.0))
    fast = fast_run.events(kind="fall")
    assert [e.type for e in slow] == [e.type for e in fast] == ["new"]
    slow_evidence, fast_evidence = slow[0].payload()["evidence"], fast[0].payload()["evidence"]
    assert isinstance(slow_evidence, dict) and isinstance(fast_evidence, dict)
    assert abs(fast_evidence["drop"] - slow_evidence["drop"]) <= 0.05
    assert abs(fast_evidence["drop_speed"] - slow_evidence["drop_speed"]) <= 0.2 * slow_evidence["drop_speed"]
    assert abs(fast_run.time_of(fast[0]) - slow_run.time_of(slow[0])) <= 0.2
