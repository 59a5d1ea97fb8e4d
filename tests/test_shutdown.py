"""A clean stop leaves nothing false behind: open obstacle alerts end (reason ``shutdown``) and their zones turn
OFF, while a latched fall stays latched and is latched again at the next start, from the state directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.alerts.events import NO_STATS, OpenAlert, Origin
from edge_depth.alerts.kinds import NOTHING, FrameView, restore_state, saved_state, shutdown_step
from edge_depth.config.alerts import CameraAlertsConfig
from edge_depth.config.schema import CameraConfig
from edge_depth.mqtt.topics import Topics
from edge_depth.outputs.camera import CameraOutput
from tests.support.scenes import Box, frames, keyframes, load_scene, person, posture, replay
from tests.test_alerts_kinds import Wire
from tests.test_status import Recorder

SCENE = "nyu_00122"
DOOR = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]
NEAR = Box(0.2, 0.3, 0.4, 0.9, 1.5)
STANDING = person(0.3, 0.92, 0.6, 1.5)
LYING = posture(STANDING, 0.25, 3.5)
FALL = keyframes((6.0, STANDING), (10.0, STANDING), (10.7, LYING))


def config(**alerts: Any) -> CameraAlertsConfig:
    return CameraAlertsConfig.model_validate(alerts)


def test_shutdown_ends_open_obstacle_alerts_and_turns_their_zones_off() -> None:
    camera = CameraAlerts("cam", config(zones=[{"name": "door", "polygon": DOOR}]))
    run = replay(camera, frames(load_scene(SCENE), keyframes((7.0, NEAR)), duration_s=12))
    new = run.events(zone="door")[0]
    assert new.type == "new" and run.changes("door") == [True]

    events, states = camera.shutdown()

    assert [(e.type, e.id, e.reason) for e in events] == [("end", new.id, "shutdown")]
    assert events[0].frame == run.frames[-1].seq and events[0].last_seen <= run.frames[-1].captured_wall
    assert states == (("door", False),)
    assert camera.shutdown() == ((), ())  # nothing left open: a second stop says nothing


def test_shutdown_publishes_the_ends_then_the_off_states() -> None:
    cfg = CameraConfig.model_validate(
        {"name": "cam", "source": "rtsp://cam/stream", "alerts": {"zones": [{"name": "door", "polygon": DOOR}]}}
    )
    recorder = Recorder()
    output = CameraOutput(cfg, Topics("ed"), recorder, CameraAlerts("cam", cfg.alerts))
    for frame in frames(load_scene(SCENE), keyframes((7.0, NEAR)), duration_s=12):
        output.handle(frame)
    assert recorder.retained["ed/cam/door/state"] == "ON"

    output.shutdown()

    end = json.loads(recorder.published[-1][1])
    assert recorder.published[-1][0] == "ed/cam/alert"
    assert (end["type"], end["reason"], end["zone"]) == ("end", "shutdown", "door")
    assert recorder.retained["ed/cam/door/state"] == "OFF"


def test_a_latched_fall_stays_latched_across_a_restart(tmp_path: Path) -> None:
    cfg = config(fall={"enabled": True, "update_interval_s": 5}, zones=[{"name": "door", "polygon": DOOR}])
    first = CameraAlerts("cam", cfg, state_dir=tmp_path)
    run = replay(first, frames(load_scene(SCENE), FALL, duration_s=16))
    new = run.events(kind="fall")[0]
    assert new.type == "new" and run.changes("fall") == [True]

    events, states = first.shutdown()
    assert [e.kind for e in events] == ["obstacle"]  # the person also stood in the door zone: that one ends
    assert dict(states) == {"door": False}  # latched: no end for the fall, and its state stays ON
    first.save()
    assert json.loads((tmp_path / "cam.alerts.json").read_text())["fall"]["id"] == new.id

    second = CameraAlerts("cam", cfg, state_dir=tmp_path)  # the next start: baseline and fall come back
    later = replay(second, frames(load_scene(SCENE), FALL, duration_s=2, start_s=16))
    assert ("fall", True) in later.outputs[0].zone_states
    reminder = later.events(kind="fall")
    assert [(e.type, e.id, e.latched) for e in reminder] == [("update", new.id, True)]
    assert reminder[0].start == new.start and reminder[0].bbox == new.bbox

    assert second.acknowledge(new.id)  # the restored alert is the same alert: its id clears it
    after = replay(second, frames(load_scene(SCENE), FALL, duration_s=1, start_s=18))
    assert [(e.type, e.reason) for e in after.events(kind="fall")] == [("end", "acknowledged")]
    second.save()
    assert json.loads((tmp_path / "cam.alerts.json").read_text()) == {}  # nothing latched any more

    third = CameraAlerts("cam", cfg, state_dir=tmp_path)
    assert replay(third, frames(load_scene(SCENE), FALL, duration_s=1, start_s=19)).events(kind="fall") == []


def test_a_restored_fall_freezes_the_baseline_where_the_person_lies(tmp_path: Path) -> None:
    cfg = config(fall={"enabled": True})
    first = CameraAlerts("cam", cfg, state_dir=tmp_path)
    replay(first, frames(load_scene(SCENE), FALL, duration_s=16))
    first.save()
    second = CameraAlerts("cam", cfg, state_dir=tmp_path)
    fall = next(kind for kind in second._kinds if saved_state(kind) is not None)
    view = next(frames(load_scene(SCENE), FALL, duration_s=1, start_s=16))
    masks = second._masks.get(view.depth.shape)
    step = fall.step(FrameView(view.seq, view.captured_mono, view.captured_wall, None, masks))
    assert step.frozen is not None and step.frozen.any() and not step.frozen.all()


def test_a_damaged_state_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "cam.alerts.json").write_text("{not json")
    CameraAlerts("cam", config(fall={"enabled": True}), state_dir=tmp_path)  # starts, with nothing restored
    (tmp_path / "cam.alerts.json").write_text(json.dumps({"fall": {"id": "x"}}))
    camera = CameraAlerts("cam", config(fall={"enabled": True}), state_dir=tmp_path)
    events, states = camera.shutdown()
    assert events == () and states == (("fall", False),)


def test_kinds_without_the_hooks_keep_the_default_behaviour() -> None:
    """The toy kind of the protocol's tests has neither hook: nothing of it ends, nothing is kept or restored."""
    wire = Wire(config(), object(), Origin("cam", "baseline", "int8"))  # type: ignore[arg-type]
    wire.alert = OpenAlert("cam-wire-1", 0.0, 0.0, NO_STATS)
    assert shutdown_step(wire, 7, 1.0) is NOTHING
    assert saved_state(wire) is None
    restore_state(wire, {"wire": {"id": "x"}})
    assert wire.alert.id == "cam-wire-1" and wire.states() == {"wire": True}
