"""Capture from the real sample clip and a real RTSP server: every frame, pacing, reconnects, redaction."""

from __future__ import annotations

import itertools
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_depth.capture.hub import FrameHub
from edge_depth.capture.reader import CameraReader, CaptureState
from edge_depth.capture.sources import Source, SourceError, explain, open_source, open_turn
from edge_depth.config import CameraConfig
from edge_depth.frames import Frame
from tests.support.rtsp import RtspServer

CLIP_FRAMES = 221
MODEL_SIZE = (256, 144)  # (width, height) the prepare step resizes to
STOP_WITHIN_S = 3.0


def prepare(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, MODEL_SIZE, interpolation=cv2.INTER_AREA)


def camera(name: str, source: str | int, **settings: Any) -> CameraConfig:
    return CameraConfig.model_validate({"name": name, "source": source, **settings})


def rtsp_camera(name: str, url: str, **settings: Any) -> CameraConfig:
    """Small timeouts so that outages are seen and recovered from in seconds."""
    base = {
        "open_timeout_s": 3,
        "read_timeout_s": 2,
        "stall_timeout_s": 2,
        "reconnect": {"initial_s": 0.5, "max_s": 2},
    }
    return camera(name, url, **{**base, **settings})


class StateLog:
    """Collects on_state calls; tests wait on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.states: list[CaptureState] = []

    def __call__(self, state: CaptureState) -> None:
        with self._cond:
            self.states.append(state)
            self._cond.notify_all()

    def names(self) -> list[str]:
        with self._cond:
            return [s.state for s in self.states]

    def wait_for(self, state: str, timeout: float, after: int = 0) -> CaptureState:
        """The first state named ``state`` among the calls from index ``after`` on."""
        with self._cond:
            found = self._cond.wait_for(lambda: self._find(state, after), timeout)
            assert found, f"no {state!r} within {timeout} s; states so far: {[s.state for s in self.states]}"
            return found

    def _find(self, state: str, after: int) -> CaptureState | None:
        return next((s for s in self.states[after:] if s.state == state), None)


class Consumer:
    """Takes frames from the hub as fast as it can in a thread, as the inference dispatcher does."""

    def __init__(self, hub: FrameHub) -> None:
        self._hub = hub
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.frames: dict[str, list[tuple[int, float]]] = {}  # camera -> [(seq, captured_mono)]
        self._thread = threading.Thread(target=self._run, name="test-consumer")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self._hub.take(timeout=0.1)
            if frame is not None:
                with self._cond:
                    self.frames.setdefault(frame.camera, []).append((frame.seq, frame.captured_mono))
                    self._cond.notify_all()

    def count(self, camera: str) -> int:
        with self._cond:
            return len(self.frames.get(camera, []))

    def wait_count(self, camera: str, n: int, timeout: float) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.frames.get(camera, [])) >= n, timeout)
        assert ok, f"camera {camera}: {self.count(camera)} frames within {timeout} s, expected {n}"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def readers() -> Iterator[list[CameraReader]]:
    """Readers a test starts; each must stop promptly at the end."""
    started: list[CameraReader] = []
    yield started
    slow = []
    for reader in started:
        t0 = time.monotonic()
        if not reader.stop(timeout=10) or time.monotonic() - t0 > STOP_WITHIN_S:
            slow.append(reader.name)
    assert not slow, f"readers that did not stop within {STOP_WITHIN_S} s: {slow}"


def start_reader(
    readers: list[CameraReader], cfg: CameraConfig, hub: FrameHub, **kwargs: Any
) -> tuple[CameraReader, StateLog]:
    states = StateLog()
    reader = CameraReader(cfg, hub, kwargs.pop("prepare", prepare), threading.Event(), on_state=states, **kwargs)
    readers.append(reader)
    reader.start()
    return reader, states


def take_frames(hub: FrameHub, n: int, timeout: float = 10.0) -> list[Frame]:
    frames: list[Frame] = []
    for _ in range(n):
        frame = hub.take(timeout)
        assert frame is not None, f"only {len(frames)} frames arrived, expected {n}"
        frames.append(frame)
    return frames


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------- sources


@pytest.mark.parametrize(
    ("source", "kind", "display"),
    [
        (0, "device", "/dev/video0"),
        ("2", "device", "/dev/video2"),
        ("/dev/video1", "device", "/dev/video1"),
        ("rtsp://admin:pw@10.0.0.5:554/s", "stream", "rtsp://admin:***@10.0.0.5:554/s"),
        ("https://cam.local/mjpg", "stream", "https://cam.local/mjpg"),
        ("clips/front door.mp4", "file", "clips/front door.mp4"),
    ],
)
def test_source_kinds(source: str | int, kind: str, display: str) -> None:
    parsed = Source.parse(source)
    assert (parsed.kind, parsed.display) == (kind, display)


def test_missing_file_and_absent_device_name_the_culprit(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"video file not found: .*nowhere\.mp4$"):
        open_source(camera("a", str(tmp_path / "nowhere.mp4")))
    with pytest.raises(SourceError, match=r"^video device not found: /dev/video63$"):
        open_source(camera("a", 63))


def test_decoding_takes_one_thread_unless_told_otherwise(sample_clip: Path, rtsp_server: RtspServer) -> None:
    # One decoding thread per camera by default (the cores are the model's and the other cameras'); 0 leaves it
    # to FFmpeg, which takes one per core; the frames are the same either way.
    frames = {}
    for threads in (None, 0, 3):
        settings = {} if threads is None else {"decoder_threads": threads}
        cap = open_source(camera("a", str(sample_clip), **settings))
        try:
            used = int(cap.get(cv2.CAP_PROP_N_THREADS))
            frames[threads] = [cap.read()[1] for _ in range(5)]
        finally:
            cap.release()
        assert used == {None: 1, 0: cv2.getNumberOfCPUs(), 3: 3}[threads], (threads, used)
    assert all(np.array_equal(a, b) for a, b in zip(frames[None], frames[0], strict=True))
    stream = open_source(rtsp_camera("b", rtsp_server.url))
    try:
        assert int(stream.get(cv2.CAP_PROP_N_THREADS)) == 1 and stream.read()[0]
    finally:
        stream.release()


# ------------------------------------------------------------------------------------------------ hub


def fake_frame(camera: str, seq: int) -> Frame:
    return Frame(camera, seq, float(seq), float(seq), np.zeros((2, 2, 3), np.uint8), (2, 2))


def test_hub_keeps_the_newest_frame_and_counts_drops() -> None:
    hub, stop = FrameHub(), threading.Event()
    for seq in range(1, 6):
        assert hub.put(fake_frame("a", seq), block=False, stop=stop)
    frame = hub.take(timeout=1)
    assert frame is not None and frame.seq == 5
    assert hub.dropped("a") == 4
    assert hub.take(timeout=0.05) is None  # taken frames are not served twice


def test_hub_serves_cameras_round_robin() -> None:
    hub, stop = FrameHub(), threading.Event()
    served = []
    for seq in range(1, 9):
        # a and b always have a frame waiting; c has one only from the fourth round on
        for cam in ("a", "b", "c") if seq >= 4 else ("a", "b"):
            hub.put(fake_frame(cam, seq), block=False, stop=stop)
        frame = hub.take(timeout=1)
        assert frame is not None
        served.append(frame.camera)
    assert served == ["a", "b", "a", "b", "c", "a", "b", "c"]


def test_hub_blocking_put_waits_for_the_consumer_and_gives_up_on_stop() -> None:
    hub, stop = FrameHub(), threading.Event()
    assert hub.put(fake_frame("a", 1), block=True, stop=stop)
    done = threading.Event()
    result: list[bool] = []

    def blocked_put(seq: int) -> None:
        result.append(hub.put(fake_frame("a", seq), block=True, stop=stop))
        done.set()

    threading.Thread(target=blocked_put, args=(2,)).start()
    assert not done.wait(0.3), "a blocking put must wait while the slot is full"
    first = hub.take(timeout=1)
    assert done.wait(5) and result == [True]
    second = hub.take(timeout=1)
    assert first is not None and second is not None and (first.seq, second.seq) == (1, 2)
    assert hub.dropped("a") == 0

    hub.put(fake_frame("a", 3), block=True, stop=stop)
    done.clear()
    threading.Thread(target=blocked_put, args=(4,)).start()
    stop.set()
    assert done.wait(5) and result == [True, False]


# ---------------------------------------------------------------------------------------------- files


def test_file_delivers_every_frame_in_order_then_ends(sample_clip: Path, readers: list[CameraReader]) -> None:
    hub = FrameHub()
    reader, states = start_reader(readers, camera("clip", str(sample_clip), realtime=False), hub)

    frames = take_frames(hub, CLIP_FRAMES)

    assert [f.seq for f in frames] == list(range(1, CLIP_FRAMES + 1))
    assert {(f.image.shape, f.image.dtype) for f in frames} == {((144, 256, 3), np.dtype(np.uint8))}
    assert {f.source_size for f in frames} == {(960, 540)}
    assert frames[0].image.std() > 10  # real picture content, not a blank buffer
    states.wait_for("ended", timeout=10)
    assert reader.join(timeout=STOP_WITHIN_S), "the reader thread ends by itself at the end of the file"
    state = reader.state()
    assert (state.state, state.frames_read, state.frames_dropped) == ("ended", CLIP_FRAMES, 0)
    assert states.names() == ["online", "ended"]
    assert hub.take(timeout=0.2) is None


def test_looping_file_starts_again_at_the_end(sample_clip: Path, readers: list[CameraReader]) -> None:
    hub = FrameHub()
    reader, states = start_reader(readers, camera("clip", str(sample_clip), realtime=False, loop=True), hub)

    frames = take_frames(hub, CLIP_FRAMES + 40)

    assert [f.seq for f in frames] == list(range(1, CLIP_FRAMES + 41))
    assert np.array_equal(frames[CLIP_FRAMES].image, frames[0].image), "frame 222 is the clip's first frame again"
    assert not np.array_equal(frames[CLIP_FRAMES].image, frames[CLIP_FRAMES - 1].image)
    assert reader.state().state == "online"
    assert states.names() == ["online"]


def test_realtime_file_is_paced_at_its_frame_rate(sample_clip: Path, readers: list[CameraReader]) -> None:
    hub = FrameHub()
    reader, _ = start_reader(readers, camera("clip", str(sample_clip), realtime=True), hub)

    frames = take_frames(hub, 50)  # about 2 s at the clip's 25 fps

    span = frames[-1].captured_mono - frames[0].captured_mono
    rate = (frames[-1].seq - frames[0].seq) / span
    assert 15 <= rate <= 35, f"decoded at {rate:.1f} fps, the clip has 25"
    assert 15 <= reader.state().fps <= 35
    assert reader.state().frames_dropped == 0  # this consumer keeps up


def test_fps_limit_skips_frames_before_they_are_prepared(sample_clip: Path, readers: list[CameraReader]) -> None:
    hub = FrameHub()
    prepared = 0

    def counting_prepare(image: np.ndarray) -> np.ndarray:
        nonlocal prepared
        prepared += 1
        return prepare(image)

    cfg = camera("clip", str(sample_clip), realtime=True, fps_limit=5)
    reader, _ = start_reader(readers, cfg, hub, prepare=counting_prepare)

    frames = take_frames(hub, 8)

    rate = (len(frames) - 1) / (frames[-1].captured_mono - frames[0].captured_mono)
    assert 4 <= rate <= 6, f"{rate:.1f} frames per second passed a 5 fps limit"
    state = reader.state()
    assert state.frames_skipped >= 3 * len(frames)  # 25 fps decoded, 5 fps kept
    assert state.frames_read - state.frames_skipped in (prepared, prepared + 1)  # only kept frames are resized
    assert state.frames_dropped == state.frames_stale  # skipped on purpose is not lost to overload


# ----------------------------------------------------------------------------------------------- RTSP


def test_rtsp_reconnects_after_a_server_restart_while_a_file_camera_runs_on(
    rtsp_server: RtspServer, sample_clip: Path, readers: list[CameraReader]
) -> None:
    hub = FrameHub()
    consumer = Consumer(hub)
    try:
        rtsp, rtsp_states = start_reader(readers, rtsp_camera("street", rtsp_server.url), hub)
        _, file_states = start_reader(readers, camera("clip", str(sample_clip), loop=True), hub)
        rtsp_states.wait_for("online", timeout=30)
        consumer.wait_count("street", 25, timeout=30)

        rtsp_server.stop()
        killed = time.monotonic()
        lost = rtsp_states.wait_for("reconnecting", timeout=30)
        assert time.monotonic() - killed < 2 + 3, "the outage is seen within the stall timeout"
        assert lost.last_error and "\n" not in lost.last_error
        file_frames_at_outage = consumer.count("clip")

        rtsp_server.start()
        back = rtsp_states.wait_for("online", timeout=30, after=len(rtsp_states.states) - 1)
        frames_before = consumer.count("street")
        consumer.wait_count("street", frames_before + 25, timeout=30)

        assert back.reconnects >= 1
        assert consumer.count("clip") > file_frames_at_outage + 10, "the file camera ran on during the outage"
        assert file_states.names() == ["online"]
        file_times = [t for _, t in consumer.frames["clip"]]
        assert max(np.diff(file_times)) < 1.0, "the file camera never paused"
        seqs = [s for s, _ in consumer.frames["street"]]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "seq keeps counting across reconnects"
        assert rtsp.state().state == "online"
    finally:
        consumer.close()


def test_stall_is_detected_while_read_is_blocked(rtsp_server: RtspServer, readers: list[CameraReader]) -> None:
    """A frozen server (SIGSTOP) keeps the connection open and read() blocked; the watchdog must not wait."""
    hub = FrameHub()
    consumer = Consumer(hub)
    try:
        # The read timeout is far longer than the stall timeout: only the watchdog can notice in time.
        cfg = rtsp_camera("street", rtsp_server.url, read_timeout_s=60, stall_timeout_s=2)
        _, states = start_reader(readers, cfg, hub)
        states.wait_for("online", timeout=30)
        consumer.wait_count("street", 10, timeout=30)

        rtsp_server.pause()
        frozen = time.monotonic()
        stalled = states.wait_for("reconnecting", timeout=30)
        assert time.monotonic() - frozen < 2 + 3
        assert stalled.last_error is not None and "no frame from rtsp://127.0.0.1" in stalled.last_error

        rtsp_server.resume()
        states.wait_for("online", timeout=30, after=len(states.states) - 1)
        frames_before = consumer.count("street")
        consumer.wait_count("street", frames_before + 10, timeout=30)
    finally:
        consumer.close()


def test_stop_is_prompt_while_read_is_blocked(rtsp_server: RtspServer) -> None:
    hub = FrameHub()
    states = StateLog()
    reader = CameraReader(
        rtsp_camera("street", rtsp_server.url, read_timeout_s=60, stall_timeout_s=60),
        hub,
        prepare,
        threading.Event(),
        on_state=states,
    )
    reader.start()
    try:
        states.wait_for("online", timeout=30)
        rtsp_server.pause()
        deadline = time.monotonic() + 20
        while hub.take(timeout=1.5) is not None:  # frames already in buffers still arrive
            assert time.monotonic() < deadline, "frames keep coming from a frozen server"
        assert reader.state().state == "online", "read() is blocked and no timeout has fired yet"
    finally:
        t0 = time.monotonic()
        assert reader.stop(timeout=10)
        assert time.monotonic() - t0 < STOP_WITHIN_S
        rtsp_server.resume()
    assert reader.state().state == "stopped"


# ----------------------------------------------------------------------------------------- bad sources


def retry_delays(caplog: pytest.LogCaptureFixture, name: str) -> list[tuple[float, float]]:
    """(time logged, announced delay) of each 'retrying' line of camera ``name``."""
    pattern = re.compile(rf"camera {name}: .*; retrying in ([0-9.]+) s$")
    return [(r.created, float(m[1])) for r in caplog.records if (m := pattern.match(r.getMessage()))]


def assert_backs_off(caplog: pytest.LogCaptureFixture, name: str) -> None:
    wait_until(lambda: len(retry_delays(caplog, name)) >= 5, timeout=30, what="five retries")
    retries = retry_delays(caplog, name)
    assert [delay for _, delay in retries[:5]] == [0.2, 0.4, 0.8, 1.0, 1.0]
    for (t0, delay), (t1, _) in itertools.pairwise(retries):
        assert t1 - t0 >= delay * 0.9, "the next attempt waited for the announced delay"


def test_missing_file_is_an_error_retried_with_backoff(
    tmp_path: Path, readers: list[CameraReader], caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "missing-clip.mp4"
    cfg = camera("gone", str(missing), reconnect={"initial_s": 0.2, "max_s": 1.0})
    with caplog.at_level(logging.WARNING, logger="edge_depth.capture"):
        reader, states = start_reader(readers, cfg, FrameHub())
        error = states.wait_for("error", timeout=10)
        assert error.last_error == f"video file not found: {missing}"
        assert_backs_off(caplog, "gone")
    assert states.names() == ["error"], "the same error again is not a state change"
    assert reader.state().reconnects >= 4


def test_unreachable_rtsp_url_never_shows_its_password(
    readers: list[CameraReader], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    url = f"rtsp://user:pw-Zq8v@127.0.0.1:{port}/x"
    cfg = rtsp_camera("door", url, reconnect={"initial_s": 0.2, "max_s": 1.0})
    with caplog.at_level(logging.DEBUG):
        reader, states = start_reader(readers, cfg, FrameHub())
        error = states.wait_for("error", timeout=20)
        assert_backs_off(caplog, "door")
        state = reader.state()

    assert error.last_error == f"cannot open stream rtsp://user:***@127.0.0.1:{port}/x"
    assert state.source == f"rtsp://user:***@127.0.0.1:{port}/x"
    native_out, native_err = capfd.readouterr()  # what OpenCV and FFmpeg printed themselves
    for text in (caplog.text, repr(states.states), repr(state), native_out, native_err):
        assert "pw-Zq8v" not in text


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (["[tcp] Connection to tcp://127.0.0.1:9?timeout=0 failed: Connection refused"], "connection refused"),
        (["[rtsp] method DESCRIBE failed: 404 Not Found"], "not found (404)"),
        (["[http] HTTP error 401 Unauthorized"], "unauthorized (401)"),
        (["[mov,mp4,m4a,3gp,3g2,mj2] moov atom not found"], "no video stream"),
        (["[tcp] Connection to tcp://cam.lan:554 failed: Connection timed out"], "timed out"),
        (["[ERROR] something else entirely"], None),
        ([], None),
    ],
)
def test_ffmpeg_messages_become_reasons(lines: list[str], reason: str | None) -> None:
    explained = explain(lines)
    assert explained == reason or (reason is not None and explained is not None and explained.startswith(reason))


def test_an_abandoned_open_leaves_the_queue_for_the_open_turn() -> None:
    """Opens take turns (OpenCV's FFmpeg backend opens one capture at a time). An attempt its reader gave up on
    while it waited must not open a capture nobody reads, holding every other camera back by a whole timeout."""
    holding, release = threading.Event(), threading.Event()

    def hung_open() -> None:
        with open_turn(threading.Event()) as turn:
            assert turn
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hung_open)
    holder.start()
    try:
        assert holding.wait(10)
        given_up, answers = threading.Event(), []

        def queued() -> None:
            with open_turn(given_up) as turn:
                answers.append(turn)

        waiter = threading.Thread(target=queued)
        waiter.start()
        given_up.set()
        waiter.join(STOP_WITHIN_S)
        assert not waiter.is_alive() and answers == [False], "the abandoned attempt left the queue"
    finally:
        release.set()
        holder.join(10)
    with open_turn(threading.Event()) as turn:
        assert turn, "the turn is free again"
