"""The daemon's MQTT connection (paho-mqtt 2.x): availability, retained state, alerts, heatmaps, commands.

The only module of edge_depth that imports paho. It survives broker restarts by itself (paho's reconnect with
capped exponential backoff), re-publishes retained state and subscriptions on every connect, and never grows
memory while the broker is away: QoS 0 messages (heatmaps, stats) are dropped, QoS 1 messages (alerts) wait in a
bounded outbox (``edge_depth.mqtt.outbox``: superseded updates go first, then whole warning alerts, and a
subscriber never gets an ``end`` without its ``new``).

Failures are said once each, naming the broker: unreachable, refused, TLS faults, a server that never answers
CONNECT, another client taking the session over (same ``mqtt.client_id``), and an exception in paho's network
thread, which is restarted with backoff rather than left dead. Commands are never taken from retained messages,
nor from payloads larger than their subscription allows.
"""

from __future__ import annotations

import functools
import logging
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_depth.config.schema import MqttConfig
from edge_depth.mqtt.outbox import AlertTag, Outbox, alert_tag
from edge_depth.mqtt.topics import Topics

Handler = Callable[[str, bytes], None]
"""Called on paho's network thread with (topic, payload) for every message matching a subscription."""

COMMAND_MAX_BYTES = 4096
"""Default payload cap of a subscription: a command is a small JSON object."""

_AUTH_FAILURES = ("not authorized", "bad user name or password")
_MQTT_STRING_MAX = 65535  # bytes of a UTF-8 string in an MQTT packet (a 16-bit length)
# A broker that closes this many connections within _TAKEOVER_WINDOW_S, each within _SHORT_SESSION_S of its
# CONNACK or right after a reconnect that succeeded at its first attempt (the other client's turn may last as
# long as its backoff), with no failed connect in between: another client is taking the session over.
_TAKEOVER_COUNT = 3
_TAKEOVER_WINDOW_S = 60.0
_SHORT_SESSION_S = 10.0
_SESSION_TAKEN_OVER = 142  # MQTT 5 reason code; MQTT 3.1.1 brokers just close the socket
_TAKEOVER_MAX_DELAY_S = 120.0
# A session this long ends a takeover episode. Longer than the takeover backoff cap, so that two daemons
# waiting out each other's backoff stay in the episode (and its long backoff) for as long as both run.
_TAKEOVER_CLEAR_S = 600.0
_REFUSED_LOG_INTERVAL_S = 60.0


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
    """QoS 1 messages dropped because the outbox was full (see ``edge_depth.mqtt.outbox`` for which go first)."""
    last_error: str | None
    """The latest connection failure (refused, unreachable, lost, taken over), kept after a later success."""
    alerts_coalesced: int = 0
    """Queued alert updates replaced by a later update of the same alert."""
    commands_refused: int = 0
    """Incoming messages not handed to a handler: retained, or larger than the subscription allows."""


@dataclass(frozen=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class _Subscription:
    handler: Handler
    qos: int
    max_payload: int
    warn_retained: bool


class _Client(mqtt.Client):
    """paho's client, remembering why opening the socket failed (its on_connect_fail callback does not say) and
    keeping its network thread alive: an exception out of paho's loop goes to ``on_loop_exception``, which
    decides (after its backoff) whether the loop runs again."""

    last_connect_error: OSError | None = None
    on_loop_exception: Callable[[Exception], bool] | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise

    def _thread_main(self) -> None:
        # paho's own version runs loop_forever once: any exception (a CONNECT it cannot pack, a bug) ends the
        # thread silently and the daemon stays offline for good.
        try:
            while True:
                try:
                    self.loop_forever(retry_first_connection=True)
                    return
                except Exception as exc:
                    handler = self.on_loop_exception
                    if handler is None or not handler(exc):
                        return
        finally:
            self._thread = None

    def loop_running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()


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
        self._alert_filter = topics.alert("+")
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._stopped = threading.Event()
        self._retained: dict[str, tuple[bytes, int]] = {}
        self._subscriptions: dict[str, _Subscription] = {}
        self._outbox: Outbox[_Outgoing] = Outbox(cfg.max_queued_alerts)
        self._started = False
        self._stopping = False
        self._overflow_warned = False
        self._dropped_at_outage = 0
        self._failure_logged: str | None = None
        self._connects = 0
        self._messages_sent = 0
        self._heatmaps_dropped = 0
        self._commands_refused = 0
        self._last_error: str | None = None
        self._connected_at = 0.0
        self._connack = False  # the broker answered the latest CONNECT (accepted or refused)
        self._attempts = 0  # connection attempts since the last lost connection
        self._after_loss = False
        self._reconnected_at_once = False  # the current connection came at the first attempt after a loss
        self._short_sessions: deque[float] = deque()
        self._takeover_delay: float | None = None  # set while another client seems to take the session over
        self._loop_delay = cfg.reconnect_min_s
        self._loop_restart_at = 0.0
        self._retained_warned: set[str] = set()
        self._oversize_logged_at: dict[str, float] = {}
        self._oversize_unlogged: dict[str, int] = {}
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
            self._stopped.set()
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
        the outbox is flushed, where it would stop every later message. Returns False too for a step of an alert
        whose lifecycle the outbox had to drop (a subscriber never gets an ``end`` without its ``new``).
        """
        _check_topic(topic, qos)
        message = _Outgoing(topic, _as_bytes(payload), qos, retain)
        tag = self._tag(message)
        with self._lock:
            if self._connected.is_set():
                if not self._outbox.admit(tag):
                    return False
                return self._send(message)
            if qos == 0:
                self._heatmaps_dropped += 1
                return False
            return self._enqueue(message, tag)

    def set_retained(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        """Publishes retained state now if connected, and again after every connect (the broker may forget it)."""
        _check_topic(topic, qos)
        data = _as_bytes(payload)
        with self._lock:
            self._retained[topic] = (data, qos)
            if self._connected.is_set():
                self._send(_Outgoing(topic, data, qos, retain=True))

    def subscribe(
        self,
        topic: str,
        handler: Handler,
        qos: int = 1,
        *,
        max_payload: int = COMMAND_MAX_BYTES,
        warn_retained: bool = True,
    ) -> None:
        """Calls ``handler(topic, payload)`` for messages matching the ``topic`` filter; one handler per filter.

        Retained messages never reach the handler: a command left retained on the broker would otherwise run
        again at every connect. The first one per topic is reported with how to clear it (``warn_retained``
        False: ignored quietly, for topics such as Home Assistant's status that may be retained on purpose).
        Payloads over ``max_payload`` bytes are refused before the handler sees them (one line a minute).

        Handlers run on paho's network thread: keep them short. An exception is logged and the loop goes on.
        Raises ValueError for an invalid filter (the broker would drop the connection on every connect).
        """
        _check_filter(topic, qos)
        if max_payload < 0:
            raise ValueError(f"max_payload must not be negative, not {max_payload}")
        with self._lock:
            self._subscriptions[topic] = _Subscription(handler, qos, max_payload, warn_retained)
            if self._connected.is_set():
                self._client.subscribe(topic, qos)

    def stats(self) -> PublishStats:
        self._check_loop()
        with self._lock:
            return PublishStats(
                connected=self._connected.is_set(),
                connects=self._connects,
                messages_sent=self._messages_sent,
                heatmaps_dropped=self._heatmaps_dropped,
                alerts_queued=len(self._outbox),
                alerts_dropped=self._outbox.dropped,
                last_error=self._last_error,
                alerts_coalesced=self._outbox.coalesced,
                commands_refused=self._commands_refused,
            )

    # --- setup ---

    def _make_client(self) -> _Client:
        cfg = self._cfg
        client = _Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id)
        client.will_set(self._topics.available, b"offline", qos=1, retain=True)
        self._set_backoff(client, cfg.reconnect_min_s, cfg.reconnect_max_s)
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
        client.on_pre_connect = self._guarded(self._on_pre_connect)
        client.on_connect = self._guarded(self._on_connect)
        client.on_connect_fail = self._guarded(self._on_connect_fail)
        client.on_disconnect = self._guarded(self._on_disconnect)
        client.on_message = self._guarded(self._on_message)
        client.on_publish = self._guarded(self._on_publish)
        client.on_loop_exception = self._on_loop_exception
        return client

    @staticmethod
    def _set_backoff(client: mqtt.Client, low: float, high: float) -> None:
        # paho annotates the delays as int, but its backoff arithmetic is float throughout.
        client.reconnect_delay_set(low, high)  # type: ignore[arg-type]

    def _guarded(self, callback: Callable[..., None]) -> Callable[..., None]:
        # An exception in a callback would end paho's network thread (or, with suppress_exceptions, vanish).
        @functools.wraps(callback)
        def run(*args: Any) -> None:
            try:
                callback(*args)
            except Exception:
                self._log.exception("MQTT callback %s failed", callback.__name__)

        return run

    def _tag(self, message: _Outgoing) -> AlertTag | None:
        if message.qos == 0 or message.retain or not mqtt.topic_matches_sub(self._alert_filter, message.topic):
            return None
        return alert_tag(message.payload)

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

    def _enqueue(self, message: _Outgoing, tag: AlertTag | None) -> bool:
        evicted = self._outbox.put(message, tag)
        if evicted.dropped and not self._overflow_warned:
            self._overflow_warned = True
            self._log.warning(
                "MQTT broker %s away and %d alerts queued: dropping superseded updates first, then whole alerts "
                "(warning before critical, oldest first)",
                self._broker,
                self._cfg.max_queued_alerts,
            )
        return evicted.kept

    def _requeue_unacked(self) -> None:
        # Alerts paho sent but the broker never acked go back into the bounded outbox, in order, instead of
        # waiting in paho's unbounded one. Retained state and availability are re-sent on connect anyway.
        for message in self._client.drop_out_messages():
            if message.topic != self._topics.available and message.topic not in self._retained:
                outgoing = _Outgoing(message.topic, bytes(message.payload), message.qos, message.retain)
                self._enqueue(outgoing, self._tag(outgoing))

    # --- paho callbacks (paho's network thread) ---

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self._connack = False
        self._attempts += 1

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connack = True
        if reason_code.is_failure:
            reason = str(reason_code)
            hint = "; check mqtt.username and mqtt.password" if reason.lower() in _AUTH_FAILURES else ""
            self._connect_failed(f"refused the connection: {reason}{hint}", logging.ERROR)
            return
        with self._lock:
            self._connects += 1
            self._connected_at = time.monotonic()
            self._reconnected_at_once = self._after_loss and self._attempts == 1
            self._after_loss = False
            self._attempts = 0
            self._failure_logged = None
            self._overflow_warned = False
            self._loop_delay = self._cfg.reconnect_min_s
            for topic, sub in self._subscriptions.items():
                client.subscribe(topic, sub.qos)
            for topic, (payload, qos) in self._retained.items():
                self._send(_Outgoing(topic, payload, qos, retain=True))
            self._send(_Outgoing(self._topics.available, b"online", 1, retain=True))
            queued = self._outbox.drain()
            for message in queued:
                self._send(message)
            dropped = self._outbox.dropped - self._dropped_at_outage
            self._dropped_at_outage = self._outbox.dropped
            self._connected.set()
            quiet = self._takeover_delay is not None
        sent = f", sent {len(queued)} queued alerts" if queued else ""
        lost = f" ({dropped} dropped while away: outbox full)" if dropped else ""
        self._log.log(
            logging.DEBUG if quiet else logging.INFO, "connected to MQTT broker %s%s%s", self._broker, sent, lost
        )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        error = self._client.last_connect_error
        if isinstance(error, ssl.SSLError):
            self._connect_failed(f"TLS handshake failed: {_tls_reason(error)}; check mqtt.tls", logging.ERROR)
        elif self._cfg.tls is not None and isinstance(error, ConnectionResetError):
            # The TCP connect succeeded (a refusal would be ConnectionRefusedError): the server dropped the
            # ClientHello, as a plain MQTT listener does.
            self._connect_failed(
                "TLS handshake failed: the server reset the connection (a plain MQTT port?); check mqtt.tls and "
                "mqtt.port",
                logging.ERROR,
            )
        else:
            # Usual while the broker restarts or boots after us: a warning, not an error.
            self._connect_failed(f"unreachable: {error}", logging.WARNING)

    def _connect_failed(self, reason: str, level: int) -> None:
        with self._lock:
            self._last_error = reason
            first = reason != self._failure_logged
            self._failure_logged = reason
            # A connect failing in between (a broker restarting) rules out a takeover, whose reconnects succeed.
            self._short_sessions.clear()
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
            self._requeue_unacked()
            if self._stopping:
                return
        if not was_connected:
            if not self._connack:
                self._unanswered_connect(reason_code)
            return
        # paho's own reason for a dropped socket is "Unspecified error": only the broker's says something.
        why = f" ({reason_code})" if flags.is_disconnect_packet_from_server else ""
        if self._takeover(client, reason_code):
            return
        with self._lock:
            self._last_error = f"connection lost{why}"
        self._log.warning("lost connection to MQTT broker %s%s; reconnecting", self._broker, why)

    def _unanswered_connect(self, reason_code: ReasonCode) -> None:
        """The socket (and TLS) opened but no CONNACK came before paho gave up or the server hung up."""
        if reason_code == "Keep alive timeout":
            self._connect_failed(
                f"accepted the connection but did not answer CONNECT within {self._cfg.keepalive_s} s "
                "(an overloaded broker, or not an MQTT broker at this port?)",
                logging.WARNING,
            )
        else:
            self._connect_failed(
                "closed the connection without answering CONNECT "
                "(not an MQTT broker at this port, or a TLS port and mqtt.tls not set?)",
                logging.ERROR,
            )

    def _takeover(self, client: mqtt.Client, reason_code: ReasonCode) -> bool:
        """Detects another client with the same client_id (each connect of one kicks the other off); while it
        lasts, backs off much longer than usual and keeps quiet about each lost connection. True while so."""
        now = time.monotonic()
        session = now - self._connected_at
        cfg = self._cfg
        with self._lock:
            if self._takeover_delay is not None and session >= _TAKEOVER_CLEAR_S:
                self._takeover_delay = None
                self._short_sessions.clear()
                self._set_backoff(client, cfg.reconnect_min_s, cfg.reconnect_max_s)
                self._log.info("MQTT broker %s: the connection held %.0f s, takeovers are over", self._broker, session)
            self._after_loss = True
            kicked = reason_code != "Keep alive timeout" and (session < _SHORT_SESSION_S or self._reconnected_at_once)
            if kicked or reason_code.value == _SESSION_TAKEN_OVER:
                self._short_sessions.append(now)
            while self._short_sessions and now - self._short_sessions[0] > _TAKEOVER_WINDOW_S:
                self._short_sessions.popleft()
            first = self._takeover_delay is None and len(self._short_sessions) >= _TAKEOVER_COUNT
            if first:
                self._takeover_delay = max(4 * cfg.reconnect_max_s, _SHORT_SESSION_S)
                self._last_error = (
                    f"closed the connection {len(self._short_sessions)} times in {_TAKEOVER_WINDOW_S:g} s, soon "
                    "after connecting or right after an immediate reconnect: another client most likely uses the "
                    f"same mqtt.client_id {cfg.client_id!r} (give each daemon its own)"
                )
            elif self._takeover_delay is not None:
                self._takeover_delay = min(2 * self._takeover_delay, max(_TAKEOVER_MAX_DELAY_S, cfg.reconnect_max_s))
            delay = self._takeover_delay
            message = self._last_error
        if delay is None:
            return False
        self._set_backoff(client, delay, delay)
        if first:
            self._log.error(
                "MQTT broker %s %s; reconnecting after %g s and longer while this lasts", self._broker, message, delay
            )
        else:
            self._log.debug("MQTT broker %s took the session away again; reconnecting in %g s", self._broker, delay)
        return True

    def _on_loop_exception(self, exc: Exception) -> bool:
        """paho's network loop raised (on paho's thread): report, back off, and run it again unless stopping."""
        with self._lock:
            if self._stopping:
                return False
            self._connected.clear()
            self._requeue_unacked()
            delay = self._loop_delay
            self._loop_delay = min(2 * delay, self._cfg.reconnect_max_s)
        self._connect_failed(self._loop_failure(exc), logging.ERROR)
        if self._stopped.wait(delay):
            return False
        # Back to the state of start(): the next loop opens a fresh socket (closing the broken one) and connects.
        self._client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
        return True

    def _loop_failure(self, exc: Exception) -> str:
        if isinstance(exc, struct.error):  # paho packs CONNECT's strings with a 16-bit length
            cfg = self._cfg
            fields = {
                "mqtt.client_id": cfg.client_id,
                "mqtt.username": cfg.username,
                "mqtt.password": cfg.password.get_secret_value() if cfg.password is not None else None,
            }
            long = [name for name, value in fields.items() if value and len(value.encode()) > _MQTT_STRING_MAX]
            if long:
                return f"cannot connect: {' and '.join(long)} longer than MQTT allows ({_MQTT_STRING_MAX} bytes)"
        return f"network loop failed: {type(exc).__name__}: {exc}"

    def _check_loop(self) -> None:
        """Restarts paho's network thread if it ended while it should run (with backoff between restarts)."""
        if not self._started or self._stopping or self._client.loop_running():
            return
        now = time.monotonic()
        with self._lock:
            if self._stopping or now < self._loop_restart_at:
                return
            self._connected.clear()
            self._requeue_unacked()
            delay = self._loop_delay
            self._loop_delay = min(2 * delay, self._cfg.reconnect_max_s)
            self._loop_restart_at = now + delay
        self._connect_failed("network thread ended unexpectedly: restarted", logging.ERROR)
        self._client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        with self._lock:
            matching = [(p, s) for p, s in self._subscriptions.items() if mqtt.topic_matches_sub(p, topic)]
        for pattern, sub in matching:
            if message.retain:
                self._refuse_retained(topic, sub)
                continue
            if len(message.payload) > sub.max_payload:
                self._refuse_oversized(topic, pattern, len(message.payload), sub.max_payload)
                continue
            try:
                sub.handler(topic, bytes(message.payload))
            except Exception:
                self._log.exception("MQTT handler for %s failed", topic)

    def _refuse_retained(self, topic: str, sub: _Subscription) -> None:
        with self._lock:
            self._commands_refused += 1
            first = topic not in self._retained_warned
            self._retained_warned.add(topic)
        if first and sub.warn_retained:
            self._log.warning(
                "ignored a retained message on %s: commands are never taken from retained messages; clear it with "
                "an empty retained message, e.g. mosquitto_pub -h %s -p %d -r -n -t '%s'",
                topic,
                self._cfg.host,
                self._cfg.port,
                topic,
            )

    def _refuse_oversized(self, topic: str, pattern: str, size: int, limit: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._commands_refused += 1
            last = self._oversize_logged_at.get(pattern)
            if last is not None and now - last < _REFUSED_LOG_INTERVAL_S:
                self._oversize_unlogged[pattern] = self._oversize_unlogged.get(pattern, 0) + 1
                return
            self._oversize_logged_at[pattern] = now
            unlogged = self._oversize_unlogged.pop(pattern, 0)
        more = f" ({unlogged} more since the last such line)" if unlogged else ""
        self._log.warning(
            "ignored a message of %d bytes on %s: larger than the %d bytes allowed%s", size, topic, limit, more
        )

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


def _tls_reason(error: ssl.SSLError) -> str:
    """One line without OpenSSL's decorations: 'certificate verify failed: certificate has expired'."""
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"certificate verify failed: {error.verify_message}"
    if error.reason:
        return str(error.reason).lower().replace("_", " ")
    return str(error)


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
