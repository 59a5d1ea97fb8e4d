"""The daemon end to end: real IR (synthetic weights), real Mosquitto, real RTSP server, real clip.

Each test starts ``edge-depth run`` as a subprocess and checks what an MQTT subscriber sees.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.publish as mqtt_publish
import pytest
import yaml

from edge_depth.capture.replay import save_recording
from edge_depth.config.schema import ModelConfig
from edge_depth.stages import model_cache_dir
from tests.support.broker import Mosquitto, MqttRecorder, Received
from tests.support.daemon import Daemon, daemon_config, status_of, wait_until
from tests.support.rtsp import RtspServer
from tests.support.scenes import Box, frames, keyframes, load_scene, person, posture

pytestmark = pytest.mark.slow

HEATMAP_HEIGHT = 96


def file_camera(clip: Path, name: str = "clip", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": str(clip),
        "loop": True,
        "heatmap": {"rate_hz": 5, "height": HEATMAP_HEIGHT},
    } | extra


def rtsp_camera(url: str, name: str = "rtsp", **extra: Any) -> dict[str, Any]:
    timeouts = {"open_timeout_s": 3, "read_timeout_s": 3, "stall_timeout_s": 3}
    camera = {"name": name, "source": url, "heatmap": {"rate_hz": 5, "height": HEATMAP_HEIGHT}}
    return camera | {"reconnect": {"initial_s": 0.5, "max_s": 2}} | timeouts | extra


def statuses(camera: str, state: str | None = None) -> Callable[[list[Received]], dict[str, Any] | None]:
    def find(messages: list[Received]) -> dict[str, Any] | None:
        for m in reversed(messages):
            if m.topic == f"ed/{camera}/status":
                status = status_of(m.payload)
                return status if state in (None, status["state"]) else None
        return None

    return find


def heatmaps_after(camera: str, index: int, count: int = 1) -> Callable[[list[Received]], list[Received] | None]:
    def find(messages: list[Received]) -> list[Received] | None:
        maps = [m for m in messages[index:] if m.topic == f"ed/{camera}/heatmap"]
        return maps if len(maps) >= count else None

    return find


def decode_jpeg(payload: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "heatmap is not a decodable JPEG"
    return image


def test_file_and_rtsp_cameras_publish_status_and_heatmaps_then_exit_cleanly(
    mqtt_broker: Mosquitto,
    rtsp_server: RtspServer,
    int8_ir: Path,
    sample_clip: Path,
    run_daemon: Callable[..., Daemon],
) -> None:
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/#") as rec:
        daemon = run_daemon(
            daemon_config(mqtt_broker, int8_ir, [file_camera(sample_clip), rtsp_camera(rtsp_server.url)])
        )
        rec.wait_for_message("ed/available", b"online")
        for camera in ("clip", "rtsp"):
            status = rec.wait_for(statuses(camera, "online"), timeout=60)
            assert status["device"] == "CPU" and status["precision"] == "int8" and status["inference_precision"]
            heatmap = decode_jpeg(rec.wait_for(heatmaps_after(camera, 0), timeout=60)[0].payload)
            # 960x540 camera -> the configured height, the camera's aspect ratio
            assert heatmap.shape == (HEATMAP_HEIGHT, round(HEATMAP_HEIGHT * 960 / 540), 3)
        live = rec.wait_for(lambda ms: (s := statuses("clip")(ms)) and s["frames_processed"] > 0 and s, timeout=30)
        assert live["model"] == "midas_v21_small" and live["input_size"] == "256x128" and live["fps"] > 0
        code, took = daemon.terminate()
        assert code == 0, daemon.log[-2000:]
        assert took < 5.0
        rec.wait_for(lambda ms: [m for m in ms if m.topic == "ed/available"][-1].payload == b"offline")


def test_rtsp_outage_reconnects_while_file_camera_keeps_running(
    mqtt_broker: Mosquitto,
    rtsp_server: RtspServer,
    int8_ir: Path,
    sample_clip: Path,
    run_daemon: Callable[..., Daemon],
) -> None:
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/#") as rec:
        run_daemon(daemon_config(mqtt_broker, int8_ir, [file_camera(sample_clip), rtsp_camera(rtsp_server.url)]))
        rec.wait_for(heatmaps_after("rtsp", 0), timeout=60)
        rtsp_server.stop()
        outage_start = len(rec.messages)
        rec.wait_for(statuses("rtsp", "reconnecting"), timeout=30)
        # The file camera never stops: heatmaps keep arriving during the outage.
        rec.wait_for(heatmaps_after("clip", outage_start, count=5), timeout=30)
        rtsp_server.start()
        back = len(rec.messages)
        rec.wait_for(statuses("rtsp", "online"), timeout=60)
        rec.wait_for(heatmaps_after("rtsp", back), timeout=60)
        assert rec.wait_for(statuses("rtsp"))["reconnects"] >= 1


def test_broker_restart_brings_availability_and_retained_status_back(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon]
) -> None:
    run_daemon(daemon_config(mqtt_broker, int8_ir, [file_camera(sample_clip)]))
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/#") as rec:
        rec.wait_for_message("ed/available", b"online")
    mqtt_broker.stop()  # no persistence: the broker forgets every retained message
    mqtt_broker.start()
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/available") as rec:
        rec.wait_for_message("ed/available", b"online")  # the daemon reconnected by itself
    # A subscriber arriving now gets the state the daemon re-published as retained messages.
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/#") as rec:
        rec.wait_for_message("ed/available", b"online", retain=True)
        status = rec.wait_for(lambda ms: next((m for m in ms if m.topic == "ed/clip/status" and m.retain), None))
        assert status_of(status.payload)["camera"] == "clip"


def test_broker_down_at_start_daemon_connects_when_it_appears(
    make_broker: Callable[..., Mosquitto], int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon]
) -> None:
    broker = make_broker(start=False)
    daemon = run_daemon(daemon_config(broker, int8_ir, [file_camera(sample_clip)]))
    daemon.wait_for_log(lambda line: "running:" in line)
    broker.start()
    with MqttRecorder(broker.host, broker.port, "ed/#") as rec:
        rec.wait_for_message("ed/available", b"online")
        rec.wait_for(heatmaps_after("clip", 0), timeout=30)


def test_wrong_password_is_reported_and_retried_with_backoff(
    mqtt_broker_auth: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon]
) -> None:
    secret = "not-the-password-7f3a"
    mqtt = {"username": "edge", "password": "${MQTT_PASSWORD}", "reconnect_min_s": 1, "reconnect_max_s": 4}
    daemon = run_daemon(
        daemon_config(mqtt_broker_auth, int8_ir, [file_camera(sample_clip)], mqtt=mqtt),
        env={"MQTT_PASSWORD": secret},
    )
    first = daemon.wait_for_log(lambda line: "not authorized" in line.lower() or "bad user name" in line.lower())
    assert f"{mqtt_broker_auth.host}:{mqtt_broker_auth.port}" in first and "mqtt.password" in first
    # The broker's log counts the attempts: wait for the third refusal, then check they were spaced.
    started = time.monotonic()
    wait_until(lambda: mqtt_broker_auth.log_text().count("not authorised") >= 3, 60, "three refused attempts")
    refusals = mqtt_broker_auth.log_text().count("not authorised")
    assert refusals <= 3 + (time.monotonic() - started), "tight reconnect loop"
    assert secret not in daemon.log
    assert daemon.proc.poll() is None, "a wrong password must not kill the daemon"


def test_notify_socket_receives_ready_and_watchdog(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(60)
    try:
        daemon = run_daemon(
            daemon_config(mqtt_broker, int8_ir, [file_camera(sample_clip)]),
            env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"},
        )
        messages: list[str] = []
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=" in ready
        assert messages.index(ready) < next(i for i, m in enumerate(messages) if "WATCHDOG=1" in m)
        code, _ = daemon.terminate()
        assert code == 0
        while "STOPPING=1" not in messages[-1]:
            messages.append(sock.recv(4096).decode())
    finally:
        sock.close()


def test_stats_are_published_periodically(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon]
) -> None:
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/#") as rec:
        run_daemon(daemon_config(mqtt_broker, int8_ir, [file_camera(sample_clip)]))
        stats = rec.wait_for(lambda ms: [json.loads(m.payload) for m in ms if m.topic == "ed/stats"][-2:] or None)
        assert stats[-1]["cameras"]["clip"]["frames_processed"] >= 0
        assert stats[-1]["mqtt"]["connected"] is True


def test_status_is_true_from_the_first_seconds_and_zero_once_stopped(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    # A long stats interval: only the refresh at the first result and the startup refreshes can make it right.
    config = daemon_config(
        mqtt_broker,
        int8_ir,
        [file_camera(sample_clip, fps_limit=10)],
        mqtt={"stats_interval_s": 300},
        state_dir=str(tmp_path / "state"),
    )
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, ["ed/#", "homeassistant/#"]) as rec:
        daemon = run_daemon(config)
        started = time.monotonic()
        first = rec.wait_for(lambda ms: (s := statuses("clip")(ms)) and s["frames_processed"] > 0 and s, timeout=30)
        assert first["input_size"] == "256x128" and first["inference_ms"] is not None
        live = rec.wait_for(
            lambda ms: (s := statuses("clip")(ms)) and s["fps"] > 0 and s["connection_quality"] is not None and s,
            timeout=15,
        )
        assert time.monotonic() - started < 30, "figures within seconds, not after a stats interval"
        assert live["expected_fps"] == 10.0 and 8.0 <= live["delivered_fps"] <= 12.0
        assert live["frames_skipped"] > 0 and live["frames_dropped"] <= live["frames_read"] - live["frames_skipped"]
        assert live["connection_quality"] in ("excellent", "fair")
        quality = rec.wait_for_message("homeassistant/sensor/edge-depth/clip_connection_quality/config")
        assert json.loads(quality.payload)["options"] == ["excellent", "fair", "poor", "unusable"]
        assert "homeassistant/binary_sensor/edge-depth/clip_fall/config" not in {m.topic for m in rec.messages}

        code, _ = daemon.terminate()
        assert code == 0, daemon.log[-2000:]
        final = rec.wait_for(statuses("clip", "stopped"))
        assert (final["fps"], final["capture_fps"], final["delivered_fps"]) == (0.0, 0.0, 0.0)
        assert final["connection_quality"] is None and final["frames_processed"] > 0
    # One line per state change: the reader's, not the reader's and the daemon's.
    assert sum("camera clip: online" in line for line in daemon.lines) == 1, daemon.log[-3000:]
    assert sum("camera clip: stopped" in line for line in daemon.lines) == 1, daemon.log[-3000:]


def test_what_left_the_config_is_removed_from_the_broker_at_the_next_start(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    state = str(tmp_path / "state")
    door = {"zones": [{"name": "door", "polygon": [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]}]}
    full = [file_camera(sample_clip, alerts=door | {"fall": {"enabled": True}}), file_camera(sample_clip, "yard")]
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, ["ed/#", "homeassistant/#"]) as rec:
        first = run_daemon(daemon_config(mqtt_broker, int8_ir, full, state_dir=state))
        rec.wait_for_message("ed/clip/fall/state", b"OFF")  # every retained topic is out once a frame is done
        rec.wait_for_message("ed/clip/door/state", b"OFF")
        rec.wait_for_message("homeassistant/sensor/edge-depth/yard_nearest/config")
        assert first.terminate()[0] == 0

    gone = [
        "ed/yard/status",
        "ed/yard/nearest",
        "ed/clip/door/state",
        "ed/clip/fall/state",
        "homeassistant/image/edge-depth/yard_heatmap/config",
        "homeassistant/sensor/edge-depth/yard_nearest/config",
        "homeassistant/sensor/edge-depth/yard_connection_quality/config",
        "homeassistant/binary_sensor/edge-depth/clip_zone_door/config",
        "homeassistant/binary_sensor/edge-depth/clip_fall/config",
    ]
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, ["ed/#", "homeassistant/#"]) as rec:
        # Before the restart, the broker still holds all of it (no persistence, but it kept running).
        rec.wait_for(lambda ms: {m.topic for m in ms if m.retain and m.payload} >= set(gone) or None)
        second = run_daemon(daemon_config(mqtt_broker, int8_ir, [file_camera(sample_clip)], state_dir=state))
        rec.wait_for(lambda ms: {m.topic for m in ms if not m.payload} >= set(gone) or None, timeout=60)
        rec.wait_for_message("ed/clip/status")
        kept = {m.topic for m in rec.messages if not m.payload}
        assert kept == set(gone), "only what left the config is cleared"
        assert second.terminate()[0] == 0
    assert "removing 9 retained topic(s)" in second.log


def test_compiled_models_are_cached_in_systemds_cache_directory(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()  # systemd creates CacheDirectory= before the start
    daemon = run_daemon(
        daemon_config(mqtt_broker, int8_ir, [file_camera(sample_clip)]), env={"CACHE_DIRECTORY": str(cache)}
    )
    daemon.wait_for_log(lambda line: "running:" in line)
    assert [p.suffix for p in (cache / "openvino").iterdir()].count(".blob") >= 1, daemon.log[-2000:]
    assert daemon.terminate()[0] == 0


def test_model_cache_dir_defaults_to_systemds_and_never_overrides_the_config() -> None:
    default = ModelConfig()
    assert model_cache_dir(default, {}) is None
    assert model_cache_dir(default, {"CACHE_DIRECTORY": "/var/cache/edge-depth"}) == Path(
        "/var/cache/edge-depth/openvino"
    )
    assert model_cache_dir(default, {"CACHE_DIRECTORY": "/a:/b"}) == Path("/a/openvino")
    own = ModelConfig(cache_dir=Path("/srv/ov"))
    assert model_cache_dir(own, {"CACHE_DIRECTORY": "/var/cache/edge-depth"}) == Path("/srv/ov")


# OpenVINO's own message as its C++ layers dress it: the prefixes must not reach the user.
FAILING_COMPILE = """
import sys
import openvino as ov

real = ov.Core.compile_model


def compile_model(self, model, *args, **kwargs):
    if model.inputs[0].get_partial_shape()[1].get_length() == {height}:
        raise RuntimeError(
            "Exception from src/inference/src/cpp/core.cpp:112:\\n"
            "Exception from src/plugins/intel_cpu/src/plugin.cpp:84:\\n"
            "Device is lost: the test says so\\n"
        )
    return real(self, model, *args, **kwargs)


ov.Core.compile_model = compile_model
from edge_depth.cli import main

sys.exit(main(sys.argv[1:]))
"""


# 256: the IR's own size, compiled at start; 128: the clip's, compiled at run time for its first frame.
@pytest.mark.parametrize("height", [256, 128], ids=["at-start", "at-run-time"])
def test_a_model_that_cannot_be_compiled_is_one_line_and_exit_2(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, tmp_path: Path, height: int
) -> None:
    config = tmp_path / "edge-depth.yaml"
    config.write_text(yaml.safe_dump(daemon_config(mqtt_broker, int8_ir, [file_camera(sample_clip)])))
    script = FAILING_COMPILE.replace("{height}", str(height))
    proc = subprocess.run(
        [sys.executable, "-c", script, "run", "--config", str(config)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert f"model.device: CPU: cannot compile midas_small_int8.xml for 256x{height}" in errors[0]
    assert errors[0].endswith("Device is lost: the test says so")
    assert "Traceback" not in proc.stderr and "Exception from" not in proc.stderr


@pytest.fixture(scope="module")
def alert_recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Depth recordings (real NYU room, MiDaS-like jitter): ``room`` with an object that stays in zone ``door``
    from 12 s, ``hall`` with a person who falls at 4 s and stays down."""
    out = tmp_path_factory.mktemp("shutdown-recordings")
    scene = load_scene("nyu_00122")
    near = Box(0.2, 0.3, 0.4, 0.9, 1.5)
    standing = person(0.3, 0.92, 0.6, 1.5)
    paths = {"room": out / "room.npz", "hall": out / "hall.npz"}
    approach = keyframes((7.0, Box(0.2, 0.3, 0.4, 0.9, 6.5)), (12.0, near))
    fall = keyframes((2.5, standing), (3.5, standing), (4.2, posture(standing, 0.25, 3.5)))
    save_recording(paths["room"], frames(scene, approach, duration_s=40, camera="room"))
    save_recording(paths["hall"], frames(scene, fall, duration_s=40, camera="hall", seed=1))
    return paths


def alerts_of(messages: list[Received], camera: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.topic == f"ed/{camera}/alert"]


def test_clean_stop_ends_obstacle_alerts_and_keeps_a_latched_fall_for_the_next_start(
    mqtt_broker: Mosquitto,
    int8_ir: Path,
    alert_recordings: dict[str, Path],
    run_daemon: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    door = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]
    room = {
        "name": "room",
        "source": str(alert_recordings["room"]),
        "alerts": {"zones": [{"name": "door", "polygon": door}]},
    }
    hall = {
        "name": "hall",
        "source": str(alert_recordings["hall"]),
        "alerts": {"reference": {"baseline": {"learn_s": 2.0}}, "fall": {"enabled": True}},
    }
    config = daemon_config(mqtt_broker, int8_ir, [room, hall], state_dir=str(tmp_path / "state"))
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/#") as rec:
        first = run_daemon(config)
        opened = rec.wait_for(lambda ms: next((a for a in alerts_of(ms, "room") if a["type"] == "new"), None), 60)
        fall = rec.wait_for(lambda ms: next((a for a in alerts_of(ms, "hall") if a["type"] == "new"), None), 60)
        rec.wait_for_message("ed/room/door/state", b"ON")
        rec.wait_for_message("ed/hall/fall/state", b"ON")
        assert first.terminate()[0] == 0, first.log[-2000:]

        offline = rec.wait_for(
            lambda ms: next(
                (i for i, m in enumerate(ms) if m.topic == "ed/available" and m.payload == b"offline"), None
            )
        )
        before = rec.messages[:offline]
        end = next(a for a in alerts_of(before, "room") if a["type"] == "end")
        assert (end["id"], end["reason"]) == (opened["id"], "shutdown")
        assert [m.payload for m in before if m.topic == "ed/room/door/state"][-1] == b"OFF"
        assert [m.payload for m in before if m.topic == "ed/hall/fall/state"][-1] == b"ON"
        assert [a["type"] for a in alerts_of(rec.messages, "hall")] == ["new"]  # latched: no end at a stop

    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/#") as rec:
        run_daemon(config)  # the next start: the same fall, still latched
        reminder = rec.wait_for(
            lambda ms: next((a for a in alerts_of(ms, "hall") if a["type"] == "update"), None), timeout=60
        )
        assert (reminder["id"], reminder["latched"], reminder["start"]) == (fall["id"], True, fall["start"])
        # The measured drop survives the restart, for the user who tunes the detector after a reboot.
        measured = {k: v for k, v in fall["evidence"].items() if k != "down_s"}
        assert {k: v for k, v in reminder["evidence"].items() if k != "down_s"} == measured
        assert reminder["evidence"]["down_s"] > fall["evidence"]["down_s"]
        assert "new" not in [a["type"] for a in alerts_of(rec.messages, "hall")]
        # The restarted daemon itself says ON again (a retained copy from the broker would have the retain flag).
        rec.wait_for(
            lambda ms: any(m.topic == "ed/hall/fall/state" and m.payload == b"ON" and not m.retain for m in ms)
        )
        ack = json.dumps({"id": fall["id"]})
        mqtt_publish.single("ed/hall/alert/ack", ack, hostname=mqtt_broker.host, port=mqtt_broker.port)
        end = rec.wait_for(lambda ms: next((a for a in alerts_of(ms, "hall") if a["type"] == "end"), None), 30)
        assert (end["id"], end["reason"]) == (fall["id"], "acknowledged")
        rec.wait_for(lambda ms: [m.payload for m in ms if m.topic == "ed/hall/fall/state"][-1] == b"OFF")
