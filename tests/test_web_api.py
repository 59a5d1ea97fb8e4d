"""The web console's API against the real daemon (a replayed fall recording, a file camera, a camera whose URL
carries a password) on a real Mosquitto: every endpoint, auth on and off, bad uploads, the photo cache, and a
/metrics scrape parsed by prometheus_client with values that move."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from edge_depth.capture.replay import save_recording
from edge_depth.config import check_config
from tests.support.broker import Mosquitto
from tests.support.daemon import Daemon, daemon_config, wait_until
from tests.support.scenes import frames, keyframes, load_scene, person, posture

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
PHOTO = FIXTURES / "nyu" / "rgb_00122.png"
STANDING = person(0.3, 0.92, 0.6, 1.5)
LYING = posture(STANDING, 0.25, 3.5)
SECRET = "s3cretPass"
TOKEN = "console-token-0123456789"
DOOR = [[0.1, 0.3], [0.5, 0.3], [0.5, 0.95], [0.1, 0.95]]


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fall_recording(path: Path, duration_s: float = 60) -> Path:
    fall = keyframes((2.5, STANDING), (3.5, STANDING), (4.2, LYING))
    save_recording(path, frames(load_scene("nyu_00122"), fall, duration_s=duration_s, camera="hall", seed=1))
    return path


def console_cameras(recording: Path, clip: Path) -> list[dict[str, Any]]:
    return [
        {
            "name": "hall",
            "source": str(recording),
            "realtime": True,
            "heatmap": {"rate_hz": 4},
            "alerts": {
                "reference": {"baseline": {"learn_s": 2.0}},
                "fall": {"enabled": True},
                "zones": [{"name": "door", "polygon": DOOR}],
            },
        },
        {"name": "road", "source": str(clip), "loop": True, "fps_limit": 10, "heatmap": {"rate_hz": 2}},
        # Never reachable: its URL's password must never show in any page or payload.
        {"name": "gate", "source": f"rtsp://admin:{SECRET}@127.0.0.1:9/stream", "open_timeout_s": 1},
    ]


def start(
    run_daemon: Callable[..., Daemon],
    broker: Mosquitto,
    model: Path,
    cameras: list[dict[str, Any]],
    *,
    web: dict[str, Any],
    env: dict[str, str] | None = None,
) -> tuple[Daemon, str]:
    port = free_port()
    daemon = run_daemon(daemon_config(broker, model, cameras, web={"port": port, **web}), env=env)
    daemon.wait_for_log(lambda line: "web console on" in line)
    return daemon, f"http://127.0.0.1:{port}"


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_endpoint_without_token(  # noqa: PLR0915 -- one daemon start serves every endpoint
    mqtt_broker: Mosquitto,
    int8_ir: Path,
    sample_clip: Path,
    tmp_path: Path,
    run_daemon: Callable[..., Daemon],
) -> None:
    recording = fall_recording(tmp_path / "hall.npz")
    daemon, base = start(
        run_daemon, mqtt_broker, int8_ir, console_cameras(recording, sample_clip), web={"max_upload_mb": 1}
    )

    # Pages and assets come from the daemon itself.
    for path in ("/", "/editor", "/photo", "/docs", "/static/console.js", "/static/swagger/swagger-ui-bundle.js"):
        reply = http("GET", base + path)
        assert reply.status == 200, path
        assert b"https://" not in reply.body or path.endswith("bundle.js"), f"{path} refers to another site"
    assert http("GET", base + "/healthz").json()["status"] == "ok"
    openapi = http("GET", base + "/openapi.json").json()
    assert "/api/predict" in openapi["paths"] and "/api/alerts/{event_id}/ack" in openapi["paths"]

    # Status and cameras, with live zone figures once the baseline is learned.
    wait_until(lambda: http("GET", base + "/api/cameras/hall/latest.jpg").status == 200, 60, "hall heatmap")
    status = http("GET", base + "/api/status").json()
    assert set(status["cameras"]) == {"hall", "road", "gate"} and status["model"]["compiled"] is True
    assert status["web"] == {"auth": False, "show_camera_image": False}
    hall = http("GET", base + "/api/cameras/hall").json()
    assert hall["zones"][0]["name"] == "door" and hall["alerts"]["fall"]["enabled"] is True

    # latest.jpg is the published heatmap; the MJPEG stream repeats those bytes as they come.
    first = http("GET", base + "/api/cameras/hall/latest.jpg")
    assert first.headers["content-type"] == "image/jpeg" and first.body[:3] == b"\xff\xd8\xff"
    with urllib.request.urlopen(base + "/api/cameras/hall/stream.mjpeg", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("multipart/x-mixed-replace")
        started, parts = time.monotonic(), 0
        while time.monotonic() - started < 3.0:
            parts += stream.readline().startswith(b"--edge-depth-frame")
    # At most the heatmap rate (4 Hz over 3 s, and the latest one at once), at least a few.
    assert 3 <= parts <= 4 * 3 + 2, parts
    assert http("GET", base + "/api/cameras/hall/image.jpg").status == 403  # show_camera_image is off
    assert http("GET", base + "/api/cameras/nope/latest.jpg").status == 404

    # Probe: a polygon measured with the camera's current reference.
    wait_until(
        lambda: http("GET", f"{base}/api/cameras/hall/probe?polygon=0.1,0.3;0.5,0.3;0.5,0.95").json()["ready"],
        30,
        "baseline learned",
    )
    probe = http("GET", f"{base}/api/cameras/hall/probe?polygon=0.1,0.3;0.5,0.3;0.5,0.95").json()
    assert 0 <= probe["occupied_fraction"] <= 1 and probe["unit"] == "baseline" and probe["pixels"] > 100
    assert http("GET", f"{base}/api/cameras/hall/probe?polygon=0.1,0.3;2,0.3;0.5,0.9").status == 422

    # The fall: an open latched alert, acknowledged over HTTP; it ends with reason "acknowledged".
    def open_fall() -> dict[str, Any] | None:
        return next((a for a in http("GET", base + "/api/events").json()["open"] if a["kind"] == "fall"), None)

    wait_until(lambda: open_fall() is not None, 40, "a latched fall")
    fall = open_fall()
    assert fall is not None and fall["latched"] is True
    assert http("POST", f"{base}/api/alerts/{fall['id']}/ack", headers={"Origin": "http://evil.example"}).status == 403
    assert http("POST", f"{base}/api/alerts/no-such-alert/ack").status == 404
    reply = http("POST", f"{base}/api/alerts/{fall['id']}/ack")
    assert reply.status == 200 and reply.json()["acknowledged"] is True
    wait_until(lambda: open_fall() is None, 10, "the fall ended")
    ends = [e for e in http("GET", base + "/api/events").json()["events"] if e["type"] == "end"]
    assert any(e["id"] == fall["id"] and e["reason"] == "acknowledged" for e in ends)

    # Baseline reset: accepted for a baseline camera, refused cross-site.
    assert (
        http("POST", base + "/api/cameras/hall/baseline/reset", headers={"Sec-Fetch-Site": "cross-site"}).status == 403
    )
    assert http("POST", base + "/api/cameras/hall/baseline/reset").status == 202
    daemon.wait_for_log(lambda line: "relearning the empty scene" in line)

    # Photos: heatmap, 16-bit PNG and NPY; a repeat comes from the cache; bad uploads get clear messages.
    data = PHOTO.read_bytes()
    miss = http("POST", base + "/api/predict?format=json", data, {"Content-Type": "image/png"})
    assert miss.status == 200 and miss.json()["cached"] is False and miss.headers["x-edge-depth-cache"] == "miss"
    hit = http("POST", base + "/api/predict", data, {"Content-Type": "image/png"})
    assert hit.headers["x-edge-depth-cache"] == "hit" and hit.body[:3] == b"\xff\xd8\xff"
    png = http("POST", base + "/api/predict?format=png16", data)
    import cv2  # noqa: PLC0415 -- decodes what the daemon sent

    depth16 = cv2.imdecode(np.frombuffer(png.body, np.uint8), cv2.IMREAD_UNCHANGED)
    assert depth16 is not None and depth16.dtype == np.uint16 and depth16.max() == 65535
    npy = http("GET", base + miss.json()["depth_npy"])
    assert np.load(io.BytesIO(npy.body)).dtype == np.float32
    too_large = http("POST", base + "/api/predict", b"\xff\xd8\xff" + b"0" * 1_100_000)
    assert too_large.status == 413 and "limit" in too_large.json()["detail"]
    not_image = http("POST", base + "/api/predict", b"hello, not an image")
    assert not_image.status == 415 and "not an image" in not_image.json()["detail"]
    broken = http("POST", base + "/api/predict", data[:2000])
    assert broken.status == 422 and "broken image" in broken.json()["detail"]
    assert b"Traceback" not in broken.body + not_image.body + too_large.body

    # Config: schema and check with key and line.
    schema = http("GET", base + "/api/config/schema.json").json()
    assert "web" in schema["properties"]
    bad = http(
        "POST", base + "/api/config/check?section=alerts", b"alerts:\n  zones:\n    - name: a\n      polygon: 3\n"
    )
    assert bad.json()["ok"] is False and bad.json()["errors"][0].startswith("alerts.yaml:4: alerts.zones[0].polygon:")
    good = http("POST", base + "/api/config/check", yaml.safe_dump({"cameras": [{"name": "a", "source": 0}]}).encode())
    assert good.json() == {"ok": True, "errors": []}

    # Metrics: parsed by prometheus_client; frame counts and histograms move, the fall was counted.
    before = metric_samples(http("GET", base + "/metrics").body.decode())
    road = (("camera", "road"),)
    frames = ("edge_depth_frames_processed_total", road)
    deadline = time.monotonic() + 60  # generous: a loaded machine may be slow, the figures must still move
    after = before
    while after[frames] <= before[frames] and time.monotonic() < deadline:
        threading.Event().wait(0.2)
        after = metric_samples(http("GET", base + "/metrics").body.decode())
    assert after[("edge_depth_frames_processed_total", road)] > before[("edge_depth_frames_processed_total", road)]
    assert after[("edge_depth_inference_seconds_count", road)] > before[("edge_depth_inference_seconds_count", road)]
    assert after[("edge_depth_end_to_end_seconds_count", road)] > 0
    assert after[("edge_depth_alerts_total", (("camera", "hall"), ("kind", "fall"), ("zone", "fall")))] == 1
    assert after[("edge_depth_mqtt_connected", ())] == 1 and ("edge_depth_mqtt_outbox", ()) in after
    assert ("edge_depth_camera_reconnects_total", (("camera", "gate"),)) in after
    assert ("edge_depth_depth_reliable", road) in after and ("edge_depth_frames_stale_total", road) in after

    # Readiness: the gate camera never delivers.
    ready = http("GET", base + "/readyz")
    assert ready.status == 503 and ready.json()["checks"]["model_compiled"] is True
    assert ready.json()["cameras"]["road"] is True and ready.json()["cameras"]["gate"] is False

    # No payload shows the camera URL's password.
    for path in ("/api/status", "/api/cameras", "/api/cameras/gate", "/api/events", "/metrics", "/readyz"):
        assert SECRET not in http("GET", base + path).body.decode(), path
    code, took = daemon.terminate()
    assert code == 0 and took < 6


def test_token_protects_pages_api_and_writes(
    mqtt_broker: Mosquitto,
    int8_ir: Path,
    sample_clip: Path,
    run_daemon: Callable[..., Daemon],
) -> None:
    cameras = [{"name": "road", "source": str(sample_clip), "loop": True, "fps_limit": 5}]
    daemon, base = start(
        run_daemon, mqtt_broker, int8_ir, cameras, web={"token": "${WEB_TOKEN}"}, env={"WEB_TOKEN": TOKEN}
    )
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert http("GET", base + "/healthz").status == 200  # probes need no token
    assert http("GET", base + "/readyz").status in (200, 503)
    for path in ("/api/status", "/api/cameras", "/metrics", "/api/events"):
        reply = http("GET", base + path)
        assert reply.status == 401 and reply.headers["www-authenticate"] == "Bearer", path
        assert http("GET", base + path, headers=bearer).status == 200, path
    assert http("GET", base + "/api/status", headers={"Authorization": "Bearer wrong-token-000000"}).status == 401
    page = http("GET", base + "/", headers={"Accept": "text/html"})
    assert page.status == 200 and b"Log in" in page.body  # redirected to /login
    assert http("POST", base + "/api/cameras/road/baseline/reset").status == 401
    assert http("POST", base + "/api/cameras/road/baseline/reset", headers=bearer).status == 202
    assert (
        http(
            "POST", base + "/api/cameras/road/baseline/reset", headers={**bearer, "Sec-Fetch-Site": "cross-site"}
        ).status
        == 403
    )

    # The browser's way: a login form sets an HttpOnly, SameSite=Strict cookie that is not the token.
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    form = f"token={TOKEN}&next=/photo".encode()
    try:
        opener.open(urllib.request.Request(base + "/login", data=form, method="POST"), timeout=10)
        pytest.fail("login must redirect")
    except urllib.error.HTTPError as redirect:
        assert redirect.code == 303 and redirect.headers["location"] == "/photo"
        cookie = redirect.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    session = cookie.split(";")[0]
    assert http("GET", base + "/api/status", headers={"Cookie": session}).status == 200
    status = http("GET", base + "/api/status", headers=bearer)
    assert TOKEN not in status.body.decode() and status.json()["web"]["auth"] is True
    code, _ = daemon.terminate()
    assert code == 0


def test_non_loopback_needs_a_token_at_its_key_and_line(tmp_path: Path, int8_ir: Path) -> None:
    config = tmp_path / "edge-depth.yaml"
    config.write_text(
        f"model:\n  path: {int8_ir}\ncameras:\n  - name: a\n    source: 0\nweb:\n  host: 0.0.0.0\n  port: 8088\n"
    )
    code, text = check_config(config)
    assert code == 2 and f"{config}:6: web.token: web.host is not a loopback address" in text
    config.write_text(config.read_text() + "  token: short\n")
    code, text = check_config(config)
    assert code == 2 and "web.token: must be 16 to 512 characters long" in text and "short" not in text
    result = subprocess.run(
        [sys.executable, "-m", "edge_depth.cli", "check-config", "--schema"], capture_output=True, text=True, check=True
    )
    assert "web.show_camera_image" in result.stdout
