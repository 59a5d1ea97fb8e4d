"""Recorded depth frames: saved, loaded and replayed with their timestamps, giving the same alerts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.capture.replay import Recording, save_recording
from edge_depth.config.alerts import CameraAlertsConfig
from tests.support.scenes import Box, frames, keyframes, load_scene, replay

DOOR = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]


def scenario() -> list:  # type: ignore[type-arg]
    obj = Box(0.2, 0.3, 0.4, 0.9, 1.5)
    return list(frames(load_scene("nyu_00122"), keyframes((7.0, obj), (9.0, obj), (9.01, None)), duration_s=12))


def test_a_recording_replays_frames_with_their_timestamps(tmp_path: Path) -> None:
    original = scenario()[100:140]
    path = tmp_path / "kitchen.npz"
    assert save_recording(path, original) == len(original)
    recording = Recording(path)
    assert len(recording) == len(original) and recording.shape == (192, 256) and recording.camera == "cam"
    assert recording.duration_s == pytest.approx(original[-1].captured_mono - original[0].captured_mono)
    for a, b in zip(original, recording, strict=True):
        assert (a.seq, a.captured_mono, a.captured_wall, a.camera) == (
            b.seq,
            b.captured_mono,
            b.captured_wall,
            b.camera,
        )
        assert b.depth.dtype == np.float32
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.image, b.image)
    assert {f.camera for f in Recording(path, camera="porch")} == {"porch"}


def test_replayed_alerts_equal_the_live_ones(tmp_path: Path) -> None:
    cfg = CameraAlertsConfig.model_validate({"zones": [{"name": "door", "polygon": DOOR}]})
    original = scenario()
    path = tmp_path / "rec.npz"
    save_recording(path, original, depth_dtype=np.float16)
    live = replay(CameraAlerts("cam", cfg), original)
    replayed = replay(CameraAlerts("cam", cfg), Recording(path))
    assert live.types() == ["new", "end"]
    assert [(e.type, e.id) for e in replayed.events()] == [(e.type, e.id) for e in live.events()]


def test_a_bad_recording_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.npz"
    with pytest.raises(ValueError, match=r"missing\.npz: cannot read depth recording"):
        Recording(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK not really a zip")
    with pytest.raises(ValueError, match=r"garbage\.npz: cannot read depth recording"):
        Recording(garbage)
    partial = tmp_path / "partial.npz"
    np.savez(partial, depth=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"partial\.npz: not a depth recording \(missing image, seq"):
        Recording(partial)
    with pytest.raises(ValueError, match="no frames"):
        save_recording(tmp_path / "empty.npz", [])
