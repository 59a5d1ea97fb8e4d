"""Depth health: a covered, dark or featureless view makes the depth unreliable and suppresses alerts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.alerts.health import HealthMonitor
from edge_depth.config.alerts import CameraAlertsConfig, HealthConfig
from edge_depth.depthstats import grid_stats
from tests.support.scenes import T0_MONO, Box, Run, frames, keyframes, load_scene, replay

SCENE = "nyu_00122"
DOOR = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]
Override = Callable[[float, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def covered_between(start: float, stop: float, *, grey: int = 6) -> Override:
    """A hand over the lens: a dark, nearly uniform image and the nearly flat depth MiDaS makes of it."""
    rng = np.random.default_rng(11)

    def override(t: float, depth: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not start <= t < stop:
            return depth, image
        dark = np.clip(grey + rng.normal(0, 1.5, image.shape), 0, 255).astype(np.uint8)
        flat = np.float32(300) + rng.standard_normal(depth.shape, dtype=np.float32) * np.float32(0.5)
        return flat, dark

    return override


def camera(**alerts: Any) -> CameraAlerts:
    alerts.setdefault("zones", [{"name": "door", "polygon": DOOR}])
    return CameraAlerts("cam", CameraAlertsConfig.model_validate(alerts))


def covered_run(cam: CameraAlerts, timeline: Any = None, duration_s: float = 30) -> Run:
    timeline = timeline or keyframes((0.0, None))
    scene = load_scene(SCENE)
    return replay(cam, frames(scene, timeline, duration_s=duration_s, override=covered_between(10, 20)))


def test_a_covered_lens_makes_depth_unreliable_and_raises_no_alert() -> None:
    run = covered_run(camera())
    assert run.events() == []
    health = {round(f.captured_mono - T0_MONO, 3): out.health for f, out in zip(run.frames, run.outputs, strict=True)}
    assert health[9.933].reliable
    assert not health[10.2].reliable and health[10.2].reason == "dark" and health[10.2].status == "depth unreliable"
    assert all(not h.reliable for t, h in health.items() if 10.2 <= t < 20)
    assert not health[20.4].reliable  # recovery needs recover_frames good frames in a row
    assert all(h.reliable and h.reason is None for t, h in health.items() if t >= 20.7)
    assert all(
        out.nearest is None
        for f, out in zip(run.frames, run.outputs, strict=True)
        if 10 <= f.captured_mono - T0_MONO < 20
    )


def test_without_health_checks_the_covered_lens_would_alert() -> None:
    """Control for the test above: the covered frames do look like an obstacle to the depth logic."""
    run = covered_run(camera(health={"enabled": False}))
    assert "new" in run.types(zone="door")


def test_an_open_alert_stays_open_while_the_lens_is_covered() -> None:
    """Unknown is not gone: the alert ends only once the view is back and the zone is empty."""
    obj = Box(0.2, 0.3, 0.4, 0.9, 1.5)
    run = covered_run(camera(), keyframes((7.0, obj), (15.0, obj), (15.01, None)))
    events = run.events(zone="door")
    assert [e.type for e in events] == ["new", "end"]
    assert run.time_of(events[0]) < 10
    assert 20.6 < run.time_of(events[1]) < 23.5  # recovered (10 frames), then hold_s
    assert run.changes("door") == [True, False]


@pytest.mark.parametrize(
    ("grey", "flat", "nan_fraction", "reason"),
    [
        (200, False, 0.0, "covered"),
        (5, False, 0.0, "dark"),
        (None, True, 0.0, "flat depth"),
        (None, False, 0.7, "invalid depth"),
    ],
)
def test_each_kind_of_unreliable_view_has_its_reason(
    grey: int | None, flat: bool, nan_fraction: float, reason: str
) -> None:
    scene = load_scene(SCENE)
    monitor = HealthMonitor(HealthConfig(bad_frames=2, recover_frames=3))
    rng = np.random.default_rng(2)
    normal = scene.inverse * np.float32(800)
    for i in range(5):
        assert monitor.update(scene.image, normal, i / 15).reliable
    image = scene.image if grey is None else np.full_like(scene.image, grey)
    depth = normal.copy()
    if flat:
        depth = np.float32(300) + rng.standard_normal(depth.shape, dtype=np.float32)
    depth[rng.random(depth.shape) < nan_fraction] = np.nan
    first = monitor.update(image, depth, 5 / 15)
    assert first.reliable and not first.frame_ok  # one bad frame is not yet a verdict
    second = monitor.update(image, depth, 6 / 15)
    assert not second.reliable and second.reason == reason
    for i in range(3):
        back = monitor.update(scene.image, normal, (7 + i) / 15)
    assert back.reliable and back.reason is None


def test_the_callers_grid_stats_give_the_same_verdicts() -> None:
    """CameraOutput computes the frame's grid statistics once for the heatmap and the health: the same health."""
    scene = load_scene(SCENE)
    rng = np.random.default_rng(4)
    normal = scene.inverse * np.float32(800)
    flat = np.float32(300) + rng.standard_normal(normal.shape, dtype=np.float32)
    holes = normal.copy()
    holes[rng.random(holes.shape) < 0.3] = np.nan
    dark = np.full_like(scene.image, 5)
    views = [(scene.image, normal)] * 4 + [(scene.image, flat)] * 3 + [(scene.image, holes), (dark, normal)] * 2
    own, shared = HealthMonitor(HealthConfig(bad_frames=2)), HealthMonitor(HealthConfig(bad_frames=2))
    for i, (image, depth) in enumerate(views * 2):
        assert own.update(image, depth, i / 15) == shared.update(image, depth, i / 15, grid_stats(depth))


@pytest.mark.parametrize("shape", [(128, 256, 3), (130, 254, 3), (3, 5, 3)])
def test_brightness_and_contrast_are_those_of_the_grids_grey_pixels(shape: tuple[int, int, int]) -> None:
    image = np.random.default_rng(8).integers(0, 256, shape, np.uint8)
    health = HealthMonitor(HealthConfig()).update(image, np.ones(shape[:2], np.float32), 0.0)
    mean, std = cv2.meanStdDev(cv2.cvtColor(np.ascontiguousarray(image[::4, ::4]), cv2.COLOR_BGR2GRAY))
    assert (health.brightness, health.contrast) == (float(mean[0, 0]), float(std[0, 0]))
