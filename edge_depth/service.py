"""The daemon: wires capture, inference, outputs and MQTT together and runs until told to stop.

One stop event, set by SIGTERM/SIGINT. The main thread only supervises: it feeds systemd's watchdog
while frames are really processed, publishes status and stats periodically, and on stop shuts the
stages down in order (capture, in-flight inference and its outputs, then MQTT with ``offline``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import resource
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from edge_depth import __version__
from edge_depth.alerts.commands import parse_ack, parse_baseline_reset
from edge_depth.capture.reader import CaptureState
from edge_depth.config.schema import Config
from edge_depth.mqtt.client import MqttPublisher
from edge_depth.mqtt.discovery import discovery_messages
from edge_depth.notify import Notifier
from edge_depth.outputs.camera import CameraOutput, dumps
from edge_depth.pipeline import Pipeline
from edge_depth.stages import Stages, StartupError, build_engine, build_stages, topics_of
from edge_depth.timestamps import iso_utc

__all__ = ["Service", "StartupError"]

log = logging.getLogger(__name__)

_SUPERVISE_TICK_S = 0.5
# The whole stop, from SIGTERM to exit, stays under 5 s: a restart is not held up, and systemd (TimeoutStopSec=10)
# never has to SIGKILL us, which would lose the final status, ``offline`` and the saved baselines.
_SHUTDOWN_BUDGET_S = 4.0
_MQTT_RESERVE_S = 1.0  # of the shutdown budget, what is left for publishing the final status and ``offline``


class Service:
    """The daemon for one config: ``run`` builds the stages (``stages.build_stages``), connects to MQTT, and
    supervises until ``stop`` is set."""

    def __init__(self, cfg: Config, *, notifier: Notifier | None = None, stop: threading.Event | None = None) -> None:
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self._notifier = notifier or Notifier()
        self._topics = topics_of(cfg)
        self._started = time.monotonic()
        self._stages: Stages | None = None
        self._publisher: MqttPublisher | None = None

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(self) -> int:
        """Run until the stop event is set. Returns the process exit code."""
        engine = build_engine(self.cfg.model)  # first: a missing or broken IR is the first error reported
        try:
            publisher = MqttPublisher(self.cfg.mqtt, self._topics)
        except ValueError as exc:  # TLS files that exist but cannot be loaded
            raise StartupError(str(exc)) from None
        self._publisher = publisher
        state_dir = self.cfg.state_dir or (
            Path(os.environ["STATE_DIRECTORY"]) if "STATE_DIRECTORY" in os.environ else None
        )
        stages = build_stages(
            self.cfg,
            publisher,
            engine=engine,
            state_dir=state_dir,
            on_state=self._state_changed,
            on_health_change=self._publish_status,
        )
        self._stages = stages
        for name in stages.outputs:
            self._publish_status(name)
        self._subscribe_commands(publisher, stages.pipeline)
        self._publish_discovery()
        publisher.start()
        stages.start()
        info = engine.info
        self._notifier.ready(f"model {info.name} {info.precision} on {','.join(info.execution_devices)}")
        log.info(
            "running: %d camera(s), model %s (%s) on %s",
            len(stages.outputs),
            info.path,
            info.precision,
            ",".join(info.execution_devices),
        )
        try:
            self._supervise()
        finally:
            self._shutdown(stages)
        return 0

    @property
    def _outputs(self) -> Mapping[str, CameraOutput]:
        return self._stages.outputs if self._stages is not None else {}

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
            entities={name: out.alerts.entities for name, out in self._outputs.items()},
        )
        for topic, payload in messages:
            self._publisher.set_retained(topic, payload)

    def _state_changed(self, camera: str, state: CaptureState) -> None:
        log.info("camera %s: %s%s", camera, state.state, f" ({state.last_error})" if state.last_error else "")
        self._publish_status(camera, state)

    def _supervise(self) -> None:
        interval = self.cfg.mqtt.stats_interval_s
        next_report = time.monotonic() + interval
        watchdog = self._notifier.watchdog_interval_s
        next_ping = time.monotonic()
        frames_at_ping = -1
        while not self.stop.wait(_SUPERVISE_TICK_S):
            now = time.monotonic()
            if watchdog is not None and now >= next_ping:
                done = self._stages.pipeline.frames_done if self._stages else 0
                # Ping only on real progress, or when no camera is online (nothing to process is not a hang).
                if done != frames_at_ping or not self._any_camera_online():
                    self._notifier.watchdog()
                    frames_at_ping = done
                next_ping = now + watchdog
            if now >= next_report:
                self._report()
                next_report = now + interval

    def _any_camera_online(self) -> bool:
        readers = self._stages.readers.values() if self._stages else ()
        return any(reader.state().state == "online" for reader in readers)

    def _report(self) -> None:
        for name in self._outputs:
            self._publish_status(name)
        if self._publisher is not None:
            self._publisher.publish(self._topics.stats, dumps(self.stats()), qos=0)
        fps = sum(out.fps.rate() for out in self._outputs.values())
        self._notifier.status(f"{fps:.1f} fps over {len(self._outputs)} camera(s)")

    def camera_status(self, name: str, state: CaptureState | None = None) -> dict[str, Any]:
        """The retained JSON of ``<prefix>/<camera>/status``."""
        reader = self._stages.readers.get(name) if self._stages else None
        state = state or (reader.state() if reader else None)
        out = self._outputs[name]
        info = self._stages.engine.info if self._stages else None
        payload: dict[str, Any] = {
            "camera": name,
            "state": state.state if state else "starting",
            "since": iso_utc(state.since) if state else None,
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
        """The periodic JSON of ``<prefix>/stats``; ``mqtt`` carries every counter of ``PublishStats``."""
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
            "last_inference_error": self._stages.pipeline.last_error if self._stages else None,
            "mqtt": None if publish is None else dataclasses.asdict(publish),
        }

    def _shutdown(self, stages: Stages) -> None:
        deadline = time.monotonic() + _SHUTDOWN_BUDGET_S
        self._notifier.stopping()
        stages.stop(deadline - _MQTT_RESERVE_S)
        for out in stages.outputs.values():
            out.alerts.save()
        for name in stages.outputs:
            self._publish_status(name)
        if self._publisher is not None:
            self._publisher.stop(timeout=max(0.1, deadline - time.monotonic()))
        log.info("stopped")
