"""Broker faults the publisher must name in one line and outlive: a server that never answers CONNECT, TLS faults
(wrong CA, expired certificate, wrong host name, TLS against plain and plain against TLS), an exception or a
dead thread in paho's network loop, and another client taking the session over (same client_id)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from edge_depth.mqtt.client import MqttPublisher
from edge_depth.tools.mosquitto import SilentServer
from tests.support.broker import BrokerFactory, Mosquitto, TlsFiles, make_server_cert
from tests.test_publish import DEADLINE_S, TOPICS, mqtt_config, records, wait_until


class Captured(logging.Handler):
    """Every record of one logger, for tests that wait on a line (never on time)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def matching(self, level: int, text: str) -> list[logging.LogRecord]:
        with self._cond:
            return [r for r in self.records if r.levelno == level and text in r.getMessage()]

    def wait_for(self, predicate: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                shown = [f"{r.levelname} {r.getMessage()}" for r in self.records[-10:]]
                pytest.fail(f"timed out after {timeout} s waiting for {what}; last lines: {shown}")


@pytest.fixture
def logged() -> Iterator[Callable[[str], tuple[logging.Logger, Captured]]]:
    """``logged(name)``: a logger of its own (DEBUG) with a handler that keeps its records."""
    made: list[tuple[logging.Logger, Captured]] = []

    def make(name: str) -> tuple[logging.Logger, Captured]:
        logger = logging.getLogger(f"tests.mqtt_faults.{name}")
        logger.setLevel(logging.DEBUG)
        handler = Captured()
        logger.addHandler(handler)
        made.append((logger, handler))
        return logger, handler

    yield make
    for logger, handler in made:
        logger.removeHandler(handler)


@pytest.fixture
def started() -> Iterator[Callable[[MqttPublisher], MqttPublisher]]:
    """Starts publishers made by hand (own logger, own config) and stops them at the end."""
    publishers: list[MqttPublisher] = []

    def start(publisher: MqttPublisher) -> MqttPublisher:
        publishers.append(publisher)
        publisher.start()
        return publisher

    yield start
    for publisher in publishers:
        publisher.stop(timeout=1)


# --- a server that accepts and never answers ---


def test_a_server_that_never_answers_connect_is_named_once_and_retried_with_backoff(
    started: Callable[[MqttPublisher], MqttPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with SilentServer() as server:
        # keepalive_s 5, the schema's minimum: paho waits that long for the CONNACK.
        publisher = started(MqttPublisher(mqtt_config(server, keepalive_s=5), TOPICS))
        where = f"{server.host}:{server.port}"
        assert server.wait_for_connections(3, 5 * DEADLINE_S), "the publisher did not try again"
        lines = records(caplog, logging.WARNING, f"MQTT broker {where} accepted the connection")
        assert len(lines) == 1, [r.getMessage() for r in lines]  # one line, not one per attempt
        assert "did not answer CONNECT within 5 s" in lines[0].getMessage()
        # Each attempt waits keepalive_s for the CONNACK, then the backoff (1 s, then 2 s) before the next:
        # a few attempts a minute, not a tight loop.
        gaps = [b - a for a, b in itertools.pairwise(server.accepted[:3])]
        assert min(gaps) > 5.5, gaps
        stats = publisher.stats()
        assert not stats.connected
        assert stats.connects == 0
        assert stats.last_error is not None
        assert "did not answer CONNECT" in stats.last_error
        assert not [r for r in caplog.records if r.exc_info]


# --- TLS faults ---


def tls_fault(tls_files: TlsFiles, case: str) -> tuple[TlsFiles | None, dict[str, Any] | None]:
    """(the broker's TLS files, the publisher's mqtt.tls) for one fault."""
    if case == "wrong CA":
        return tls_files, {"ca_file": tls_files.other_ca}
    if case == "expired certificate":
        return make_server_cert(tls_files, "expired", "DNS:localhost,IP:127.0.0.1", expired=True), {
            "ca_file": tls_files.ca
        }
    if case == "wrong host name":
        return make_server_cert(tls_files, "wrong-host", "DNS:elsewhere.invalid"), {"ca_file": tls_files.ca}
    if case == "TLS against a plain listener":
        return None, {"ca_file": tls_files.ca}
    if case == "plain against a TLS listener":
        return tls_files, None
    raise AssertionError(case)


@dataclass(frozen=True)
class TlsFault:
    case: str
    level: int | None
    """The level of its line; None when the reason (an OpenSSL alert or a reset) varies with timing."""
    reason: str


TLS_FAULTS = [
    TlsFault("wrong CA", logging.ERROR, "TLS handshake failed: certificate verify failed: "),
    TlsFault(
        "expired certificate",
        logging.ERROR,
        "TLS handshake failed: certificate verify failed: certificate has expired",
    ),
    TlsFault("wrong host name", logging.ERROR, "TLS handshake failed: certificate verify failed: IP address mismatch"),
    TlsFault("TLS against a plain listener", None, "check mqtt.tls"),
    TlsFault("plain against a TLS listener", logging.ERROR, "closed the connection without answering CONNECT"),
]


@pytest.mark.parametrize("fault", TLS_FAULTS, ids=[f.case for f in TLS_FAULTS])
def test_tls_faults_are_one_line_naming_the_broker_and_the_reason(
    make_broker: BrokerFactory,
    started: Callable[[MqttPublisher], MqttPublisher],
    tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
    fault: TlsFault,
) -> None:
    case, level, reason = fault.case, fault.level, fault.reason
    caplog.set_level(logging.DEBUG)
    server_tls, client_tls = tls_fault(tls_files, case)
    broker = make_broker(tls=server_tls)
    publisher = started(MqttPublisher(mqtt_config(broker, tls=client_tls), TOPICS))
    where = f"{broker.host}:{broker.port}"

    def attempts() -> list[logging.LogRecord]:
        return [r for r in caplog.records if where in r.getMessage() and reason in r.getMessage()]

    # Let it retry: the same reason again, at debug level; still one line worth reading.
    wait_until(lambda: len(attempts()) >= 3, f"three attempts failing with {reason!r}")
    (line,) = [r for r in attempts() if r.levelno >= logging.WARNING]
    if level is not None:
        assert line.levelno == level
    assert line.exc_info is None  # no traceback
    assert "\n" not in line.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r is not line], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    ]
    stats = publisher.stats()
    assert not stats.connected
    assert stats.last_error is not None
    assert reason.split(": ", 1)[-1] in stats.last_error


# --- paho's network thread ---


def test_a_username_longer_than_mqtt_allows_does_not_kill_the_network_thread(
    mqtt_broker: Mosquitto,
    started: Callable[[MqttPublisher], MqttPublisher],
    logged: Callable[[str], tuple[logging.Logger, Captured]],
) -> None:
    # The schema may refuse such a name one day; the publisher must not depend on it.
    cfg = mqtt_config(mqtt_broker).model_copy(update={"username": "u" * 70_000})
    logger, log = logged("long-username")
    publisher = started(MqttPublisher(cfg, TOPICS, logger=logger))

    # paho cannot pack the CONNECT: its loop raised, and the thread used to end there. Now it opens a fresh
    # socket again and again, with backoff.
    wait_until(lambda: mqtt_broker.log_text().count("New connection from") >= 3, "three attempts")
    (error,) = log.matching(logging.ERROR, f"MQTT broker {mqtt_broker.host}:{mqtt_broker.port}")
    assert "cannot connect: mqtt.username longer than MQTT allows (65535 bytes)" in error.getMessage()
    assert error.exc_info is None
    stats = publisher.stats()
    assert not stats.connected
    assert stats.last_error is not None
    assert "mqtt.username" in stats.last_error
    started_at = time.monotonic()
    publisher.stop(timeout=1)
    assert time.monotonic() - started_at < 5, "stop() waited for the backoff"


def test_an_exception_in_pahos_loop_is_reported_and_the_loop_restarted(
    mqtt_broker: Mosquitto,
    started: Callable[[MqttPublisher], MqttPublisher],
    logged: Callable[[str], tuple[logging.Logger, Captured]],
) -> None:
    logger, log = logged("loop-exception")
    publisher = started(MqttPublisher(mqtt_config(mqtt_broker), TOPICS, logger=logger))
    assert publisher.connected.wait(DEADLINE_S)
    client = publisher._client
    real_loop = client._loop

    def failing_once(timeout: float = 1.0) -> Any:
        del client._loop  # back to paho's own for the next turn
        raise RuntimeError("paho bug")

    client._loop = failing_once  # type: ignore[method-assign]
    log.wait_for(lambda: publisher.stats().connects == 2, "a reconnect after the failure")
    (error,) = log.matching(logging.ERROR, "network loop failed: RuntimeError: paho bug")
    assert f"MQTT broker {mqtt_broker.host}:{mqtt_broker.port}" in error.getMessage()
    stats = publisher.stats()
    assert stats.connected
    assert stats.last_error == "network loop failed: RuntimeError: paho bug"
    assert client._loop == real_loop


# Python's own excepthook says nothing of a SystemExit in a thread; pytest's does, as a warning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_network_thread_that_died_silently_is_noticed_and_restarted(
    mqtt_broker: Mosquitto,
    started: Callable[[MqttPublisher], MqttPublisher],
    logged: Callable[[str], tuple[logging.Logger, Captured]],
) -> None:
    logger, log = logged("dead-thread")
    publisher = started(MqttPublisher(mqtt_config(mqtt_broker), TOPICS, logger=logger))
    assert publisher.connected.wait(DEADLINE_S)
    client = publisher._client

    def exit_thread(timeout: float = 1.0) -> Any:
        del client._loop
        raise SystemExit  # ends a thread without a word

    client._loop = exit_thread  # type: ignore[method-assign]
    wait_until(lambda: not client.loop_running(), "the network thread to end")
    # stats() (the daemon asks every stats interval) notices, says so once, and restarts the loop (which may
    # be connected again by the time stats() returns).
    assert publisher.stats().last_error == "network thread ended unexpectedly: restarted"
    wait_until(lambda: publisher.stats().connects == 2, "a reconnect")
    assert publisher.stats().connects == 2
    (error,) = log.matching(logging.ERROR, "network thread ended unexpectedly")
    assert f"MQTT broker {mqtt_broker.host}:{mqtt_broker.port}" in error.getMessage()


# --- two daemons, one client_id ---


def connects_after(log: Captured, when: float) -> list[float]:
    return [r.created for r in log.records if r.created > when and "connected to MQTT broker" in r.getMessage()]


def test_two_publishers_with_one_client_id_give_one_error_each_and_back_off(
    mqtt_broker: Mosquitto,
    started: Callable[[MqttPublisher], MqttPublisher],
    logged: Callable[[str], tuple[logging.Logger, Captured]],
) -> None:
    cfg = mqtt_config(mqtt_broker, client_id="edge-depth-twin")  # backoff 1 s to 2 s
    (logger_a, log_a), (logger_b, log_b) = logged("twin-a"), logged("twin-b")
    a = started(MqttPublisher(cfg, TOPICS, logger=logger_a))
    assert a.connected.wait(DEADLINE_S)
    b = started(MqttPublisher(cfg, TOPICS, logger=logger_b))
    # Each connect of one kicks the other off; the kicked one is back a second later.

    def detected(log: Captured) -> list[logging.LogRecord]:
        return log.matching(logging.ERROR, "mqtt.client_id 'edge-depth-twin'")

    for log in (log_a, log_b):
        log.wait_for(lambda log=log: detected(log), "the takeover error")  # type: ignore[misc]
    for log, publisher in ((log_a, a), (log_b, b)):
        (error,) = detected(log)
        text = error.getMessage()
        assert f"MQTT broker {mqtt_broker.host}:{mqtt_broker.port}" in text
        assert "another client most likely uses the same mqtt.client_id 'edge-depth-twin'" in text
        assert error.exc_info is None
        last_error = publisher.stats().last_error
        assert last_error is not None
        assert "mqtt.client_id 'edge-depth-twin'" in last_error
        # Before the error, at most two "lost connection" warnings: the third short session is the error.
        assert len(log.matching(logging.WARNING, "lost connection")) <= 2

    # While it lasts, a kicked publisher waits 4 x reconnect_max_s (at least 10 s) instead of 1 s to 2 s.
    log, error = log_a, detected(log_a)[0]
    log.wait_for(lambda: connects_after(log, error.created), "a reconnect after the error", timeout=3 * DEADLINE_S)
    gap = connects_after(log, error.created)[0] - error.created
    assert gap >= 9.5, gap
    for log in (log_a, log_b):
        assert len(log.matching(logging.ERROR, "")) == 1  # still one error each
