"""Per-camera output work for each depth result: colour range, heatmaps, alerts and their messages.

Runs on the pipeline's single output worker, in each camera's frame order, so alert state needs no locks.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from edge_depth.config import CameraConfig
from edge_depth.frames import DepthFrame
from edge_depth.heatmap import HeatmapRenderer
from edge_depth.pipeline import LatencyWindow, Publisher, RateMeter
from edge_depth.topics import Topics

log = logging.getLogger(__name__)


class CameraOutput:
    """Turns one camera's ``DepthFrame``s into MQTT messages and keeps the figures its status reports."""

    def __init__(self, cfg: CameraConfig, topics: Topics, publisher: Publisher) -> None:
        self.cfg = cfg
        self._topics = topics
        self._publisher = publisher
        self._heatmap = HeatmapRenderer(cfg.heatmap)
        self._heatmap_period = 1.0 / cfg.heatmap.rate_hz if cfg.heatmap.rate_hz > 0 else None
        self._next_heatmap = 0.0
        self.frames = 0
        self.heatmaps = 0
        self.fps = RateMeter()
        self.infer_ms = LatencyWindow()
        self.latency_ms = LatencyWindow()  # frame decoded -> its messages handed to the MQTT client
        self.input_size: tuple[int, int] | None = None

    def handle(self, result: DepthFrame) -> None:
        self._heatmap.observe(result.depth, result.captured_mono)
        if self._heatmap_period is not None and result.captured_mono >= self._next_heatmap:
            self._publish_heatmap(result)
        self.frames += 1
        done = time.monotonic()
        self.fps.tick(done)
        self.infer_ms.add(result.infer_ms)
        self.latency_ms.add((done - result.captured_mono) * 1000.0)
        self.input_size = (result.depth.shape[1], result.depth.shape[0])

    def _publish_heatmap(self, result: DepthFrame) -> None:
        # Keep the cadence of the previous slot so the rate holds on average; after a gap, restart from now.
        period = self._heatmap_period or 0.0
        t = result.captured_mono
        self._next_heatmap = self._next_heatmap + period if t - self._next_heatmap < period else t + period
        source_size = result.source_size or (result.image.shape[1], result.image.shape[0])
        jpeg = self._heatmap.jpeg(result.depth, source_size)
        self._publisher.publish(self._topics.heatmap(self.cfg.name), jpeg, qos=0)
        self.heatmaps += 1

    def figures(self) -> dict[str, Any]:
        """The processing part of this camera's status payload."""
        p50 = self.infer_ms.percentile(50)
        lat = self.latency_ms.percentile(50)
        return {
            "fps": round(self.fps.rate(), 2),
            "inference_ms": None if p50 is None else round(p50, 1),
            "latency_ms": None if lat is None else round(lat, 1),
            "frames_processed": self.frames,
            "heatmaps_published": self.heatmaps,
            "input_size": None if self.input_size is None else "{}x{}".format(*self.input_size),
        }


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)
