"""Camera faults a box meets, against the real daemon: a video file cut short, and a camera whose resolution
changes while it streams."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.broker import Mosquitto, MqttRecorder, Received
from tests.support.daemon import Daemon, daemon_config
from tests.support.rtsp import CLIP_REPEATS, RtspServer
from tests.test_daemon import decode_jpeg, file_camera, heatmaps_after, rtsp_camera, statuses

pytestmark = pytest.mark.slow

CLIP_FRAMES = 221


def ffmpeg(*args: str) -> None:
    tool = shutil.which("ffmpeg")
    assert tool, "ffmpeg is needed to make the test clips (Debian package ffmpeg)"
    subprocess.run([tool, "-v", "error", "-y", *args], check=True, timeout=300)


def cut(path: Path, out: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``path``'s bytes: a copy that stopped mid-stream (a full disk, a crashed
    recorder, an upload cut off)."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


@pytest.fixture(scope="module")
def clip_4x3(sample_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample clip at 640x480 (a 4:3 camera), repeated like the RTSP test clip so a client never reaches
    its end."""
    folder = tmp_path_factory.mktemp("clip4x3")
    once = folder / "once.mp4"
    ffmpeg("-i", str(sample_clip), "-vf", "scale=640:480", "-c:v", "libx264", "-g", "25", "-an", str(once))
    looped = folder / "looped.mp4"
    ffmpeg("-stream_loop", str(CLIP_REPEATS - 1), "-i", str(once), "-c", "copy", str(looped))
    return looped


def test_a_file_cut_mid_stream_plays_what_it_has_then_ends_with_one_line(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, tmp_path: Path, run_daemon: Callable[..., Daemon]
) -> None:
    # The sample clip keeps its index at the front (as cameras and recorders that stream MP4 write it): the
    # frames before the cut are all readable.
    half = cut(sample_clip, tmp_path / "half.mp4", 0.5)
    config = daemon_config(
        mqtt_broker,
        int8_ir,
        [
            file_camera(half, "cut", loop=False, realtime=False),
            file_camera(half, "again"),  # looping, at the clip's pace
            file_camera(sample_clip, "clip"),
        ],
    )
    with MqttRecorder.for_broker(mqtt_broker, "ed/#") as rec:
        daemon = run_daemon(config)
        ended = rec.wait_for(statuses("cut", "ended"), timeout=120)
        assert CLIP_FRAMES * 0.4 < ended["frames_read"] < CLIP_FRAMES * 0.6, ended
        assert rec.wait_for(heatmaps_after("cut", 0), timeout=5), "the frames before the cut were published"
        said = f"end of {half} after {ended['frames_read']} of {CLIP_FRAMES} frames: the file is truncated (cut short)"
        assert ended["last_error"] == said
        assert daemon.wait_for_log(lambda line: "camera cut: end of" in line, timeout=10).endswith(said)
        # The other cameras go on; the looping one plays what it has again and again, and says so once.
        after_end = len(rec.messages)
        rec.wait_for(heatmaps_after("clip", after_end, count=5), timeout=60)
        third_pass = rec.wait_for(lambda ms: (s := statuses("again")(ms)) and s["frames_read"] > 250 and s, 90)
        assert third_pass["state"] == "online"
    looping = [line for line in daemon.log.splitlines() if "camera again:" in line and "truncated" in line]
    assert len(looping) == 1 and looping[0].endswith("the file is truncated (cut short); looping over what it has")
    code, _ = daemon.terminate()
    assert code == 0, daemon.log[-2000:]
    assert "Traceback" not in daemon.log


def test_a_file_cut_before_its_index_is_an_error_naming_it(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, tmp_path: Path, run_daemon: Callable[..., Daemon]
) -> None:
    # A plain ffmpeg or camera recording writes its index last: cut short, it has none.
    index_last = tmp_path / "index-last.mp4"
    ffmpeg("-i", str(sample_clip), "-c", "copy", "-movflags", "-faststart", str(index_last))
    half = cut(index_last, tmp_path / "half.mp4", 0.5)
    config = daemon_config(mqtt_broker, int8_ir, [file_camera(half, "cut"), file_camera(sample_clip, "clip")])
    with MqttRecorder.for_broker(mqtt_broker, "ed/#") as rec:
        daemon = run_daemon(config)
        error = rec.wait_for(statuses("cut", "error"), timeout=60)["last_error"]
        assert error == f"cannot open file {half}: incomplete file (no index: cut short, or still being written)"
        rec.wait_for(heatmaps_after("clip", 0, count=5), timeout=60)
    code, _ = daemon.terminate()
    assert code == 0, daemon.log[-2000:]
    assert "Traceback" not in daemon.log


def test_a_camera_that_changes_resolution_comes_back_at_its_new_shape_and_relearns_its_baseline(
    mqtt_broker: Mosquitto,
    rtsp_server: RtspServer,
    clip_4x3: Path,
    int8_ir: Path,
    run_daemon: Callable[..., Daemon],
) -> None:
    door = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]
    alerts = {"reference": {"baseline": {"learn_s": 2.0}}, "zones": [{"name": "door", "polygon": door}]}
    camera = rtsp_camera(rtsp_server.url, "street", alerts=alerts)
    config = daemon_config(mqtt_broker, int8_ir, [camera], state_dir=None)
    with MqttRecorder.for_broker(mqtt_broker, "ed/#") as rec:
        daemon = run_daemon(config)
        wide = decode_jpeg(rec.wait_for(heatmaps_after("street", 0), timeout=60)[-1].payload)
        assert abs(wide.shape[1] / wide.shape[0] - 16 / 9) < 0.05, wide.shape
        daemon.wait_for_log(lambda line: "street" in line and "baseline learned" in line, timeout=60)

        # The camera's owner switches it to 640x480: the stream drops and comes back at the new size.
        rtsp_server.stop()
        changed = RtspServer(clip_4x3, port=rtsp_server.port)
        changed.start()
        restarted = time.monotonic()
        try:
            switched = len(rec.messages)

            def four_by_three(messages: list[Received]) -> bool:
                maps = heatmaps_after("street", switched)(messages) or []
                return any(abs((s := decode_jpeg(m.payload).shape)[1] / s[0] - 4 / 3) < 0.05 for m in maps)

            rec.wait_for(four_by_three, timeout=60)
            print(f"back at 4:3 {time.monotonic() - restarted:.1f} s after the camera restarted at 640x480")
            status = rec.wait_for(
                lambda ms: (s := statuses("street", "online")(ms)) and s["input_size"] != "256x128" and s, timeout=30
            )
            daemon.wait_for_log(lambda line: "street: the baseline" in line and "learning again" in line, timeout=30)
        finally:
            changed.stop()
    assert status["input_size"] == "256x192", status
    assert "Traceback" not in daemon.log
