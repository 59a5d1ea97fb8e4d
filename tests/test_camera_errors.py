"""A camera that cannot be read says why (refused, 404, 401, timeout, not a video) in its status and log, and
what FFmpeg prints never breaks a JSON log."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Mosquitto, MqttRecorder, Received
from tests.support.daemon import Daemon, daemon_config, status_of
from tests.support.rtsp import RtspServer

pytestmark = pytest.mark.slow

QUICK = {"open_timeout_s": 2, "read_timeout_s": 2, "stall_timeout_s": 3, "reconnect": {"initial_s": 0.5, "max_s": 2}}


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="camera"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def http_401() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_tcp() -> Iterator[int]:
    """Accepts connections and never says a word (a camera whose firmware hung)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def explained(error: str | None) -> bool:
    """``cannot open <kind> <source>: <reason>`` rather than a bare ``cannot open <kind> <source>``."""
    return bool(error) and str(error).startswith("cannot open") and ": " in str(error)


def errors_of(camera: str) -> Callable[[list[Received]], list[str] | None]:
    """Every last_error the camera's status has shown, once one of them gives a reason."""

    def find(messages: list[Received]) -> list[str] | None:
        errors = [status_of(m.payload)["last_error"] for m in messages if m.topic == f"ed/{camera}/status"]
        return [e for e in errors if e] if any(explained(e) for e in errors) else None

    return find


@pytest.fixture
def sources(rtsp_server: RtspServer, http_401: str, silent_tcp: int, tmp_path: Path) -> dict[str, tuple[str, str]]:
    """camera -> (source, the reason its status must give)."""
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video\n" * 100)
    return {
        "refused": (f"rtsp://user:hunter2@127.0.0.1:{free_port()}/cam", "connection refused"),
        "missing": (rtsp_server.url.replace("/cam", "/nothing-here"), "not found (404)"),
        "locked": (http_401, "unauthorized (401)"),
        "hung": (f"rtsp://127.0.0.1:{silent_tcp}/cam", "timed out"),
        "notes": (str(not_video), "not a video file OpenCV can decode"),
    }


def test_each_camera_error_names_its_reason_in_status_and_json_log(
    mqtt_broker: Mosquitto, int8_ir: Path, sources: dict[str, tuple[str, str]], run_daemon: Callable[..., Daemon]
) -> None:
    cameras = sources
    config = daemon_config(
        mqtt_broker,
        int8_ir,
        [{"name": name, "source": source, **QUICK} for name, (source, _) in cameras.items()],
        logging={"format": "json"},
    )
    with MqttRecorder.for_broker(mqtt_broker, "ed/#") as rec:
        daemon = run_daemon(config)
        for name, (_, reason) in cameras.items():
            try:
                errors = rec.wait_for(errors_of(name), timeout=90)
            except BaseException:
                seen = {c: (errors_of(c)(rec.messages) or "no reason yet") for c in cameras}
                pytest.fail(f"{name}: no explained error within 90 s; all: {seen}\n{daemon.log[-3000:]}")
            # A reason is given only when it is this camera's own: never another camera's.
            assert all(reason in e for e in errors if explained(e)), f"{name}: {errors}"
            assert not any("hunter2" in e for e in errors)
        daemon.wait_for_log(lambda line: "connection refused" in line and "refused" in line)
    code, _ = daemon.terminate()
    assert code == 0
    assert daemon.lines, "the daemon logged nothing"
    for line in daemon.lines:
        entry = json.loads(line)  # every line, FFmpeg's included, is one JSON object
        assert {"time", "level", "logger", "message"} <= entry.keys()
    assert "hunter2" not in daemon.log
    assert any(json.loads(line)["logger"] == "edge_depth.native" for line in daemon.lines), "FFmpeg said nothing?"
