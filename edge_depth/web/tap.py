"""The daemon's outputs as the console needs them, taken where they already pass: nothing is computed twice.

:class:`DaemonTap` sits between the cameras' outputs and the MQTT client. It keeps the latest heatmap JPEG that
the output published (the console streams those very bytes: no encoding per viewer), the alert events and zone
states, and the latest depth frame per camera (a reference: frames are read-only). Its per-frame cost on the
output worker is a dictionary look-up per message, a reference per frame and two histogram observations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge_depth.config.schema import CameraConfig
from edge_depth.frames import DepthFrame
from edge_depth.mqtt.topics import Topics
from edge_depth.outputs.meters import Publisher
from edge_depth.pipeline import FrameHandler
from edge_depth.web.metrics import FrameMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Heatmap:
    """One published heatmap: ``seq`` counts from 1 per camera, ``jpeg`` its bytes, ``at`` its ``time.time()``."""

    seq: int
    jpeg: bytes
    at: float


class HeatmapFeed:
    """One camera's latest heatmap, and async waiters for the next one (MJPEG viewers).

    ``put`` runs on the output worker: it swaps a reference and wakes the waiters through their event loops,
    so a slow viewer never holds the worker. ``clients`` counts viewers, for the per-camera limit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: Heatmap | None = None
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.clients = 0

    def put(self, jpeg: bytes) -> None:
        with self._lock:
            seq = 1 if self._latest is None else self._latest.seq + 1
            self._latest = Heatmap(seq, jpeg, time.time())
            waiters = tuple(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the console's loop already closed (shutdown)
                loop.call_soon_threadsafe(event.set)

    def latest(self) -> Heatmap | None:
        with self._lock:
            return self._latest

    async def after(self, seq: int, timeout: float) -> Heatmap | None:
        """The latest heatmap once it is newer than ``seq``; None after ``timeout`` seconds without one."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            deadline = time.monotonic() + timeout
            while True:
                latest = self.latest()
                if latest is not None and latest.seq > seq:
                    return latest
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                waiter[1].clear()
                try:
                    await asyncio.wait_for(waiter[1].wait(), remaining)
                except TimeoutError:
                    return None
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def try_join(self, limit: int) -> bool:
        """Count one more viewer unless ``limit`` are watching already."""
        with self._lock:
            if self.clients >= limit:
                return False
            self.clients += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.clients -= 1


class DaemonTap:
    """What the console keeps of the daemon's outputs; see the module docstring.

    ``publisher(inner)`` is the MQTT client the outputs get; ``wrap(handler)`` is what the pipeline calls for
    each camera's frames. ``recent_events``: how many alert events are kept.
    """

    def __init__(self, topics: Topics, cameras: Sequence[CameraConfig], *, recent_events: int = 200) -> None:
        names = [cam.name for cam in cameras]
        self.feeds: dict[str, HeatmapFeed] = {name: HeatmapFeed() for name in names}
        self.metrics = FrameMetrics()
        self._heatmap_topics = {topics.heatmap(name): name for name in names}
        self._alert_topics = {topics.alert(name): name for name in names}
        self._state_topics: dict[str, tuple[str, str]] = {}
        for cam in cameras:
            for zone in [*(z.name for z in cam.alerts.zones), "fall"]:
                self._state_topics[topics.zone_state(cam.name, zone)] = (cam.name, zone)
        self._lock = threading.Lock()
        self._events: deque[dict[str, Any]] = deque(maxlen=recent_events)
        self._open: dict[str, dict[str, Any]] = {}
        self._states: dict[str, dict[str, bool]] = {name: {} for name in names}
        self._frames: dict[str, DepthFrame] = {}

    def publisher(self, inner: Publisher) -> Publisher:
        """``inner`` with every message also seen by this tap."""
        return _TapPublisher(inner, self)

    def wrap(self, handler: FrameHandler) -> FrameHandler:
        """``handler`` with every frame also seen by this tap (after the handler: its messages come first)."""
        return _TapOutput(handler, self)

    # -- what the outputs hand over ---------------------------------------------------------------------

    def seen(self, topic: str, payload: bytes | str) -> None:
        camera = self._heatmap_topics.get(topic)
        if camera is not None:
            self.feeds[camera].put(payload if isinstance(payload, bytes) else payload.encode())
            return
        camera = self._alert_topics.get(topic)
        if camera is not None:
            self._alert(payload)
            return
        state = self._state_topics.get(topic)
        if state is not None:
            with self._lock:
                self._states[state[0]][state[1]] = payload in ("ON", b"ON")

    def _alert(self, payload: bytes | str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("console: an alert payload is not JSON")
            return
        with self._lock:
            self._events.append(event)
            if event.get("type") == "end":
                self._open.pop(event.get("id"), None)
            else:
                self._open[event.get("id")] = event
        if event.get("type") == "new":
            self.metrics.alert(str(event.get("camera")), str(event.get("kind")), str(event.get("zone")))

    def frame_done(self, frame: DepthFrame) -> None:
        self._frames[frame.camera] = frame  # one reference swap: readers see the old or the new frame
        self.metrics.frame(frame.camera, frame.infer_ms / 1000.0, max(0.0, time.monotonic() - frame.captured_mono))

    # -- what the console reads -----------------------------------------------------------------------

    def latest_frame(self, camera: str) -> DepthFrame | None:
        return self._frames.get(camera)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def open_alerts(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._open.values())

    def camera_of(self, event_id: str) -> str | None:
        """The camera of an alert that is open (or was seen recently), by its id."""
        with self._lock:
            found = self._open.get(event_id) or next((e for e in self._events if e.get("id") == event_id), None)
        return None if found is None else str(found.get("camera"))

    def zone_states(self, camera: str) -> dict[str, bool]:
        with self._lock:
            return dict(self._states.get(camera, {}))


class _TapPublisher:
    def __init__(self, inner: Publisher, tap: DaemonTap) -> None:
        self._inner = inner
        self._tap = tap

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False) -> bool:
        sent = self._inner.publish(topic, payload, qos=qos, retain=retain)
        self._tap.seen(topic, payload)
        return sent

    def set_retained(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        self._inner.set_retained(topic, payload, qos)
        self._tap.seen(topic, payload)


class _TapOutput:
    def __init__(self, handler: FrameHandler, tap: DaemonTap) -> None:
        self._handler = handler
        self._tap = tap

    def handle(self, result: DepthFrame) -> None:
        self._handler.handle(result)
        self._tap.frame_done(result)
