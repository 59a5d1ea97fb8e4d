"""The daemon: wires capture, inference, outputs and MQTT together and runs until told to stop.

One stop event, set by SIGTERM/SIGINT. The main thread only supervises: it feeds systemd's watchdog
while frames are really processed, publishes status and stats periodically, and on stop shuts the
stages down in order (capture, in-flight inference and its outputs, then MQTT with ``offline``).
"""

from __future__ import annotations

import logging
import os
import re
import resource
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from edge_depth import __version__
from edge_depth.alerts.camera import CameraAlerts, parse_ack, parse_baseline_reset
from edge_depth.capture.reader import CameraReader, CaptureState, FrameHub
from edge_depth.capture.replay import Recording, ReplayCamera
from edge_depth.config.schema import CameraConfig, Config
from edge_depth.model.engine import DepthEngine
from edge_depth.model.preprocess import Resizer
from edge_depth.mqtt.client import MqttPublisher
from edge_depth.mqtt.discovery import discovery_messages
from edge_depth.mqtt.topics import Topics
from edge_depth.notify import Notifier
from edge_depth.outputs.camera import CameraOutput, dumps
from edge_depth.pipeline import Pipeline

log = logging.getLogger(__name__)

_SUPERVISE_TICK_S = 0.5
_RECORDING_SUFFIX = ".npz"  # a camera whose source is a depth recording replays it instead of running the model
_SHUTDOWN_BUDGET_S = 4.0  # systemd's TimeoutStopSec is longer; the issue asks for 5 s


class StartupError(Exception):
    """Something named in the config cannot be used (a broken recording, unreadable TLS files). One line."""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Service:
    def __init__(self, cfg: Config, *, notifier: Notifier | None = None, stop: threading.Event | None = None) -> None:
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self._notifier = notifier or Notifier()
        self._topics = Topics(cfg.mqtt.topic_prefix, cfg.homeassistant.discovery_prefix)
        self._started = time.monotonic()
        self._cameras = [cam for cam in cfg.cameras if cam.enabled]
        self._outputs: dict[str, CameraOutput] = {}
        self._readers: dict[str, CameraReader | ReplayCamera] = {}
        self._engine: DepthEngine | None = None
        self._publisher: MqttPublisher | None = None
        self._pipeline: Pipeline | None = None

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        """Run until the stop event is set. Returns the process exit code."""
        engine = DepthEngine(
            self.cfg.model.path,
            device=self.cfg.model.device,
            hint=self.cfg.model.performance_hint,
            infer_requests=self.cfg.model.infer_requests,
            inference_precision=self.cfg.model.inference_precision,
            cache_dir=self.cfg.model.cache_dir,
        )
        self._engine = engine
        fixed = self.cfg.model.fixed_input_size()
        requests = engine.requests(fixed or engine.info.ir_input_size)
        try:
            publisher = MqttPublisher(self.cfg.mqtt, self._topics)
        except ValueError as exc:  # TLS files that exist but cannot be loaded
            raise StartupError(str(exc)) from None
        self._publisher = publisher
        state_dir = self.cfg.state_dir or (
            Path(os.environ["STATE_DIRECTORY"]) if "STATE_DIRECTORY" in os.environ else None
        )
        for cam in self._cameras:
            alerts = CameraAlerts(cam.name, cam.alerts, precision=engine.info.precision, state_dir=state_dir)
            self._outputs[cam.name] = CameraOutput(
                cam, self._topics, publisher, alerts, on_health_change=self._publish_status
            )
        capture_stop = threading.Event()
        pipeline_stop = threading.Event()
        hub = FrameHub()
        pipeline = Pipeline(hub, engine, dict(self._outputs), max_in_flight=requests + 4, stop=pipeline_stop)
        self._pipeline = pipeline
        resizer = Resizer(fixed)
        for cam in self._cameras:
            if isinstance(cam.source, str) and cam.source.endswith(_RECORDING_SUFFIX):
                try:
                    recording = Recording(Path(cam.source), camera=cam.name)
                except ValueError as exc:
                    raise StartupError(f"cameras: {cam.name}: {exc}") from None
                self._readers[cam.name] = ReplayCamera(
                    recording, pipeline.feed, capture_stop, loop=cam.loop, realtime=cam.realtime
                )
            else:
                self._readers[cam.name] = CameraReader(
                    cam, hub, resizer, capture_stop, on_state=self._state_changed_callback(cam)
                )
        for cam in self._cameras:
            self._publish_status(cam.name)
        self._subscribe_commands(publisher, pipeline)
        self._publish_discovery()
        publisher.start()
        pipeline.start()
        for reader in self._readers.values():
            reader.start()
        info = engine.info
        self._notifier.ready(f"model {info.name} {info.precision} on {','.join(info.execution_devices)}")
        log.info(
            "running: %d camera(s), model %s (%s) on %s",
            len(self._cameras),
            info.path,
            info.precision,
            ",".join(info.execution_devices),
        )
        try:
            self._supervise()
        finally:
            self._shutdown(capture_stop)
        return 0

    def _subscribe_commands(self, publisher: MqttPublisher, pipeline: Pipeline) -> None:
        """Acks and baseline resets run on the output worker, between frames, like all alert state changes."""
        for name, out in self._outputs.items():

            def ack(topic: str, payload: bytes, out: CameraOutput = out) -> None:
                try:
                    event_id = parse_ack(payload)
                except ValueError as exc:
                    log.warning("ignored message on %s: %s", topic, exc)
                    return
                pipeline.call_soon(lambda: self._acknowledge(out, event_id))

            def reset(topic: str, payload: bytes, out: CameraOutput = out) -> None:
                try:
                    parse_baseline_reset(payload)
                except ValueError as exc:
                    log.warning("ignored message on %s: %s", topic, exc)
                    return
                log.info("camera %s: relearning the empty scene", out.cfg.name)
                pipeline.call_soon(out.alerts.reset_baseline)

            publisher.subscribe(self._topics.alert_ack(name), ack)
            publisher.subscribe(self._topics.baseline_reset(name), reset)
        if self.cfg.homeassistant.enabled:

            def ha_status(_topic: str, payload: bytes) -> None:
                if payload.strip() == b"online":  # Home Assistant restarted: it needs the configs again
                    self._publish_discovery()

            publisher.subscribe(self._topics.homeassistant_status, ha_status)

    @staticmethod
    def _acknowledge(out: CameraOutput, event_id: str) -> None:
        if out.alerts.acknowledge(event_id):
            log.info("camera %s: alert %s acknowledged", out.cfg.name, event_id)
        else:
            log.warning("camera %s: acknowledgement for unknown or cleared alert %s", out.cfg.name, event_id)

    def _publish_discovery(self) -> None:
        if not self.cfg.homeassistant.enabled or self._publisher is None:
            return
        messages = discovery_messages(
            topics=self._topics,
            node_id=re.sub(r"[^a-zA-Z0-9_-]", "_", self.cfg.mqtt.client_id),
            cameras=[(name, tuple(z.name for z in out.alerts.zones)) for name, out in self._outputs.items()],
            version=__version__,
            nearest_units={name: out.alerts.unit for name, out in self._outputs.items()},
        )
        for topic, payload in messages:
            self._publisher.set_retained(topic, payload)

    def _state_changed_callback(self, cam: CameraConfig) -> Callable[[CaptureState], None]:
        def changed(state: CaptureState) -> None:
            log.info("camera %s: %s%s", cam.name, state.state, f" ({state.last_error})" if state.last_error else "")
            self._publish_status(cam.name, state)

        return changed

    def _supervise(self) -> None:
        interval = self.cfg.mqtt.stats_interval_s
        next_report = time.monotonic() + interval
        watchdog = self._notifier.watchdog_interval_s
        next_ping = time.monotonic()
        frames_at_ping = -1
        while not self.stop.wait(_SUPERVISE_TICK_S):
            now = time.monotonic()
            if watchdog is not None and now >= next_ping:
                done = self._pipeline.frames_done if self._pipeline else 0
                # Ping only on real progress, or when no camera is online (nothing to process is not a hang).
                if done != frames_at_ping or not self._any_camera_online():
                    self._notifier.watchdog()
                    frames_at_ping = done
                next_ping = now + watchdog
            if now >= next_report:
                self._report()
                next_report = now + interval

    def _any_camera_online(self) -> bool:
        return any(reader.state().state == "online" for reader in self._readers.values())

    def _report(self) -> None:
        for name in self._outputs:
            self._publish_status(name)
        if self._publisher is not None:
            self._publisher.publish(self._topics.stats, dumps(self.stats()), qos=0)
        fps = sum(out.fps.rate() for out in self._outputs.values())
        self._notifier.status(f"{fps:.1f} fps over {len(self._outputs)} camera(s)")

    def camera_status(self, name: str, state: CaptureState | None = None) -> dict[str, Any]:
        """The retained JSON of ``<prefix>/<camera>/status``."""
        reader = self._readers.get(name)
        state = state or (reader.state() if reader else None)
        out = self._outputs[name]
        info = self._engine.info if self._engine else None
        payload: dict[str, Any] = {
            "camera": name,
            "state": state.state if state else "starting",
            "since": iso(state.since) if state else None,
            "source": state.source if state else None,
            "capture_fps": round(state.fps, 2) if state else 0.0,
            "frames_read": state.frames_read if state else 0,
            "frames_dropped": state.frames_dropped if state else 0,
            "reconnects": state.reconnects if state else 0,
            "last_error": state.last_error if state else None,
            "device": ",".join(info.execution_devices) if info else None,
            "device_requested": info.device if info else None,
            "model": info.name if info else None,
            "precision": info.precision if info else None,
            "inference_precision": info.inference_precision or None if info else None,
        }
        payload.update(out.figures())
        if payload["state"] == "online" and out.health is not None and not out.health.reliable:
            payload["state"] = "depth unreliable"  # frames flow, but alerts are suppressed: say so
        return payload

    def _publish_status(self, name: str, state: CaptureState | None = None) -> None:
        if self._publisher is not None:
            self._publisher.set_retained(self._topics.status(name), dumps(self.camera_status(name, state)))

    def stats(self) -> dict[str, Any]:
        """The periodic JSON of ``<prefix>/stats``."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        publish = self._publisher.stats() if self._publisher else None
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "pid": os.getpid(),
            "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "threads": threading.active_count(),
            "cameras": {name: out.figures() for name, out in self._outputs.items()},
            "last_inference_error": self._pipeline.last_error if self._pipeline else None,
            "mqtt": None
            if publish is None
            else {
                "connected": publish.connected,
                "heatmaps_dropped": publish.heatmaps_dropped,
                "alerts_dropped": publish.alerts_dropped,
            },
        }

    def _shutdown(self, capture_stop: threading.Event) -> None:
        deadline = time.monotonic() + _SHUTDOWN_BUDGET_S
        self._notifier.stopping()
        capture_stop.set()
        for reader in self._readers.values():
            reader.join(timeout=max(0.1, deadline - time.monotonic() - 1.5))
        if self._pipeline is not None:
            self._pipeline.stop(timeout=max(0.1, deadline - time.monotonic() - 1.0))
        for out in self._outputs.values():
            out.alerts.save()
        for name in self._outputs:
            self._publish_status(name)
        if self._publisher is not None:
            self._publisher.stop(timeout=max(0.1, deadline - time.monotonic()))
        log.info("stopped")
