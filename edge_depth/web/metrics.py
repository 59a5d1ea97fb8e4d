"""``GET /metrics``: the daemon in Prometheus's text format (``prometheus_client``), in a registry of its own.

Per frame (observed on the output worker, cheap): inference and end-to-end latency histograms (s), alerts by
kind and zone. At scrape time (read from the daemon, nothing kept): per-camera processed and capture FPS, frames
processed, dropped and stale, reconnects, depth reliability and capture state; MQTT connection and outbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from edge_depth.web.source import ConsoleSource

# Inference on a CPU takes 5..200 ms; end to end adds queueing and output work.
_LATENCY_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
_STATES = ("starting", "online", "reconnecting", "error", "ended", "stopped")


class FrameMetrics:
    """What is observed as it happens; ``registry`` holds it and the scrape-time collector added later."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._inference = Histogram(
            "edge_depth_inference_seconds",
            "Model inference time per frame (s)",
            ["camera"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._end_to_end = Histogram(
            "edge_depth_end_to_end_seconds",
            "From a frame's decoding to its messages handed to the MQTT client (s)",
            ["camera"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._alerts = Counter(
            "edge_depth_alerts",
            "Alerts raised ('new' events) by camera, kind and zone",
            ["camera", "kind", "zone"],
            registry=self.registry,
        )

    def frame(self, camera: str, inference_s: float, end_to_end_s: float) -> None:
        self._inference.labels(camera).observe(inference_s)
        self._end_to_end.labels(camera).observe(end_to_end_s)

    def alert(self, camera: str, kind: str, zone: str) -> None:
        self._alerts.labels(camera, kind, zone).inc()


class DaemonCollector:
    """Reads the daemon's counters and gauges at each scrape."""

    def __init__(self, source: ConsoleSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("camera",)) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=list(labels))

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=["camera"])

        fps = gauge("edge_depth_camera_fps", "Frames processed per second (last 5 s)")
        capture_fps = gauge("edge_depth_camera_capture_fps", "Frames decoded per second (last second or so)")
        processed = counter("edge_depth_frames_processed", "Frames processed (inference and outputs)")
        dropped = counter("edge_depth_frames_dropped", "Frames decoded but never inferred (stale + skipped)")
        stale = counter("edge_depth_frames_stale", "Frames replaced in the hub by a newer one before inference")
        reconnects = counter("edge_depth_camera_reconnects", "Attempts to open a camera again after it failed")
        reliable = gauge("edge_depth_depth_reliable", "1 while the camera's depth is reliable (alerts active)")
        state = gauge("edge_depth_camera_state", "1 for the camera's capture state", ("camera", "state"))
        for cam in self._source.cameras():
            name = cam.name
            status = self._source.camera_status(name)
            fps.add_metric([name], float(status.get("fps") or 0.0))
            processed.add_metric([name], float(status.get("frames_processed") or 0))
            depth = status.get("depth")
            reliable.add_metric([name], 1.0 if isinstance(depth, dict) and depth.get("reliable") else 0.0)
            capture = self._source.capture_state(name)
            if capture is not None:
                capture_fps.add_metric([name], capture.fps)
                dropped.add_metric([name], float(capture.frames_dropped))
                stale.add_metric([name], float(capture.frames_stale))
                reconnects.add_metric([name], float(capture.reconnects))
                for value in _STATES:
                    state.add_metric([name, value], 1.0 if capture.state == value else 0.0)
        yield from (fps, capture_fps, processed, dropped, stale, reconnects, reliable, state)
        mqtt = self._source.mqtt()
        connected = GaugeMetricFamily("edge_depth_mqtt_connected", "1 while connected to the MQTT broker")
        outbox = GaugeMetricFamily("edge_depth_mqtt_outbox", "Alerts (QoS 1) waiting in the outbox")
        if mqtt is not None:
            connected.add_metric([], 1.0 if mqtt.connected else 0.0)
            outbox.add_metric([], float(mqtt.alerts_queued))
            yield connected
            yield outbox
            yield CounterMetricFamily("edge_depth_mqtt_messages_sent", "Messages the broker took", mqtt.messages_sent)
            yield CounterMetricFamily(
                "edge_depth_mqtt_heatmaps_dropped", "QoS 0 messages dropped while away", mqtt.heatmaps_dropped
            )
            yield CounterMetricFamily(
                "edge_depth_mqtt_alerts_dropped", "Alerts dropped from a full outbox", mqtt.alerts_dropped
            )
        engine = self._source.engine()
        yield GaugeMetricFamily(
            "edge_depth_model_compiled", "1 once the model is compiled", 1.0 if engine.compiled else 0.0
        )


def make_registry(metrics: FrameMetrics, source: ConsoleSource) -> CollectorRegistry:
    """``metrics``' registry with the daemon's scrape-time collector added."""
    metrics.registry.register(DaemonCollector(source))
    return metrics.registry
