"""The daemon's MQTT connection (paho-mqtt 2.x): availability, retained state, alerts, heatmaps, commands.

The only module of edge_depth that imports paho. It survives broker restarts by itself (paho's reconnect with
capped exponential backoff), re-publishes retained state and subscriptions on every connect, and never grows
memory while the broker is away: QoS 0 messages (heatmaps, stats) are dropped, QoS 1 messages (alerts) wait in a
bounded outbox that drops its oldest entry when full (paho's own ``max_queued_messages`` drops the newest, which
would lose the alert that matters most: the latest).
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_depth.config.schema import MqttConfig
from edge_depth.mqtt.topics import Topics

Handler = Callable[[str, bytes], None]
"""Called on paho's network thread with (topic, payload) for every message matching a subscription."""

_AUTH_FAILURES = ("not authorized", "bad user name or password")


@dataclass(frozen=True)
class PublishStats:
    """A snapshot of the connection's counters."""

    connected: bool
    connects: int
    """Successful connects since start (1 + reconnects)."""
    messages_sent: int
    """Messages the broker took: QoS 0 written to the socket, QoS 1 acknowledged."""
    heatmaps_dropped: int
    """QoS 0 messages (heatmaps, stats) dropped because the broker was away."""
    alerts_queued: int
    """QoS 1 messages waiting in the outbox now."""
    alerts_dropped: int
    """QoS 1 messages dropped, oldest first, because the outbox was full."""
    last_error: str | None
    """The latest connection failure (refused, unreachable, lost), kept after a later success."""


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class _Client(mqtt.Client):
    """paho's client, remembering why opening the socket failed: its on_connect_fail callback does not say."""

    last_connect_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise


class MqttPublisher:
    """One MQTT connection for the whole daemon; every method is thread-safe.

    ``<prefix>/available`` is ``offline`` as the last will, ``online`` once subscriptions and retained state have
    been re-sent after each connect, and ``offline`` again on ``stop()``.
    """

    def __init__(self, cfg: MqttConfig, topics: Topics, *, logger: logging.Logger | None = None) -> None:
        """Configures the client; raises ValueError naming the file when a TLS file cannot be loaded."""
        self._cfg = cfg
        self._topics = topics
        self._log = logger or logging.getLogger(__name__)
        self._broker = f"{cfg.host}:{cfg.port}"
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._subscriptions: dict[str, tuple[Handler, int]] = {}
        self._outbox: deque[_Outgoing] = deque()
        self._started = False
        self._stopping = False
        self._overflow_warned = False
        self._failure_logged: str | None = None
        self._connects = 0
        self._messages_sent = 0
        self._heatmaps_dropped = 0
        self._alerts_dropped = 0
        self._last_error: str | None = None
        self._client = self._make_client()

    @property
    def connected(self) -> threading.Event:
        """Set while connected (after the connect-time re-publishing), cleared when the connection is lost."""
        return self._connected

    @property
    def topics(self) -> Topics:
        return self._topics

    def start(self) -> None:
        """Connects in the background; returns at once, even if the broker is not reachable yet."""
        self._client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
        self._client.loop_start()
        self._started = True

    def stop(self, timeout: float = 3.0) -> None:
        """Publishes ``offline`` (waiting up to ``timeout`` s for the broker's ack), disconnects, ends the thread.

        Final: a stopped publisher is not started again.
        """
        if not self._started:
            return
        with self._lock:
            self._stopping = True
            connected = self._connected.is_set()
            offline = (
                self._client.publish(self._topics.available, b"offline", qos=1, retain=True) if connected else None
            )
        if offline is not None:
            try:
                offline.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                self._log.warning("could not publish offline to MQTT broker %s: %s", self._broker, exc)
            if not offline.is_published():
                self._log.warning("MQTT broker %s did not confirm offline within %.1f s", self._broker, timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        self._started = False

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False) -> bool:
        """Sends now if connected. Otherwise QoS 0 is dropped (returns False) and QoS 1 waits in the outbox.

        Raises ValueError for a topic with wildcards or a QoS other than 0, 1, 2: caught here rather than when
        the outbox is flushed, where it would stop every later message.
        """
        _check_topic(topic, qos)
        message = _Outgoing(topic, _as_bytes(payload), qos, retain)
        with self._lock:
            if self._connected.is_set():
                return self._send(message)
            if qos == 0:
                self._heatmaps_dropped += 1
                return False
            self._enqueue(message)
            return True

    def set_retained(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        """Publishes retained state now if connected, and again after every connect (the broker may forget it)."""
        _check_topic(topic, qos)
        data = _as_bytes(payload)
        with self._lock:
            self._retained[topic] = (data, qos)
            if self._connected.is_set():
                self._send(_Outgoing(topic, data, qos, retain=True))

    def subscribe(self, topic: str, handler: Handler, qos: int = 1) -> None:
        """Calls ``handler(topic, payload)`` for messages matching the ``topic`` filter; one handler per filter.

        Handlers run on paho's network thread: keep them short. An exception is logged and the loop goes on.
        Raises ValueError for an invalid filter (the broker would drop the connection on every connect).
        """
        _check_filter(topic, qos)
        with self._lock:
            self._subscriptions[topic] = (handler, qos)
            if self._connected.is_set():
                self._client.subscribe(topic, qos)

    def stats(self) -> PublishStats:
        with self._lock:
            return PublishStats(
                connected=self._connected.is_set(),
                connects=self._connects,
                messages_sent=self._messages_sent,
                heatmaps_dropped=self._heatmaps_dropped,
                alerts_queued=len(self._outbox),
                alerts_dropped=self._alerts_dropped,
                last_error=self._last_error,
            )

    # --- setup ---

    def _make_client(self) -> _Client:
        cfg = self._cfg
        client = _Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id)
        client.will_set(self._topics.available, b"offline", qos=1, retain=True)
        # paho annotates the delays as int, but its backoff arithmetic is float throughout.
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls is not None:
            tls = cfg.tls
            try:
                client.tls_set(
                    ca_certs=str(tls.ca_file) if tls.ca_file else None,
                    certfile=str(tls.cert_file) if tls.cert_file else None,
                    keyfile=str(tls.key_file) if tls.key_file else None,
                )
            except (OSError, ssl.SSLError) as exc:
                files = ", ".join(str(p) for p in (tls.ca_file, tls.cert_file, tls.key_file) if p is not None)
                raise ValueError(f"mqtt.tls: cannot load {files or 'the system CAs'}: {exc}") from exc
            if tls.insecure:
                client.tls_insecure_set(True)
        client.on_connect = self._guarded(self._on_connect)
        client.on_connect_fail = self._guarded(self._on_connect_fail)
        client.on_disconnect = self._guarded(self._on_disconnect)
        client.on_message = self._guarded(self._on_message)
        client.on_publish = self._guarded(self._on_publish)
        return client

    def _guarded(self, callback: Callable[..., None]) -> Callable[..., None]:
        # An exception in a callback would end paho's network thread (or, with suppress_exceptions, vanish).
        @functools.wraps(callback)
        def run(*args: Any) -> None:
            try:
                callback(*args)
            except Exception:
                self._log.exception("MQTT callback %s failed", callback.__name__)

        return run

    # --- sending (callers hold self._lock) ---

    def _send(self, message: _Outgoing) -> bool:
        info = self._client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            return True
        if message.qos == 0:
            self._heatmaps_dropped += 1
            return False
        # The connection just broke: paho holds the message until _on_disconnect moves it to the outbox.
        return True

    def _enqueue(self, message: _Outgoing) -> None:
        if len(self._outbox) >= self._cfg.max_queued_alerts:
            self._outbox.popleft()
            self._alerts_dropped += 1
            if not self._overflow_warned:
                self._overflow_warned = True
                self._log.warning(
                    "MQTT broker %s away and %d alerts queued: dropping the oldest",
                    self._broker,
                    self._cfg.max_queued_alerts,
                )
        self._outbox.append(message)

    # --- paho callbacks (paho's network thread) ---

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            reason = str(reason_code)
            hint = "; check mqtt.username and mqtt.password" if reason.lower() in _AUTH_FAILURES else ""
            self._connect_failed(f"refused the connection: {reason}{hint}", logging.ERROR)
            return
        with self._lock:
            self._connects += 1
            self._failure_logged = None
            self._overflow_warned = False
            for topic, (_, qos) in self._subscriptions.items():
                client.subscribe(topic, qos)
            for topic, (payload, qos) in self._retained.items():
                self._send(_Outgoing(topic, payload, qos, retain=True))
            self._send(_Outgoing(self._topics.available, b"online", 1, retain=True))
            flushed = len(self._outbox)
            while self._outbox:
                self._send(self._outbox.popleft())
            self._connected.set()
        self._log.info(
            "connected to MQTT broker %s%s", self._broker, f", sent {flushed} queued alerts" if flushed else ""
        )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        error = self._client.last_connect_error
        if isinstance(error, ssl.SSLError):
            self._connect_failed(f"TLS handshake failed: {error}; check mqtt.tls", logging.ERROR)
        else:
            # Usual while the broker restarts or boots after us: a warning, not an error.
            self._connect_failed(f"unreachable: {error}", logging.WARNING)

    def _connect_failed(self, reason: str, level: int) -> None:
        with self._lock:
            self._last_error = reason
            first = reason != self._failure_logged
            self._failure_logged = reason
        # One line per kind of failure; paho keeps retrying with its backoff, repeats go to debug.
        self._log.log(
            level if first else logging.DEBUG,
            "MQTT broker %s %s (retrying with backoff from %g s to %g s)",
            self._broker,
            reason,
            self._cfg.reconnect_min_s,
            self._cfg.reconnect_max_s,
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            was_connected = self._connected.is_set()
            self._connected.clear()
            # Alerts paho sent but the broker never acked go back into the bounded outbox, in order, instead of
            # waiting in paho's unbounded one. Retained state and availability are re-sent on connect anyway.
            for message in client.drop_out_messages():
                if message.topic != self._topics.available and message.topic not in self._retained:
                    self._enqueue(_Outgoing(message.topic, bytes(message.payload), message.qos, message.retain))
            if not was_connected or self._stopping:
                return
            # paho's own reason for a dropped socket is "Unspecified error": only the broker's says something.
            why = f" ({reason_code})" if flags.is_disconnect_packet_from_server else ""
            self._last_error = f"connection lost{why}"
        self._log.warning("lost connection to MQTT broker %s%s; reconnecting", self._broker, why)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            matching = [
                h for pattern, (h, _) in self._subscriptions.items() if mqtt.topic_matches_sub(pattern, message.topic)
            ]
        for handler in matching:
            try:
                handler(message.topic, bytes(message.payload))
            except Exception:
                self._log.exception("MQTT handler for %s failed", message.topic)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Only paho's thread writes this counter; no lock, so that paho may call back from anywhere.
        self._messages_sent += 1


def _check_topic(topic: str, qos: int) -> None:
    if not topic or "+" in topic or "#" in topic:
        raise ValueError(f"invalid MQTT topic {topic!r}: empty or with a wildcard")
    _check_qos(qos)


def _check_filter(topic_filter: str, qos: int) -> None:
    if not topic_filter:
        raise ValueError("empty MQTT topic filter")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (level != "#" or i != len(levels) - 1)):
            raise ValueError(f"invalid MQTT topic filter {topic_filter!r}: '+' and '#' must be whole levels, '#' last")
    _check_qos(qos)


def _check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise ValueError(f"MQTT QoS must be 0, 1 or 2, not {qos!r}")


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else payload
