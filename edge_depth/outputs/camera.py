"""Per-camera output work for each depth result: colour range, heatmaps, alerts and their messages.

Runs on the pipeline's single output worker, in each camera's frame order, so alert state needs no locks.
The frame's arrays are shared with other stages and only read here: heatmaps and snapshots are new images.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.alerts.events import AlertOutput
from edge_depth.alerts.health import DepthHealth
from edge_depth.alerts.zones import ACTIVE_COLOR, draw_zones
from edge_depth.config.schema import CameraConfig
from edge_depth.depthstats import grid_stats
from edge_depth.frames import DepthFrame
from edge_depth.mqtt.discovery import nearest_payload
from edge_depth.mqtt.topics import Topics
from edge_depth.outputs.heatmap import HeatmapRenderer, encode_jpeg
from edge_depth.outputs.meters import LatencyWindow, Publisher, RateMeter

log = logging.getLogger(__name__)

NEAREST_PERIOD_S = 1.0  # the nearest-distance sensor is for dashboards: once a second is plenty
# The status is refreshed once this many results are in: the first moment every figure, the processing rate
# included (a rate needs two frames), is known.
FIRST_STATUS_RESULTS = 2


class CameraOutput:
    """Turns one camera's ``DepthFrame``s into MQTT messages and keeps the figures its status reports.

    ``on_health_change`` is called (on the output worker) once the camera's first results are in
    (``FIRST_STATUS_RESULTS``), and whenever the depth turns unreliable or recovers after that, so the daemon
    can refresh the camera's retained status at once. It is called once the result is counted: a status made
    in it already reports it (``frames_processed``, ``fps``, ``input_size``).
    """

    def __init__(
        self,
        cfg: CameraConfig,
        topics: Topics,
        publisher: Publisher,
        alerts: CameraAlerts,
        *,
        on_health_change: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.alerts = alerts
        self._topics = topics
        self._publisher = publisher
        self._on_health_change = on_health_change
        self._heatmap = HeatmapRenderer(cfg.heatmap)
        self._heatmap_period = 1.0 / cfg.heatmap.rate_hz if cfg.heatmap.rate_hz > 0 else None
        self._next_heatmap = 0.0
        self._next_nearest = 0.0
        self._nearest_topic = topics.nearest(cfg.name)
        self.health: DepthHealth | None = None
        self.frames = 0
        self.heatmaps = 0
        self.alerts_published = 0
        self.fps = RateMeter()
        self.infer_ms = LatencyWindow()
        self.latency_ms = LatencyWindow()  # frame decoded -> its messages handed to the MQTT client
        self.input_size: tuple[int, int] | None = None

    def handle(self, result: DepthFrame) -> None:
        # The heatmap's colour range and the depth health both need the frame's robust range: computed once.
        stats = grid_stats(result.depth)
        self._heatmap.observe(result.depth, result.captured_mono, stats)
        out = self.alerts.process(result, stats)
        self._publish_alerts(result, out)
        if self._heatmap_period is not None and result.captured_mono >= self._next_heatmap:
            self._publish_heatmap(result)
        if result.captured_mono >= self._next_nearest:
            self._next_nearest = result.captured_mono + NEAREST_PERIOD_S
            payload = nearest_payload(out.nearest, out.unit, out.calibrated)
            self._publisher.set_retained(self._nearest_topic, payload, qos=0)
        self.frames += 1
        done = time.monotonic()
        self.fps.tick(done)
        self.infer_ms.add(result.infer_ms)
        self.latency_ms.add((done - result.captured_mono) * 1000.0)
        self.input_size = (result.depth.shape[1], result.depth.shape[0])
        self._track_health(out.health)  # last: the status it may trigger includes this frame

    def _publish_alerts(self, result: DepthFrame, out: AlertOutput) -> None:
        camera = self.cfg.name
        for event in out.events:
            self._publisher.publish(self._topics.alert(camera), dumps(event.payload()), qos=1)
            self.alerts_published += 1
        for zone, on in out.zone_states:
            self._publisher.set_retained(self._topics.zone_state(camera, zone), "ON" if on else "OFF")
        if out.snapshot_zones:
            heatmap = self._heatmap.render(result.depth, _source_size(result))
            image = draw_zones(heatmap, self.alerts.zones, active=out.snapshot_zones)
            for event in out.events:
                if event.kind == "fall" and event.type == "new" and event.bbox is not None:
                    _draw_box(image, event.bbox)  # the tracked region that fell: what the alert is about
            jpeg = encode_jpeg(image, self.cfg.heatmap.jpeg_quality)
            self._publisher.publish(self._topics.alert_snapshot(camera), jpeg, qos=0)

    def shutdown(self) -> None:
        """At a clean stop, once no frame is processed any more: publish the ``end`` (reason ``shutdown``) of every
        alert a stop closes, then the zone states that turned OFF with them (``CameraAlerts.shutdown``)."""
        events, states = self.alerts.shutdown()
        camera = self.cfg.name
        for event in events:
            self._publisher.publish(self._topics.alert(camera), dumps(event.payload()), qos=1)
            self.alerts_published += 1
        for zone, on in states:
            self._publisher.set_retained(self._topics.zone_state(camera, zone), "ON" if on else "OFF")

    def _track_health(self, health: DepthHealth) -> None:
        changed = self.health is None or health.reliable != self.health.reliable
        self.health = health
        if changed and not health.reliable:
            log.warning("camera %s: depth unreliable (%s): alerts suppressed", self.cfg.name, health.reason)
        # A change before the first status refresh is in that refresh.
        news = self.frames == FIRST_STATUS_RESULTS or (changed and self.frames > FIRST_STATUS_RESULTS)
        if news and self._on_health_change is not None:
            self._on_health_change(self.cfg.name)

    def _publish_heatmap(self, result: DepthFrame) -> None:
        # Keep the cadence of the previous slot so the rate holds on average; after a gap, restart from now.
        period = self._heatmap_period or 0.0
        t = result.captured_mono
        self._next_heatmap = self._next_heatmap + period if t - self._next_heatmap < period else t + period
        jpeg = self._heatmap.jpeg(result.depth, _source_size(result))
        self._publisher.publish(self._topics.heatmap(self.cfg.name), jpeg, qos=0)
        self.heatmaps += 1

    def figures(self) -> dict[str, Any]:
        """The processing part of this camera's status payload."""
        p50 = self.infer_ms.percentile(50)
        lat = self.latency_ms.percentile(50)
        health = self.health
        return {
            "fps": round(self.fps.rate(), 2),
            "inference_ms": None if p50 is None else round(p50, 1),
            "latency_ms": None if lat is None else round(lat, 1),
            "frames_processed": self.frames,
            "heatmaps_published": self.heatmaps,
            "alerts_published": self.alerts_published,
            "input_size": None if self.input_size is None else "{}x{}".format(*self.input_size),
            "depth": None if health is None else {"reliable": health.reliable, "reason": health.reason},
            "reference": self.alerts.mode,
        }


def _source_size(result: DepthFrame) -> tuple[int, int]:
    """(width, height) of the camera's frame, for the heatmap's aspect ratio; the model's input when unknown."""
    return result.source_size or (result.image.shape[1], result.image.shape[0])


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def _draw_box(image: np.ndarray, bbox: tuple[float, float, float, float]) -> None:
    """Outline ``bbox`` (x0, y0, x1, y1, normalised) on the (H, W, 3) uint8 BGR ``image``, in place."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = bbox
    corner0 = (int(x0 * width), int(y0 * height))
    corner1 = (min(math.ceil(x1 * width), width) - 1, min(math.ceil(y1 * height), height) - 1)
    cv2.rectangle(image, corner0, corner1, ACTIVE_COLOR, max(1, round(height / 120)))
