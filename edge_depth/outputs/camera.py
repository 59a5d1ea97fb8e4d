"""Per-camera output work for each depth result: colour range, heatmaps, alerts and their messages.

Runs on the pipeline's single output worker, in each camera's frame order, so alert state needs no locks.
The frame's arrays are shared with other stages and only read here: heatmaps and snapshots are new images.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.alerts.events import AlertOutput
from edge_depth.alerts.health import DepthHealth
from edge_depth.alerts.zones import draw_zones
from edge_depth.config.schema import CameraConfig
from edge_depth.frames import DepthFrame
from edge_depth.mqtt.discovery import nearest_payload
from edge_depth.mqtt.topics import Topics
from edge_depth.outputs.heatmap import HeatmapRenderer, encode_jpeg
from edge_depth.outputs.meters import LatencyWindow, Publisher, RateMeter

log = logging.getLogger(__name__)

NEAREST_PERIOD_S = 1.0  # the nearest-distance sensor is for dashboards: once a second is plenty


class CameraOutput:
    """Turns one camera's ``DepthFrame``s into MQTT messages and keeps the figures its status reports.

    ``on_health_change`` is called (on the output worker) when the depth turns unreliable or recovers, so
    the daemon can refresh the camera's retained status at once.
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
        self._heatmap.observe(result.depth, result.captured_mono)
        out = self.alerts.process(result)
        self._publish_alerts(result, out)
        if self._heatmap_period is not None and result.captured_mono >= self._next_heatmap:
            self._publish_heatmap(result)
        if result.captured_mono >= self._next_nearest:
            self._next_nearest = result.captured_mono + NEAREST_PERIOD_S
            payload = nearest_payload(out.nearest, out.unit, out.calibrated)
            self._publisher.set_retained(self._nearest_topic, payload, qos=0)
        self._track_health(out.health)
        self.frames += 1
        done = time.monotonic()
        self.fps.tick(done)
        self.infer_ms.add(result.infer_ms)
        self.latency_ms.add((done - result.captured_mono) * 1000.0)
        self.input_size = (result.depth.shape[1], result.depth.shape[0])

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
            jpeg = encode_jpeg(image, self.cfg.heatmap.jpeg_quality)
            self._publisher.publish(self._topics.alert_snapshot(camera), jpeg, qos=0)

    def _track_health(self, health: DepthHealth) -> None:
        changed = self.health is None or health.reliable != self.health.reliable
        self.health = health
        if changed and self.health is not None and not health.reliable:
            log.warning("camera %s: depth unreliable (%s): alerts suppressed", self.cfg.name, health.reason)
        if changed and self._on_health_change is not None:
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
