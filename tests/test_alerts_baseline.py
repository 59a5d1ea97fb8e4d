"""The learned baseline: persistence, adaptation to a moved chair, and no absorption of a person standing still."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.config.alerts import CameraAlertsConfig
from tests.support.scenes import Box, frames, keyframes, load_scene, person, replay

SCENE = "nyu_00122"
DOOR = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]
OBJECT = Box(0.2, 0.3, 0.4, 0.9, 1.5)


def config(**alerts: Any) -> CameraAlertsConfig:
    alerts.setdefault("zones", [{"name": "door", "polygon": DOOR}])
    return CameraAlertsConfig.model_validate(alerts)


def test_a_saved_baseline_reloads_and_gives_the_same_alerts(tmp_path: Path) -> None:
    timeline = keyframes((8.0, OBJECT), (16.0, OBJECT), (16.01, None))
    scene_frames = list(frames(load_scene(SCENE), timeline, duration_s=25))
    learned = CameraAlerts("cam", config(), state_dir=tmp_path)
    replay(learned, scene_frames[:90])  # 6 s: learned in the first 5
    assert learned.baseline_ready
    learned.save()
    assert (tmp_path / "cam.baseline.npy").is_file()

    reloaded = CameraAlerts("cam", config(), state_dir=tmp_path)
    assert reloaded.baseline_ready
    later = scene_frames[90:]
    original, again = replay(learned, later), replay(reloaded, later)
    assert original.types() == ["new", "update", "end"]
    assert [e.payload() for e in again.events()] == [e.payload() for e in original.events()]
    assert again.outputs[0].calibrated  # no learning period after a restart


def test_a_baseline_of_another_shape_is_learned_again(tmp_path: Path) -> None:
    np.save(tmp_path / "cam.baseline.npy", np.zeros((96, 128), np.float32))
    alerts = CameraAlerts("cam", config(), state_dir=tmp_path)
    run = replay(alerts, frames(load_scene(SCENE), keyframes((0.0, None)), duration_s=6))
    assert not run.outputs[0].calibrated  # learning, not comparing against a wrong-sized baseline
    assert run.outputs[-1].calibrated and alerts.baseline_ready


def test_an_unreadable_baseline_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "cam.baseline.npy").write_bytes(b"not numpy")
    with caplog.at_level(logging.WARNING):
        alerts = CameraAlerts("cam", config(), state_dir=tmp_path)
    assert not alerts.baseline_ready
    assert "cam.baseline.npy" in caplog.text


def test_a_person_standing_still_for_a_minute_is_not_absorbed() -> None:
    still = person(0.3, 0.92, 0.6, 1.5)
    timeline = keyframes((6.0, still), (70.0, still), (70.01, None))
    run = replay(CameraAlerts("cam", config()), frames(load_scene(SCENE), timeline, duration_s=74, fps=10))
    events = run.events(zone="door")
    assert [e.type for e in events[:1]] == ["new"] and events[-1].type == "end"
    assert run.time_of(events[-1]) >= 70.0  # ended only when the person left, not by absorption
    assert run.changes("door") == [True, False]
    assert all(e.occupied_fraction > 0.2 for e in events[:-1])  # still fully seen after a minute


def test_a_moved_chair_is_absorbed_after_absorb_after_s() -> None:
    """A chair that was part of the empty scene is moved into the zone and stays there."""
    before, after = Box(0.6, 0.55, 0.75, 0.85, 2.0), Box(0.2, 0.55, 0.35, 0.85, 2.0)
    timeline = keyframes((0.0, before), (6.0, before), (6.01, after))
    cfg = config(reference={"baseline": {"absorb_after_s": 20}})
    alerts = CameraAlerts("cam", cfg)
    run = replay(alerts, frames(load_scene(SCENE), timeline, duration_s=40, fps=10))
    assert run.types(zone="door") == ["new", "update", "update", "update", "end"]
    new, end = run.events(zone="door")[0], run.events(zone="door")[-1]
    assert run.time_of(new) < 8.0
    assert 26.0 <= run.time_of(end) <= 30.0  # absorbed 20 s after the move, then hold_s
    last = run.frames[-1]
    measure = alerts._reference.measure(last.depth, last.captured_mono)  # both the new and the old place
    assert measure is not None and measure.foreground is not None
    assert measure.foreground.mean() < 0.01


def test_reset_baseline_relearns_the_scene_as_it_is_now() -> None:
    timeline = keyframes((6.0, OBJECT))
    alerts = CameraAlerts("cam", config())
    scene_frames = list(frames(load_scene(SCENE), timeline, duration_s=30))
    first = replay(alerts, scene_frames[:150])
    assert first.types() == ["new"]
    alerts.reset_baseline()
    second = replay(alerts, scene_frames[150:])
    assert not second.outputs[0].calibrated and second.outputs[-1].calibrated
    assert second.types() == ["end"]  # the object is part of the new empty scene
