"""Property-based fuzzing of the web console's inputs against the real daemon: photo uploads (random bytes,
damaged real images), the config check (random and mutated YAML, both sections) and every API parameter
(camera names, polygons, thresholds, limits, alert ids, editor drawings).

Every answer must be a deliberate one: a status below 500 (or 503, busy, with Retry-After) and a JSON body
saying what was wrong; never the console's internal-error handler, and the daemon keeps running. Sized for CI
(EDGE_DEPTH_FUZZ_SCALE multiplies the examples, as in test_fuzz.py).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.broker import Mosquitto
from tests.support.daemon import Daemon
from tests.test_fuzz import HOSTILE_CHARS
from tests.test_web_api import PHOTO, Reply, http, start

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "edge-depth.yaml"
SCALE = int(os.environ.get("EDGE_DEPTH_FUZZ_SCALE", "1"))
# The daemon answers over HTTP from another process: a few seconds per request on a busy two-core runner is
# slow, not a hang. No example database: the working tree is shared.
WEB_FUZZ = settings(
    database=None,
    deadline=timedelta(seconds=20),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TEXT = st.text(st.one_of(st.characters(), st.sampled_from(HOSTILE_CHARS)), max_size=60)
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str), TEXT, st.just(""))
CAMERA = "clip"


def deliberate(reply: Reply, what: str) -> None:
    """A status the console chose, with a JSON body for an error; never its internal-error handler."""
    assert reply.status < 500 or reply.status == 503, f"{what}: {reply.status} {reply.body[:300]!r}"
    if reply.status == 503:
        assert "retry-after" in reply.headers, what
    if reply.status >= 400:
        detail = json.loads(reply.body)["detail"]
        assert detail, what


def quote(text: str) -> str:
    """``text`` as one path segment; lone surrogates go as their UTF-8-style bytes (what a broken client sends)."""
    return urllib.parse.quote(text, safe="", errors="surrogatepass")


def urlencode(query: dict[str, str]) -> str:
    return urllib.parse.urlencode(query, errors="surrogatepass")


def damaged(data: bytes, cuts: list[tuple[int, int]], keep: float) -> bytes:
    """``data`` with bytes overwritten at (position fraction * 1e6, value) spots, then cut to ``keep`` of it."""
    out = bytearray(data)
    for spot, value in cuts:
        out[spot * len(out) // 1_000_000] = value
    return bytes(out[: max(1, int(len(out) * keep))])


def test_the_consoles_inputs_get_deliberate_answers(
    mqtt_broker: Mosquitto, int8_ir: Path, sample_clip: Path, run_daemon: Callable[..., Daemon]
) -> None:
    cameras = [{"name": CAMERA, "source": str(sample_clip), "loop": True, "heatmap": {"rate_hz": 2}}]
    daemon, base = start(run_daemon, mqtt_broker, int8_ir, cameras, web={})
    photo, example = PHOTO.read_bytes(), EXAMPLE.read_text()

    @settings(WEB_FUZZ, max_examples=60 * SCALE)
    @given(
        body=st.one_of(
            st.binary(max_size=4096),
            st.builds(
                damaged,
                st.just(photo),
                st.lists(st.tuples(st.integers(0, 999_999), st.integers(0, 255)), max_size=8),
                st.floats(0.0, 1.0),
            ),
        ),
        fmt=st.one_of(st.sampled_from(["jpeg", "png16", "npy", "json"]), TEXT),
    )
    def uploads(body: bytes, fmt: str) -> None:
        query = urlencode({"format": fmt})
        deliberate(http("POST", f"{base}/api/predict?{query}", body), f"upload of {len(body)} bytes as {fmt!r}")

    @settings(WEB_FUZZ, max_examples=80 * SCALE)
    @given(
        text=st.one_of(
            TEXT,
            st.builds(
                lambda cut, insert: example[:cut] + insert + example[cut:],
                st.integers(0, len(example)),
                TEXT,
            ),
        ),
        section=st.one_of(st.sampled_from(["config", "alerts"]), TEXT),
    )
    def config_check(text: str, section: str) -> None:
        query = urlencode({"section": section})
        body = text.encode("utf-8", "surrogatepass")
        reply = http("POST", f"{base}/api/config/check?{query}", body)
        deliberate(reply, f"config check of {text[:80]!r} as {section!r}")
        if reply.status == 200:
            answer = json.loads(reply.body)
            assert isinstance(answer["ok"], bool)
            assert all("\n" not in error for error in answer["errors"]), answer  # one line per error

    drawing = st.recursive(
        st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(), TEXT),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
        max_leaves=20,
    )
    zone = st.fixed_dictionaries(
        {"name": TEXT, "polygon": st.lists(st.lists(st.floats(allow_nan=True), max_size=3), max_size=6)}
    )

    @settings(WEB_FUZZ, max_examples=120 * SCALE)
    @given(
        name=st.one_of(st.just(CAMERA), TEXT),
        polygon=st.one_of(
            TEXT,
            st.lists(NUMBERS, max_size=8).map(lambda v: ";".join(",".join(v[i : i + 2]) for i in range(0, len(v), 2))),
        ),
        enter=NUMBERS,
        limit=NUMBERS,
        event_id=TEXT,
        body=st.one_of(drawing, st.fixed_dictionaries({"zones": st.lists(zone, max_size=3)})),
    )
    def parameters(name: str, polygon: str, enter: str, limit: str, event_id: str, body: Any) -> None:
        camera, event = quote(name), quote(event_id)
        probe = urlencode({"polygon": polygon, "enter": enter})
        calls = [
            ("GET", f"/api/cameras/{camera}", None),
            ("GET", f"/api/cameras/{camera}/probe?{probe}", None),
            ("POST", f"/api/cameras/{camera}/alerts.yaml", json.dumps(body).encode()),
            ("GET", f"/api/events?{urlencode({'limit': limit})}", None),
            ("POST", f"/api/alerts/{event}/ack", None),
            ("GET", f"/api/predict/{event}.jpg", None),
        ]
        for method, path, data in calls:
            headers = {"Content-Type": "application/json"} if data is not None else {}
            deliberate(http(method, base + path, data, headers), f"{method} {path}")

    uploads()
    config_check()
    parameters()
    assert http("GET", f"{base}/healthz").status == 200, "the console still answers"
    assert daemon.proc.poll() is None, "the daemon is still running"
    code, _ = daemon.terminate()
    assert code == 0, daemon.log[-3000:]
    failed = [line for line in daemon.lines if "Traceback" in line or ("console:" in line and " failed" in line)]
    assert not failed, failed[:5]
