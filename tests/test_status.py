"""A camera's status says what is true: figures from the first result on, no rate for a camera that stopped,
frames skipped by ``fps_limit`` apart from frames lost to overload, and its connection quality in one word."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.capture import reader as reader_module
from edge_depth.capture.hub import FrameHub
from edge_depth.capture.quality import QUALITIES, connection_quality
from edge_depth.capture.reader import STALL_GAP_S, CameraReader, CaptureState
from edge_depth.config import CameraConfig
from edge_depth.config.alerts import CameraAlertsConfig
from edge_depth.frames import DepthFrame, Frame
from edge_depth.mqtt.topics import Topics
from edge_depth.outputs.camera import FIRST_STATUS_RESULTS, CameraOutput
from edge_depth.outputs.status import RATES, camera_status

# Every field of <prefix>/<camera>/status: the README's table documents exactly these.
STATUS_FIELDS = {
    "camera", "state", "since", "source", "last_error", "connection_quality",
    "capture_fps", "delivered_fps", "expected_fps", "fps",
    "frames_read", "frames_skipped", "frames_dropped", "frames_processed",
    "reconnects", "reconnects_last_hour", "stalls", "stalls_last_hour",
    "inference_ms", "latency_ms", "heatmaps_published", "alerts_published",
    "input_size", "depth", "reference",
    "device", "device_requested", "model", "precision", "inference_precision",
}  # fmt: skip


def capture_state(state: str = "online", **fields: Any) -> CaptureState:
    base = CaptureState(
        camera="porch",
        state="online",
        frames_read=2008,
        frames_dropped=3,
        frames_stale=3,
        frames_skipped=1035,
        reconnects=0,
        fps=25.11,
        last_error=None,
        source="rtsp://porch/stream",
        since=0.0,
        delivered_fps=12.4,
        expected_fps=12.5,
    )
    return replace(base, state=state, **fields)  # type: ignore[arg-type]


FIGURES = {"fps": 12.3, "frames_processed": 970, "input_size": "256x192", "inference_ms": 30.0}


# ------------------------------------------------------------------------------------------- quality


@pytest.mark.parametrize(
    "case",
    [
        ("online", 24.8, 25.0, 0, 0, "excellent"),
        ("online", 24.8, None, 0, 0, "excellent"),  # no expected rate: only reconnects and stalls count
        ("online", 22.0, 25.0, 0, 0, "fair"),  # 88 % of the expected rate
        ("online", 24.8, 25.0, 1, 0, "fair"),  # one reconnect in the last hour
        ("online", 24.8, 25.0, 0, 3, "fair"),
        ("online", 15.0, 25.0, 0, 0, "poor"),  # 60 %
        ("online", 24.8, 25.0, 5, 0, "poor"),
        ("online", 24.8, 25.0, 0, 12, "poor"),
        ("online", 10.0, 25.0, 0, 0, "unusable"),  # 40 %
        ("online", 24.8, 25.0, 11, 0, "unusable"),
        ("online", 24.8, 25.0, 0, 21, "unusable"),
        ("online", 0.0, 25.0, 0, 0, "unusable"),  # frozen: online, yet nothing arrives
        ("reconnecting", None, 25.0, 1, 0, "unusable"),
        ("error", None, None, 0, 0, "unusable"),
        ("online", None, 25.0, 0, 0, None),  # the rate is not measured yet
        ("starting", None, 25.0, 0, 0, None),
        ("ended", 0.0, 25.0, 0, 0, None),
        ("stopped", 0.0, 25.0, 0, 0, None),
    ],
)
def test_connection_quality_grades_rate_reconnects_and_stalls(
    case: tuple[str, float | None, float | None, int, int, str | None],
) -> None:
    """(state, delivered fps, expected fps, reconnects and stalls in the last hour, quality)."""
    state, delivered, expected, reconnects, stalls, quality = case
    grade = connection_quality(
        state,
        delivered_fps=delivered,
        expected_fps=expected,
        reconnects_last_hour=reconnects,
        stalls_last_hour=stalls,
    )
    assert grade == quality
    assert grade is None or grade in QUALITIES


# -------------------------------------------------------------------------------------------- status


def test_the_status_has_every_documented_field() -> None:
    assert set(camera_status("porch", capture_state(), FIGURES | figures_of_output(), None)) == STATUS_FIELDS
    assert set(camera_status("porch", None, figures_of_output(), None)) == STATUS_FIELDS


@pytest.mark.parametrize("state", ["stopped", "ended", "error", "reconnecting"])
def test_a_camera_that_is_not_online_reports_no_rate(state: str) -> None:
    status = camera_status("porch", capture_state(state), FIGURES, None)
    assert {rate: status[rate] for rate in RATES} == dict.fromkeys(RATES, 0.0)
    assert status["frames_processed"] == 970  # counters stay: they are totals, not rates
    live = camera_status("porch", capture_state("online"), FIGURES, None)
    assert (live["fps"], live["capture_fps"], live["delivered_fps"]) == (12.3, 25.11, 12.4)


def test_frames_skipped_by_fps_limit_are_not_dropped() -> None:
    status = camera_status("porch", capture_state(), FIGURES, None)
    assert (status["frames_skipped"], status["frames_dropped"]) == (1035, 3)
    assert status["connection_quality"] == "excellent"  # 12.4 of the 12.5 fps asked for


def test_unreliable_depth_is_said_in_the_state() -> None:
    assert camera_status("porch", capture_state(), FIGURES, None, depth_reliable=False)["state"] == "depth unreliable"
    assert camera_status("porch", capture_state("ended"), FIGURES, None, depth_reliable=False)["state"] == "ended"


class Recorder:
    """A ``Publisher`` that keeps what it is given."""

    def __init__(self) -> None:
        self.retained: dict[str, bytes | str] = {}
        self.published: list[tuple[str, bytes | str]] = []

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False) -> bool:
        self.published.append((topic, payload))
        return True

    def set_retained(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self.retained[topic] = payload


def figures_of_output() -> dict[str, Any]:
    cfg = CameraConfig.model_validate({"name": "porch", "source": "rtsp://porch/stream"})
    return CameraOutput(cfg, Topics("ed"), Recorder(), CameraAlerts("porch", CameraAlertsConfig())).figures()


def test_the_status_refreshed_once_the_first_results_are_in_already_counts_them() -> None:
    """The first results trigger a status refresh: made then, it must show them, not zeros and nulls."""
    cfg = CameraConfig.model_validate({"name": "porch", "source": "rtsp://porch/stream"})
    seen: list[dict[str, Any]] = []
    output: CameraOutput | None = None

    def refresh(camera: str) -> None:
        assert output is not None and camera == "porch"
        seen.append(output.figures())

    alerts = CameraAlerts("porch", CameraAlertsConfig())
    output = CameraOutput(cfg, Topics("ed"), Recorder(), alerts, on_health_change=refresh)
    rng = np.random.default_rng(0)
    for seq in range(1, FIRST_STATUS_RESULTS + 3):
        result = DepthFrame(
            camera="porch",
            seq=seq,
            captured_mono=time.monotonic(),
            captured_wall=time.time(),
            image=rng.integers(0, 256, (192, 256, 3), np.uint8),
            depth=rng.random((192, 256), dtype=np.float32),
            infer_ms=20.0,
        )
        output.handle(result)
    assert len(seen) == 1, "one refresh for the first results (the depth health did not change)"
    assert seen[0]["frames_processed"] == FIRST_STATUS_RESULTS and seen[0]["input_size"] == "256x192"
    assert seen[0]["fps"] > 0 and seen[0]["inference_ms"] == 20.0


# ------------------------------------------------------------------------------------ reader counters


@pytest.fixture
def readers() -> Iterator[list[CameraReader]]:
    started: list[CameraReader] = []
    yield started
    for reader in started:
        reader.stop(timeout=5)


def take(hub: FrameHub, count: int, timeout: float = 20) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count and time.monotonic() < deadline:
        frame = hub.take(timeout=1.0)
        if frame is not None:
            frames.append(frame)
    assert len(frames) == count, f"{len(frames)} of {count} frames"
    return frames


def test_delivered_rate_is_measured_against_fps_limit(sample_clip: Path, readers: list[CameraReader]) -> None:
    cfg = CameraConfig.model_validate(
        {"name": "clip", "source": str(sample_clip), "loop": True, "realtime": True, "fps_limit": 5}
    )
    hub = FrameHub()
    reader = CameraReader(cfg, hub, lambda image: image[::4, ::4], threading.Event())
    readers.append(reader)
    reader.start()
    take(hub, 16)  # 3 s at 5 fps: past the 2 s before a delivered rate is reported

    state = reader.state()
    assert state.expected_fps == 5.0  # the limit, below the clip's own 25 fps
    assert state.delivered_fps is not None and 4.5 <= state.delivered_fps <= 6.0
    assert 20 <= state.fps <= 30  # decoded at the clip's rate
    assert state.frames_skipped >= 3 * 16 and state.frames_dropped == state.frames_stale == 0
    status = camera_status("clip", state, {}, None)
    assert status["connection_quality"] == "excellent" and status["frames_dropped"] == 0


class FreezingCapture:
    """A live source at 50 fps whose stream freezes once, after its 20th frame, for a little over a stall."""

    def __init__(self) -> None:
        self.count = 0
        self._pause = threading.Event()  # never set: wait() is the source's own frame interval

    def read(self) -> tuple[bool, np.ndarray]:
        self.count += 1
        self._pause.wait(STALL_GAP_S + 0.5 if self.count == 21 else 0.02)
        return True, np.zeros((48, 64, 3), np.uint8)

    def get(self, prop: int) -> float:
        # A live decoder's timestamp moves with every new frame (the reader ignores frames given again).
        return self.count * 20.0 if prop == cv2.CAP_PROP_POS_MSEC else 50.0

    def set(self, prop: int, value: float) -> bool:
        return False

    def isOpened(self) -> bool:  # noqa: N802 -- OpenCV's name
        return True

    def release(self) -> None:
        pass


def test_a_frozen_stream_counts_as_a_stall(monkeypatch: pytest.MonkeyPatch, readers: list[CameraReader]) -> None:
    monkeypatch.setattr(reader_module, "open_source", lambda cfg: FreezingCapture())
    cfg = CameraConfig.model_validate({"name": "live", "source": "rtsp://live/stream", "stall_timeout_s": 20})
    hub = FrameHub()
    reader = CameraReader(cfg, hub, lambda image: image, threading.Event())
    readers.append(reader)
    reader.start()
    take(hub, 25)  # past the freeze

    state = reader.state()
    assert (state.stalls, state.stalls_last_hour, state.reconnects) == (1, 1, 0)
    assert state.expected_fps == 50.0  # the source's own rate, no fps_limit
    quality = connection_quality(
        "online", delivered_fps=50.0, expected_fps=50.0, reconnects_last_hour=0, stalls_last_hour=state.stalls_last_hour
    )
    assert quality == "fair"  # at full rate, but it stalled in the last hour
