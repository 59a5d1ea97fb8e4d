"""The daemon end to end: real IR (synthetic weights), real Mosquitto, real RTSP server, real clip.

Each test starts ``edge-depth run`` as a subprocess and checks what an MQTT subscriber sees.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.support.broker import Mosquitto, MqttRecorder, Received
from tests.support.daemon import Daemon, daemon_config, status_of, wait_until
from tests.support.rtsp import RtspServer

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
