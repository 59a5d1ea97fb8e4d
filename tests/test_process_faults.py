"""The daemon as a process under faults: broken state files, SIGKILL, a state directory that went away, signals
during the start, SIGHUP/SIGUSR1, a camera frozen mid-stream. Real daemon, real broker, real IR."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edge_depth.capture.reader import CameraReader, _Session
from edge_depth.service import RESTART_EXIT_CODE
from tests.support.broker import Mosquitto, MqttRecorder
from tests.support.daemon import Daemon, daemon_config, wait_until
from tests.support.rtsp import RtspServer

pytestmark = pytest.mark.slow


def learning_camera(clip: Path, name: str = "cam") -> dict[str, Any]:
    return {
        "name": name,
        "source": str(clip),
        "loop": True,
        "heatmap": {"rate_hz": 1, "height": 48},
        "alerts": {"reference": {"baseline": {"learn_s": 1.0, "learn_frames": 3}}},
    }


def _huge_npy(path: Path) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})


@pytest.mark.parametrize("broken", ["empty", "huge"])
def test_a_broken_baseline_file_is_one_warning_and_the_daemon_runs(
    broken: str,
    mqtt_broker: Mosquitto,
    int8_ir: Path,
    sample_clip: Path,
    run_daemon: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = state / "cam.baseline.npy"
    if broken == "empty":
        path.write_bytes(b"")
    else:
        _huge_npy(path)
    daemon = run_daemon(daemon_config(mqtt_broker, int8_ir, [learning_camera(sample_clip)], state_dir=str(state)))
    warning = daemon.wait_for_log(lambda line: "ignoring baseline" in line)
    assert "WARNING" in warning and str(path) in warning
    daemon.wait_for_log(lambda line: "running:" in line)
    daemon.wait_for_log(lambda line: "saved baseline" in line)  # learned again, and the broken file replaced
    code, _ = daemon.terminate()
    assert code == 0 and "Traceback" not in daemon.log
    assert sum("ignoring baseline" in line for line in daemon.lines) == 1


def test_a_learned_baseline_survives_sigkill(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    config = daemon_config(mqtt_broker, int8_ir, [learning_camera(sample_clip)], state_dir=str(state))
    first = run_daemon(config)
    first.wait_for_log(lambda line: "saved baseline" in line)  # saved once learned, not only at shutdown
    first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    second = run_daemon(config)
    loaded = second.wait_for_log(lambda line: "loaded baseline" in line or "ignoring baseline" in line)
    assert "loaded baseline" in loaded and str(state / "cam.baseline.npy") in loaded
    code, _ = second.terminate()
    assert code == 0


def test_a_state_directory_gone_at_shutdown_is_one_warning_and_a_clean_exit(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    daemon = run_daemon(daemon_config(mqtt_broker, int8_ir, [learning_camera(sample_clip)], state_dir=str(state)))
    daemon.wait_for_log(lambda line: "saved baseline" in line)
    # The same save writes the alert state next: the directory is taken away only once that is complete.
    wait_until((state / "cam.alerts.json").exists, 30, "the alert state saved with the baseline")
    moved = tmp_path / "moved"
    state.rename(moved)
    state.write_text("not a directory any more: every write below it fails")
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/cam/heatmap") as rec:
        # Frames go on (and the baseline adapts to them), so that the shutdown has something new to save.
        rec.wait_for(lambda ms: ms[2:] or None, 60)
    code, seconds = daemon.terminate()
    assert code == 0, daemon.log[-3000:]
    assert seconds < 5
    stopping = next(i for i, line in enumerate(daemon.lines) if "received SIGTERM, stopping" in line)
    warnings = [line for line in daemon.lines[stopping:] if "cannot save its state" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], daemon.log[-3000:]
    assert any(line.endswith(": stopped") for line in daemon.lines), daemon.log[-3000:]
    assert "Traceback" not in daemon.log
    assert not list(moved.glob("*.tmp*")) and not list(tmp_path.glob("*.tmp*"))


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    return sock


def _drain(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            return messages


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8, 2.0])
def test_sigterm_during_the_start_is_a_clean_stop_without_ready(
    delay: float,
    mqtt_broker: Mosquitto,
    int8_ir: Path,
    sample_clip: Path,
    run_daemon: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    path = tmp_path / "notify.sock"
    sock = _notify_socket(path)
    try:
        daemon = run_daemon(
            daemon_config(mqtt_broker, int8_ir, [learning_camera(sample_clip)]), env={"NOTIFY_SOCKET": str(path)}
        )
        time.sleep(delay)  # the moment of the signal is what is tested
        daemon.proc.send_signal(signal.SIGTERM)
        sock.sendto(b"MARK signal sent", str(path))  # datagrams queue in order: what comes after was sent after
        code = daemon.proc.wait(30)
        daemon._reader.join(5)
        messages = _drain(sock)
    finally:
        sock.close()
    after = messages[messages.index("MARK signal sent") + 1 :]
    assert not any("READY=1" in m for m in after), messages
    if code == -signal.SIGTERM:
        # Only before Python ran the command's first line: nothing was started, nothing logged.
        assert delay < 0.3 and daemon.lines == [], daemon.log
        return
    assert code == 0, daemon.log[-3000:]
    assert "Traceback" not in daemon.log
    if daemon.lines:  # a stop before the config was read leaves nothing to log with
        assert any("stopping" in line for line in daemon.lines), daemon.log[-3000:]
        assert any(line.endswith(": stopped") for line in daemon.lines), daemon.log[-3000:]


def test_sighup_with_an_invalid_config_goes_on_and_with_a_changed_one_restarts(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon]
) -> None:
    config = daemon_config(mqtt_broker, int8_ir, [learning_camera(sample_clip)])
    daemon = run_daemon(config)
    daemon.wait_for_log(lambda line: "running:" in line)
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_log(lambda line: "config unchanged" in line)

    daemon.config_path.write_text("mqtt: [this is not a mapping\n")
    daemon.proc.send_signal(signal.SIGHUP)
    refused = daemon.wait_for_log(lambda line: "config file is not valid" in line)
    assert "WARNING" in refused and str(daemon.config_path) in refused
    daemon.proc.send_signal(signal.SIGUSR1)
    daemon.proc.send_signal(signal.SIGUSR2)
    daemon.wait_for_log(lambda line: "SIGUSR1: status:" in line)
    daemon.wait_for_log(lambda line: "SIGUSR2: status:" in line)
    assert daemon.proc.poll() is None, "SIGHUP with a bad config, SIGUSR1 and SIGUSR2 must not stop the daemon"

    changed = config | {"mqtt": config["mqtt"] | {"stats_interval_s": 3}}
    daemon.config_path.write_text(yaml.safe_dump(changed, sort_keys=False))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_log(lambda line: "config changed: restarting" in line)
    assert daemon.proc.wait(10) == RESTART_EXIT_CODE
    daemon._reader.join(5)
    assert any(line.endswith(": stopped") for line in daemon.lines) and "Traceback" not in daemon.log


def test_a_camera_frozen_mid_stream_is_detected_within_its_stall_timeout(
    mqtt_broker: Mosquitto,
    rtsp_server: RtspServer,
    int8_ir: Path,
    run_daemon: Callable[..., Daemon],
) -> None:
    stall_s = float(os.environ.get("EDGE_DEPTH_TEST_STALL_S", "5"))  # the reported case: 20
    camera = {
        "name": "rtsp",
        "source": rtsp_server.url,
        "heatmap": {"rate_hz": 1, "height": 48},
        "open_timeout_s": 5,
        "read_timeout_s": 30,  # longer than the stall timeout: only the watchdog can notice the freeze
        "stall_timeout_s": stall_s,
        "reconnect": {"initial_s": 0.5, "max_s": 2},
    }
    with MqttRecorder(mqtt_broker.host, mqtt_broker.port, "ed/rtsp/heatmap") as rec:
        daemon = run_daemon(daemon_config(mqtt_broker, int8_ir, [camera]))
        daemon.wait_for_log(lambda line: "camera rtsp: online" in line)
        rec.wait_for(lambda ms: ms[4:] or None, 60)  # mid-stream: the decoder and the buffers are full
    rtsp_server.pause()
    try:
        paused = time.monotonic()
        daemon.wait_for_log(lambda line: "no frame from" in line and "rtsp" in line, timeout=60)
        detected = time.monotonic() - paused
    finally:
        rtsp_server.resume()
    assert detected <= stall_s + 3, f"the freeze was detected after {detected:.1f} s (stall timeout {stall_s} s)"
    code, _ = daemon.terminate()
    assert code == 0


class _HeldDecoder:
    """A capture whose decoder timestamp (CAP_PROP_POS_MSEC) stays where a frozen source left it."""

    def __init__(self, positions: list[float]) -> None:
        self._positions = positions

    def get(self, _prop: int) -> float:
        return self._positions.pop(0)


def test_a_frame_given_again_by_the_decoder_is_not_progress() -> None:
    session = _Session(0.0)
    cap = _HeldDecoder([40.0, 80.0, 80.0, 80.0, 120.0, 0.0, 0.0])
    seen = [CameraReader._repeated(session, cap) for _ in range(7)]  # type: ignore[arg-type]
    assert seen == [False, False, True, True, False, False, False]  # no timestamps (0): never a repeat


def test_a_timestamp_that_never_moves_is_not_taken_for_a_frozen_source(caplog: pytest.LogCaptureFixture) -> None:
    """A backend reporting one constant position for every frame of a live stream: after more repeats than a
    decoder can hold, frames count as new again (otherwise the stall watchdog would cut a working camera)."""
    session = _Session(0.0)
    cap = _HeldDecoder([500.0] * 100)
    with caplog.at_level(logging.INFO, logger="edge_depth.capture.reader"):
        seen = [CameraReader._repeated(session, cap, "porch") for _ in range(100)]  # type: ignore[arg-type]
    held = seen.index(False, 1)
    assert seen[0] is False and all(seen[1:held]) and not any(seen[held:]), seen
    assert 8 <= held <= 64, f"{held - 1} repeats were taken for held frames"
    said = [r.getMessage() for r in caplog.records if "porch" in r.getMessage()]
    assert said == ["camera porch: the decoder's timestamp stays at 500 ms; every frame counts as new"]
