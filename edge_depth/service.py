"""The daemon: wires capture, inference, outputs and MQTT together and runs until told to stop.

One stop event, set by SIGTERM/SIGINT (the command line installs its handlers before anything heavy is imported,
and a stop requested at any moment of the start is honoured between its steps: no READY=1 follows it). SIGHUP
validates the config file again: a valid, changed config stops the daemon in order with ``RESTART_EXIT_CODE``
(systemd's ``RestartForceExitStatus=`` starts it again with the new config), an invalid one is one warning and
the daemon goes on. SIGUSR1/SIGUSR2 log one status line. Learned baselines (and latched falls) are saved when
learned, every ``_STATE_SAVE_PERIOD_S`` when changed, and at shutdown; a save that fails is one warning.

The main thread only supervises: it feeds systemd's watchdog
while frames are really processed, publishes status and stats periodically (statuses every
``_STARTUP_STATUS_S`` during the first stats interval, so that the first figures show up at once), and on
stop shuts the stages down in order (capture, in-flight inference and its outputs, the end of open obstacle
alerts and their zone states, then MQTT with ``offline``).

At start, the retained topics that an earlier run announced and this one does not (a camera, zone or
feature taken out of the config) get an empty retained payload, which deletes them from the broker and
Home Assistant; what was announced is remembered in the state directory.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from edge_depth import __version__
from edge_depth.alerts.commands import parse_ack, parse_baseline_reset
from edge_depth.capture.reader import CaptureState
from edge_depth.config.errors import ConfigError
from edge_depth.config.schema import Config
from edge_depth.model.engine import ModelError
from edge_depth.mqtt.client import MqttPublisher
from edge_depth.mqtt.discovery import discovery_messages, gone, load_announced, save_announced
from edge_depth.notify import Notifier
from edge_depth.outputs.camera import CameraOutput, dumps
from edge_depth.outputs.status import camera_status
from edge_depth.pipeline import Pipeline
from edge_depth.redact import Throttle
from edge_depth.stages import Stages, StartupError, build_engine, build_stages, topics_of
from edge_depth.web import DaemonTap, StagesView, WebError, WebServer

__all__ = ["RESTART_EXIT_CODE", "Service", "StartupError"]

log = logging.getLogger(__name__)

_SUPERVISE_TICK_S = 0.5
# The whole stop, from SIGTERM to exit, stays under 5 s: a restart is not held up, and systemd (TimeoutStopSec=10)
# never has to SIGKILL us, which would lose the final status, ``offline`` and the saved baselines.
_SHUTDOWN_BUDGET_S = 4.0
_MQTT_RESERVE_S = 1.0  # of the shutdown budget, what is left for publishing the final status and ``offline``
_WEB_STOP_S = 0.8  # of the shutdown budget, the console's: open streams end at once, requests get a short grace
_STARTUP_STATUS_S = 2.0  # status refresh period during the first stats interval: rates settle within seconds
ANNOUNCED_FILE = "announced.json"  # in the state directory: the retained topics the last run published
_HA_STATUS_MAX_BYTES = 64  # Home Assistant status payloads are "online" and "offline"
_IGNORED_LOG_INTERVAL_S = 60.0  # anyone on the broker can send bad commands: one line a minute per topic
_STATE_SAVE_PERIOD_S = 600.0  # learned baselines are saved this often (when changed): a SIGKILL loses at most this
# Exit code of a stop for a changed config (SIGHUP): the unit's RestartForceExitStatus= starts the daemon again.
RESTART_EXIT_CODE = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
REQUEST_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


class Service:
    """The daemon for one config: ``run`` builds the stages (``stages.build_stages``), connects to MQTT, and
    supervises until ``stop`` is set."""

    def __init__(
        self,
        cfg: Config,
        *,
        notifier: Notifier | None = None,
        stop: threading.Event | None = None,
        reload: Callable[[], Config] | None = None,
        pending: set[signal.Signals] | None = None,
    ) -> None:
        """``reload``: the config file loaded and validated again (raises ``ConfigError``), for SIGHUP.
        ``pending``: SIGHUP/SIGUSR1/SIGUSR2 received before the service existed, handled once it supervises."""
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self._reload = reload
        self._pending: set[signal.Signals] = pending if pending is not None else set()  # shared with early handlers
        self._exit_code = 0
        self._stop_signal: str | None = None  # the SIGTERM/SIGINT that set ``stop``, logged outside the handler
        self._notifier = notifier or Notifier()
        self._topics = topics_of(cfg)
        self._started = time.monotonic()
        self._stages: Stages | None = None
        self._publisher: MqttPublisher | None = None
        self._web: WebServer | None = None
        self._load_error: ModelError | None = None
        self._ignored = Throttle(log, _IGNORED_LOG_INTERVAL_S)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT set ``stop``; SIGHUP (config reload) and SIGUSR1/SIGUSR2 (a status line) are noted
        here and handled by the supervising loop, outside the handler."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            sig = signal.Signals(signum)
            # No logging here: a handler interrupts the main thread anywhere, a log write included (a reentrant
            # write to stderr raises). What was received is logged by the main thread, outside the handler.
            if sig in STOP_SIGNALS:
                self._stop_signal = sig.name
                self.stop.set()
            else:
                self._pending.add(sig)

        for sig in (*STOP_SIGNALS, *REQUEST_SIGNALS):
            signal.signal(sig, handle)

    def _stopped_early(self, step: str) -> bool:
        """True (and logged) when a stop was requested during the start, before ``step``."""
        if not self.stop.is_set():
            return False
        log.info("%s during the start: stopping before %s", self._stop_signal or "stop requested", step)
        return True

    def run(self) -> int:
        """Run until the stop event is set. Returns the process exit code (``RESTART_EXIT_CODE`` after a SIGHUP
        with a changed, valid config)."""
        if self._stopped_early("compiling the model"):
            log.info("stopped")
            return 0
        engine = build_engine(self.cfg.model)  # first: a missing or broken IR is the first error reported
        if self._stopped_early("connecting to MQTT"):  # compiling takes seconds: a SIGTERM may have come meanwhile
            log.info("stopped")
            return 0
        try:
            publisher = MqttPublisher(self.cfg.mqtt, self._topics)
        except ValueError as exc:  # TLS files that exist but cannot be loaded
            raise StartupError(str(exc)) from None
        self._publisher = publisher
        state_dir = self.cfg.state_dir or (
            Path(os.environ["STATE_DIRECTORY"]) if "STATE_DIRECTORY" in os.environ else None
        )
        # The console sees what the outputs publish (heatmap JPEGs, alerts, zone states) as they pass.
        cameras = [cam for cam in self.cfg.cameras if cam.enabled]
        tap = DaemonTap(self._topics, cameras, recent_events=self.cfg.web.recent_events)
        stages = build_stages(
            self.cfg,
            tap.publisher(publisher),
            engine=engine,
            state_dir=state_dir,
            on_state=self._state_changed,
            on_health_change=self._publish_status,
            wrap_output=tap.wrap,
        )
        self._stages = stages
        if self._stopped_early("starting the cameras"):  # nothing started yet: no ``online``, no READY
            log.info("stopped")
            return 0
        self._web = self._make_web(stages, tap, publisher)
        for name in stages.outputs:
            self._publish_status(name)
        self._forget_gone(publisher, state_dir)
        self._subscribe_commands(publisher, stages.pipeline)
        self._publish_discovery()
        publisher.start()
        stages.start()
        if self._web is not None:
            self._web.start()
        info = engine.info
        if not self._stopped_early("reporting ready"):  # stopped meanwhile: the ordered shutdown, and no READY
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
        if self._load_error is not None:
            raise self._load_error  # a model that failed to compile for a camera's input size: exit 2
        return self._exit_code

    def _make_web(self, stages: Stages, tap: DaemonTap, publisher: MqttPublisher) -> WebServer | None:
        """The console over a read-only view of this daemon, its socket bound (None when ``web.enabled`` is off)."""
        if not self.cfg.web.enabled:
            return None
        view = StagesView(
            stages,
            tap,
            self.cfg.cameras,
            camera_status=self.camera_status,
            stats=self.stats,
            mqtt=publisher.stats,
            infer_size=self.cfg.model.fixed_input_size() or stages.engine.info.ir_input_size,
        )
        try:
            return WebServer(self.cfg.web, view, tap)
        except WebError as exc:
            raise StartupError(str(exc)) from None

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
                    self._ignored.warning(topic, "ignored message on %s: %s", topic, exc)
                    return
                pipeline.call_soon(lambda: self._acknowledge(out, event_id, topic))

            def reset(topic: str, payload: bytes, out: CameraOutput = out) -> None:
                try:
                    parse_baseline_reset(payload)
                except ValueError as exc:
                    self._ignored.warning(topic, "ignored message on %s: %s", topic, exc)
                    return
                log.info("camera %s: relearning the empty scene", out.cfg.name)
                pipeline.call_soon(out.alerts.reset_baseline)

            publisher.subscribe(self._topics.alert_ack(name), ack)
            publisher.subscribe(self._topics.baseline_reset(name), reset)
        if self.cfg.homeassistant.enabled:

            def ha_status(_topic: str, payload: bytes) -> None:
                if payload.strip() == b"online":  # Home Assistant restarted: it needs the configs again
                    self._publish_discovery()

            # Home Assistant's birth message is "online": anything bigger is not it. It may be retained on purpose
            # (discovery is re-sent on every connect anyway), so a retained one is ignored without a warning.
            publisher.subscribe(
                self._topics.homeassistant_status, ha_status, max_payload=_HA_STATUS_MAX_BYTES, warn_retained=False
            )

    def _acknowledge(self, out: CameraOutput, event_id: str, topic: str) -> None:
        if out.alerts.acknowledge(event_id):
            log.info("camera %s: alert %s acknowledged", out.cfg.name, event_id)
        else:  # well-formed acks for made-up ids are as cheap to send as malformed ones
            self._ignored.warning(
                topic, "camera %s: acknowledgement for unknown or cleared alert %s", out.cfg.name, event_id
            )

    def _discovery_messages(self) -> list[tuple[str, str]]:
        if not self.cfg.homeassistant.enabled:
            return []
        return discovery_messages(
            topics=self._topics,
            node_id=re.sub(r"[^a-zA-Z0-9_-]", "_", self.cfg.mqtt.client_id),
            cameras=[(name, tuple(z.name for z in out.alerts.zones)) for name, out in self._outputs.items()],
            version=__version__,
            nearest_units={name: out.alerts.unit for name, out in self._outputs.items()},
            entities={name: out.alerts.entities for name, out in self._outputs.items()},
        )

    def _publish_discovery(self) -> None:
        if self._publisher is None:
            return
        for topic, payload in self._discovery_messages():
            self._publisher.set_retained(topic, payload)

    def retained_topics(self) -> set[str]:
        """Every retained topic this run publishes besides ``available``: discovery configs, and per camera its
        status, nearest distance and the state of each zone (``fall`` included) its alert kinds report."""
        topics = {topic for topic, _ in self._discovery_messages()}
        for name, out in self._outputs.items():
            topics |= {self._topics.status(name), self._topics.nearest(name)}
            topics |= {self._topics.zone_state(name, entity.state) for entity in out.alerts.entities}
        return topics

    def _forget_gone(self, publisher: MqttPublisher, state_dir: Path | None) -> None:
        """Clear what an earlier run announced and this one does not, then remember what this one announces."""
        if state_dir is None:
            return  # nothing to remember with: retained topics of removed cameras stay until cleared by hand
        path = state_dir / ANNOUNCED_FILE
        current = self.retained_topics()
        stale = gone(load_announced(path), current)
        for topic in stale:
            publisher.set_retained(topic, b"")  # an empty retained payload deletes the retained message
        if stale:
            log.info("removing %d retained topic(s) no longer in the config: %s", len(stale), ", ".join(stale))
        try:
            save_announced(path, current)
        except OSError as exc:
            log.warning("cannot remember the announced topics in %s: %s", path, exc)

    def _state_changed(self, camera: str, state: CaptureState) -> None:
        # The reader logs its own state changes, with their reasons: one line each, not two.
        self._publish_status(camera, state)

    def _supervise(self) -> None:
        interval = self.cfg.mqtt.stats_interval_s
        next_report = time.monotonic() + interval
        # Until the first report, statuses are refreshed often: rates and input sizes are known within seconds.
        next_status = time.monotonic() + min(_STARTUP_STATUS_S, interval)
        startup_until = next_report
        watchdog = self._notifier.watchdog_interval_s
        next_ping = time.monotonic()
        frames_at_ping = -1
        learned = {name: out.alerts.baseline_ready for name, out in self._outputs.items()}
        next_save = time.monotonic() + _STATE_SAVE_PERIOD_S
        while not self.stop.wait(_SUPERVISE_TICK_S):
            now = time.monotonic()
            self._handle_requests()
            for name, out in self._outputs.items():
                ready = out.alerts.baseline_ready
                if ready and not learned[name]:  # just learned: saved at once, a SIGKILL must not lose it
                    self._save_state(out)
                learned[name] = ready
            if now >= next_save:
                for out in self._outputs.values():
                    self._save_state(out)
                next_save = now + _STATE_SAVE_PERIOD_S
            if watchdog is not None and now >= next_ping:
                done = self._stages.pipeline.frames_done if self._stages else 0
                # Ping only on real progress, or when no camera is online (nothing to process is not a hang).
                if done != frames_at_ping or not self._any_camera_online():
                    self._notifier.watchdog()
                    frames_at_ping = done
                next_ping = now + watchdog
            if self._stages is not None and self._stages.engine.load_error is not None:
                self._load_error = self._stages.engine.load_error  # reported once, by the caller of run()
                self.stop.set()
                break
            if now >= next_report:
                self._report()
                next_report = now + interval
            elif next_status <= now < startup_until:
                for name in self._outputs:
                    self._publish_status(name)
                next_status = now + _STARTUP_STATUS_S

    def _save_state(self, out: CameraOutput) -> None:
        """Save a camera's alert state (written only when changed); a failure is one warning, nothing more."""
        try:
            out.alerts.save()
        except OSError as exc:  # a full or read-only state directory must not cost the ``offline`` or the exit
            log.warning("camera %s: cannot save its state: %s", out.cfg.name, exc)

    def _handle_requests(self) -> None:
        """The SIGHUP/SIGUSR1/SIGUSR2 noted by the signal handler since the last tick."""
        while self._pending:
            sig = self._pending.pop()
            if sig == signal.SIGHUP:
                self._reload_config()
            else:
                log.info("%s: %s", sig.name, self._status_line())

    def _reload_config(self) -> None:
        if self._reload is None:
            log.warning("SIGHUP: no config file to reload, going on with the running config")
            return
        try:
            cfg = self._reload()
        except ConfigError as exc:
            log.warning(
                "SIGHUP: the config file is not valid, going on with the running config: %s", "; ".join(exc.errors)
            )
            return
        except OSError as exc:
            log.warning("SIGHUP: cannot read the config file, going on with the running config: %s", exc)
            return
        if cfg == self.cfg:
            log.info("SIGHUP: config unchanged, nothing to do")
            return
        log.info("config changed: restarting (exit code %d)", RESTART_EXIT_CODE)
        self._exit_code = RESTART_EXIT_CODE
        self.stop.set()

    def _status_line(self) -> str:
        stats = self.stats()
        cameras = ", ".join(
            f"{name} {self._stages.readers[name].state().state if self._stages else '?'} "
            f"{figures.get('frames_processed', 0)} frames"
            for name, figures in stats["cameras"].items()
        )
        mqtt = stats["mqtt"]
        connected = mqtt["connected"] if mqtt else None
        return (
            f"status: up {stats['uptime_s']} s, {stats['max_rss_mb']} MB max RSS, mqtt connected {connected}; "
            f"cameras: {cameras or 'none'}"
        )

    def _any_camera_online(self) -> bool:
        readers = self._stages.readers.values() if self._stages else ()
        return any(reader.state().state == "online" for reader in readers)

    def _report(self) -> None:
        self._ignored.flush()  # how many bad commands were not logged, once their minute is over
        for name in self._outputs:
            self._publish_status(name)
        if self._publisher is not None:
            self._publisher.publish(self._topics.stats, dumps(self.stats()), qos=0)
        fps = sum(out.fps.rate() for out in self._outputs.values())
        self._notifier.status(f"{fps:.1f} fps over {len(self._outputs)} camera(s)")

    def camera_status(self, name: str, state: CaptureState | None = None) -> dict[str, Any]:
        """The retained JSON of ``<prefix>/<camera>/status`` (``outputs.status.camera_status``)."""
        reader = self._stages.readers.get(name) if self._stages else None
        state = state or (reader.state() if reader else None)
        out = self._outputs[name]
        info = self._stages.engine.info if self._stages else None
        reliable = None if out.health is None else out.health.reliable
        return camera_status(name, state, out.figures(), info, depth_reliable=reliable)

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
        if self._stop_signal is not None:
            log.info("received %s, stopping", self._stop_signal)
        if self._web is not None:
            self._web.stop(timeout=_WEB_STOP_S)  # first: no command may reach the stages while they stop
        stages.stop(deadline - _MQTT_RESERVE_S)
        for out in stages.outputs.values():
            # Before ``offline``: open obstacle alerts end (reason ``shutdown``) and their zones turn OFF; a
            # latched fall stays latched, saved with the baseline for the next start.
            out.shutdown()
            self._save_state(out)
        for name in stages.outputs:
            self._publish_status(name)
        if self._publisher is not None:
            self._publisher.stop(timeout=max(0.1, deadline - time.monotonic()))
        log.info("stopped")
