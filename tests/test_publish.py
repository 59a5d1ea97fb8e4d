"""MqttPublisher against a real Mosquitto: availability, will, restarts, outages, auth, TLS, handlers."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.publish as paho_publish
import pytest

from edge_depth.config import MqttConfig
from edge_depth.mqtt.client import MqttPublisher
from edge_depth.mqtt.topics import Topics
from tests.support.broker import BrokerFactory, Mosquitto, MqttRecorder, TlsFiles

REPO = Path(__file__).resolve().parents[1]
PREFIX = "edge-test"
TOPICS = Topics(PREFIX)
DEADLINE_S = 20.0

PublisherFactory = Callable[..., MqttPublisher]


class Address(Protocol):
    """Where a publisher connects: a ``Mosquitto``, or any other server on loopback."""

    host: str
    port: int


def mqtt_config(broker: Address, **overrides: Any) -> MqttConfig:
    """A config for ``broker`` with a fast backoff (1 s to 2 s) so that reconnects happen within a test."""
    values: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "client_id": f"edge-depth-test-{uuid.uuid4().hex[:8]}",
        "topic_prefix": PREFIX,
        "keepalive_s": 5,
        "reconnect_min_s": 1,
        "reconnect_max_s": 2,
        **overrides,
    }
    return MqttConfig.model_validate(values)


@pytest.fixture
def make_publisher() -> Iterator[PublisherFactory]:
    publishers: list[MqttPublisher] = []

    def make(broker: Address, **overrides: Any) -> MqttPublisher:
        publisher = MqttPublisher(mqtt_config(broker, **overrides), TOPICS)
        publishers.append(publisher)
        publisher.start()
        return publisher

    yield make
    for publisher in publishers:
        publisher.stop(timeout=1)


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)  # polling a condition with a deadline


def assert_retained(broker: Mosquitto, topic: str, payload: bytes, **auth: Any) -> None:
    """A subscriber arriving now gets ``payload`` as the retained message of ``topic``."""
    # The first subscriber may see the message live if it subscribes while the broker is still taking it; once
    # it has arrived, a second subscriber can only get it from the broker's retained store.
    with MqttRecorder.for_broker(broker, topic, **auth) as live:
        live.wait_for_message(topic, payload)
    with MqttRecorder.for_broker(broker, topic, **auth) as fresh:
        fresh.wait_for_message(topic, payload, retain=True)


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]


def test_online_is_retained_after_connect_and_offline_after_a_clean_stop(
    mqtt_broker: Mosquitto, make_publisher: PublisherFactory
) -> None:
    publisher = make_publisher(mqtt_broker)
    assert publisher.connected.wait(DEADLINE_S)
    assert_retained(mqtt_broker, TOPICS.available, b"online")
    stats = publisher.stats()
    assert stats.connected
    assert stats.connects == 1

    publisher.stop()

    assert not publisher.stats().connected
    with MqttRecorder.for_broker(mqtt_broker, TOPICS.available) as fresh:
        fresh.wait_for_message(TOPICS.available, b"offline", retain=True)


_DAEMON = """
import sys, threading
from edge_depth.config import MqttConfig
from edge_depth.mqtt.client import MqttPublisher
from edge_depth.mqtt.topics import Topics
cfg = MqttConfig.model_validate_json(sys.argv[1])
publisher = MqttPublisher(cfg, Topics(cfg.topic_prefix))
publisher.start()
threading.Event().wait()
"""


def test_the_broker_publishes_offline_when_the_process_dies(mqtt_broker: Mosquitto) -> None:
    cfg = mqtt_config(mqtt_broker)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with MqttRecorder.for_broker(mqtt_broker, TOPICS.available) as watcher:
        process = subprocess.Popen([sys.executable, "-c", _DAEMON, cfg.model_dump_json()], env=env)
        try:
            watcher.wait_for_message(TOPICS.available, b"online")
            process.kill()  # SIGKILL: no clean disconnect, only the last will can say offline
            process.wait(10)
            watcher.wait_for(
                lambda ms: [m.payload for m in ms if m.topic == TOPICS.available][-1] == b"offline",
            )
        finally:
            process.kill()
            process.wait(10)
    with MqttRecorder.for_broker(mqtt_broker, TOPICS.available) as fresh:
        fresh.wait_for_message(TOPICS.available, b"offline", retain=True)


def test_retained_state_and_subscriptions_come_back_after_a_broker_restart(
    mqtt_broker: Mosquitto, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    publisher = make_publisher(mqtt_broker)
    status = json.dumps({"state": "online", "fps": 25.0}).encode()
    publisher.set_retained(TOPICS.status("porch"), status)
    commands: list[bytes] = []
    got_command = threading.Event()

    def on_reset(topic: str, payload: bytes) -> None:
        commands.append(payload)
        got_command.set()

    publisher.subscribe(TOPICS.baseline_reset("porch"), on_reset)
    assert publisher.connected.wait(DEADLINE_S)
    assert_retained(mqtt_broker, TOPICS.status("porch"), status)

    # Without persistence the restarted broker has forgotten every retained message and subscription.
    mqtt_broker.stop()
    wait_until(lambda: not publisher.connected.is_set(), "the publisher to notice the broker is gone")
    mqtt_broker.start()
    assert publisher.connected.wait(DEADLINE_S), "the publisher did not reconnect by itself"

    assert publisher.stats().connects == 2
    assert_retained(mqtt_broker, TOPICS.status("porch"), status)
    assert_retained(mqtt_broker, TOPICS.available, b"online")
    paho_publish.single(TOPICS.baseline_reset("porch"), b"now", qos=1, hostname=mqtt_broker.host, port=mqtt_broker.port)
    assert got_command.wait(DEADLINE_S), "the subscription was not renewed after the restart"
    assert commands == [b"now"]
    broker = f"{mqtt_broker.host}:{mqtt_broker.port}"
    assert records(caplog, logging.WARNING, f"lost connection to MQTT broker {broker}")


def test_the_publisher_waits_for_a_broker_that_is_down_at_start(
    make_broker: BrokerFactory, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker(start=False)
    publisher = make_publisher(broker)
    where = f"{broker.host}:{broker.port}"
    wait_until(lambda: records(caplog, logging.WARNING, f"MQTT broker {where} unreachable"), "an unreachable warning")
    assert not publisher.connected.is_set()

    broker.start()

    assert publisher.connected.wait(DEADLINE_S)
    assert_retained(broker, TOPICS.available, b"online")


def test_an_outage_drops_heatmaps_and_keeps_the_newest_alerts_in_order(
    make_broker: BrokerFactory, make_publisher: PublisherFactory
) -> None:
    # A persistent broker keeps the watcher's session across the restart, so it gets every alert sent after it
    # whichever of the two clients reconnects first.
    broker = make_broker(persistent=True)
    publisher = make_publisher(broker, max_queued_alerts=10)
    heatmap, alert = TOPICS.heatmap("porch"), TOPICS.alert("porch")
    watcher = MqttRecorder.for_broker(broker, [heatmap, alert], client_id="alert-watcher", clean_session=False)
    try:
        assert publisher.connected.wait(DEADLINE_S)
        assert publisher.publish(heatmap, b"jpeg-before")
        assert publisher.publish(alert, b"alert-before", qos=1)
        watcher.wait_for(lambda ms: len(ms) == 2)

        broker.stop()
        wait_until(lambda: not publisher.connected.is_set(), "the publisher to notice the broker is gone")
        heatmaps_sent = [publisher.publish(heatmap, b"jpeg-during") for _ in range(50)]
        stats = publisher.stats()
        assert heatmaps_sent == [False] * 50
        assert stats.heatmaps_dropped == 50
        assert stats.alerts_queued == 0  # nothing of the heatmaps is kept

        alerts_sent = [publisher.publish(alert, f"alert-{i}", qos=1) for i in range(25)]
        stats = publisher.stats()
        assert alerts_sent == [True] * 25
        assert (stats.alerts_queued, stats.alerts_dropped) == (10, 15)

        broker.start()

        watcher.wait_for(lambda ms: len([m for m in ms if m.topic == alert]) >= 11)
        wait_until(lambda: publisher.stats().alerts_queued == 0, "the outbox to be flushed")
        assert [m.payload for m in watcher.on(alert)] == [b"alert-before"] + [
            f"alert-{i}".encode() for i in range(15, 25)
        ]
        assert [m.payload for m in watcher.on(heatmap)] == [b"jpeg-before"]
        assert publisher.stats().connects == 2
    finally:
        watcher.close()


def test_alerts_the_broker_never_acknowledged_go_back_to_the_outbox(
    mqtt_broker: Mosquitto, make_publisher: PublisherFactory
) -> None:
    publisher = make_publisher(mqtt_broker)
    assert publisher.connected.wait(DEADLINE_S)
    wait_until(lambda: publisher.stats().messages_sent >= 1, "online to be acknowledged")
    sent_before = publisher.stats().messages_sent

    mqtt_broker.pause()  # the alerts reach the broker's socket but are never acknowledged
    assert all(publisher.publish(TOPICS.alert("porch"), f"alert-{i}", qos=1) for i in range(5))
    mqtt_broker.kill()
    wait_until(lambda: not publisher.connected.is_set(), "the publisher to notice the broker is gone")
    assert publisher.stats().alerts_queued == 5

    mqtt_broker.start()
    assert publisher.connected.wait(DEADLINE_S)
    wait_until(lambda: publisher.stats().alerts_queued == 0, "the outbox to be flushed")
    # online again, then the five alerts, each acknowledged by the new broker
    wait_until(lambda: publisher.stats().messages_sent >= sent_before + 6, "the alerts to be acknowledged")


def test_a_wrong_password_gives_one_clear_error_and_spaced_retries(
    mqtt_broker_auth: Mosquitto, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong, (user, right) = "not-the-password-42", next(iter(mqtt_broker_auth.users.items()))
    publisher = make_publisher(mqtt_broker_auth, username=user, password=wrong)

    # The broker's own log counts the refused attempts; note when each one shows up.
    seen_at: list[float] = []

    def refusals() -> bool:
        count = mqtt_broker_auth.log_text().count("not authorised")
        seen_at.extend([time.monotonic()] * (count - len(seen_at)))
        return count >= 4

    wait_until(refusals, "four refused connection attempts")
    gaps = [b - a for a, b in itertools.pairwise(seen_at[:4])]
    # reconnect_min_s=1, reconnect_max_s=2: about 1 s, 2 s, 2 s; a tight loop would make hundreds a second.
    assert min(gaps) > 0.7, gaps
    assert max(gaps) > 1.5, gaps

    where = f"{mqtt_broker_auth.host}:{mqtt_broker_auth.port}"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # one line, not one per retry
    assert where in errors[0]
    assert "not authorized" in errors[0].lower() or "bad user name or password" in errors[0].lower()
    assert wrong not in caplog.text
    assert right not in caplog.text
    stats = publisher.stats()
    assert not stats.connected
    assert stats.connects == 0
    assert stats.last_error is not None
    assert "not authorized" in stats.last_error.lower()

    fixed = make_publisher(mqtt_broker_auth, username=user, password=right, client_id="edge-depth-fixed")
    assert fixed.connected.wait(DEADLINE_S)
    assert_retained(mqtt_broker_auth, TOPICS.available, b"online")


def test_tls_with_the_brokers_ca(mqtt_broker_tls: Mosquitto, make_publisher: PublisherFactory) -> None:
    assert mqtt_broker_tls.tls is not None
    publisher = make_publisher(mqtt_broker_tls, tls={"ca_file": mqtt_broker_tls.tls.ca})
    assert publisher.connected.wait(DEADLINE_S)
    assert_retained(mqtt_broker_tls, TOPICS.available, b"online")


def test_tls_with_a_client_certificate(
    make_broker: BrokerFactory, tls_files: TlsFiles, make_publisher: PublisherFactory
) -> None:
    broker = make_broker(tls=tls_files, require_certificate=True)
    client_tls = {"ca_file": tls_files.ca, "cert_file": tls_files.client_cert, "key_file": tls_files.client_key}
    publisher = make_publisher(broker, tls=client_tls)
    assert publisher.connected.wait(DEADLINE_S)
    assert_retained(broker, TOPICS.available, b"online", cert_file=tls_files.client_cert, key_file=tls_files.client_key)


def test_tls_with_a_wrong_ca_fails_with_a_clear_error(
    mqtt_broker_tls: Mosquitto, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    assert mqtt_broker_tls.tls is not None
    publisher = make_publisher(mqtt_broker_tls, tls={"ca_file": mqtt_broker_tls.tls.other_ca})
    where = f"{mqtt_broker_tls.host}:{mqtt_broker_tls.port}"
    wait_until(lambda: records(caplog, logging.ERROR, f"MQTT broker {where} TLS handshake failed"), "a TLS error")
    (error,) = records(caplog, logging.ERROR, where)
    assert "certificate verify failed" in error.getMessage()
    assert not publisher.connected.is_set()


def test_an_unreadable_ca_file_is_named_at_construction(mqtt_broker_tls: Mosquitto, tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    cfg = mqtt_config(mqtt_broker_tls, tls={"ca_file": missing})
    with pytest.raises(ValueError, match=r"mqtt\.tls: .*missing-ca\.pem"):
        MqttPublisher(cfg, TOPICS)


def test_a_handler_that_raises_does_not_stop_later_messages(
    mqtt_broker: Mosquitto, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = make_publisher(mqtt_broker)
    topic = TOPICS.alert_ack("porch")
    received: list[bytes] = []
    done = threading.Event()

    def handler(topic: str, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("handler bug")
        received.append(payload)
        done.set()

    publisher.subscribe(topic, handler)
    assert publisher.connected.wait(DEADLINE_S)
    # One connection, QoS 1: the broker delivers them in this order.
    paho_publish.multiple(
        [{"topic": topic, "payload": b"boom", "qos": 1}, {"topic": topic, "payload": b"ok", "qos": 1}],
        hostname=mqtt_broker.host,
        port=mqtt_broker.port,
    )
    assert done.wait(DEADLINE_S)
    assert received == [b"ok"]
    (failure,) = records(caplog, logging.ERROR, f"MQTT handler for {topic} failed")
    assert failure.exc_info is not None
    assert publisher.stats().connected


@pytest.mark.parametrize(
    ("call", "culprit"),
    [
        (lambda p: p.publish("edge-test/+/alert", b"x", qos=1), "edge-test/+/alert"),
        (lambda p: p.publish("edge-test/porch/alert", b"x", qos=3), "QoS"),
        (lambda p: p.set_retained("", b"x"), "''"),
        (lambda p: p.subscribe("edge-test/#/ack", lambda t, b: None), "edge-test/#/ack"),
        (lambda p: p.subscribe("edge-test/porch+/ack", lambda t, b: None), "edge-test/porch+/ack"),
    ],
)
def test_bad_topics_are_refused_before_they_reach_the_outbox(
    call: Callable[[MqttPublisher], object], culprit: str
) -> None:
    publisher = MqttPublisher(MqttConfig.model_validate({"topic_prefix": PREFIX}), TOPICS)  # never started
    with pytest.raises(ValueError, match=re.escape(culprit)):
        call(publisher)
    assert publisher.stats().alerts_queued == 0


def alert_payload(alert_id: str, step: str, severity: str = "warning", kind: str = "obstacle") -> bytes:
    """The fields of an alert event (``edge_depth.alerts.events``) that the outbox and a subscriber look at."""
    return json.dumps({"id": alert_id, "type": step, "kind": kind, "camera": "porch", "severity": severity}).encode()


def lifecycles(messages: list[Any]) -> list[tuple[str, str]]:
    return [(event["id"], event["type"]) for event in (json.loads(m.payload) for m in messages)]


def test_a_long_outage_with_a_small_outbox_keeps_every_alert_lifecycle_whole(
    make_broker: BrokerFactory, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Outage with max_queued_alerts 10: five obstacle zones updating all the time, two falls. Before the outbox
    # had a policy, both falls were evicted whole, an obstacle lost its end and another arrived without its new.
    caplog.set_level(logging.INFO)
    broker = make_broker(persistent=True)
    publisher = make_publisher(broker, max_queued_alerts=10)
    alert = TOPICS.alert("porch")
    watcher = MqttRecorder.for_broker(broker, alert, client_id="lifecycle-watcher", clean_session=False)
    try:
        assert publisher.connected.wait(DEADLINE_S)
        assert publisher.publish(alert, alert_payload("obstacle-1", "new"), qos=1)
        watcher.wait_for(lambda ms: len(ms) == 1)

        broker.stop()
        wait_until(lambda: not publisher.connected.is_set(), "the publisher to notice the broker is gone")
        publisher.publish(alert, alert_payload("fall-1", "new", "critical", "fall"), qos=1)
        for zone in range(2, 6):
            publisher.publish(alert, alert_payload(f"obstacle-{zone}", "new"), qos=1)
        for _ in range(30):
            for zone in range(1, 6):
                publisher.publish(alert, alert_payload(f"obstacle-{zone}", "update"), qos=1)
        publisher.publish(alert, alert_payload("fall-1", "end", "critical", "fall"), qos=1)
        publisher.publish(alert, alert_payload("fall-2", "new", "critical", "fall"), qos=1)
        publisher.publish(alert, alert_payload("obstacle-1", "end"), qos=1)
        for zone in range(2, 6):  # the outbox is full of news and ends by now: whole obstacle alerts go
            publisher.publish(alert, alert_payload(f"obstacle-{zone}", "end"), qos=1)
        publisher.publish(alert, alert_payload("fall-2", "end", "critical", "fall"), qos=1)
        stats = publisher.stats()
        assert 0 < stats.alerts_queued <= 10
        assert stats.alerts_coalesced >= 5 * 29  # only the latest update per alert is ever kept
        queued = stats.alerts_queued

        broker.start()
        watcher.wait_for(lambda ms: ("fall-2", "end") in lifecycles(ms))
        wait_until(lambda: publisher.stats().alerts_queued == 0, "the outbox to be flushed")
    finally:
        watcher.close()

    received = lifecycles(watcher.on(alert))
    assert len(received) == len(set(received)), received  # none twice
    for fall in ("fall-1", "fall-2"):
        assert [r for r in received if r[0] == fall] == [(fall, "new"), (fall, "end")], received
    assert received[0] == ("obstacle-1", "new")
    assert ("obstacle-1", "end") in received  # delivered new before the outage: its end must come
    seen_new: set[str] = set()
    for alert_id, step in received:
        if step == "new":
            seen_new.add(alert_id)
        else:
            assert alert_id in seen_new, f"{step} of {alert_id} without its new: {received}"
    assert all(step != "update" for _, step in received[1:]), "an update was kept while news and ends went"
    where = f"{broker.host}:{broker.port}"
    (overflow,) = records(caplog, logging.WARNING, f"MQTT broker {where} away and 10 alerts queued")
    assert "superseded updates first" in overflow.getMessage()
    assert records(caplog, logging.INFO, f"sent {queued} queued alerts")


def test_a_retained_command_is_never_run_and_reported_once(
    make_broker: BrokerFactory, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_broker(persistent=True)
    topic = TOPICS.baseline_reset("porch")
    # Someone sent the command with -r: the broker keeps it and hands it to every new subscription.
    paho_publish.single(topic, b"{}", qos=1, retain=True, hostname=broker.host, port=broker.port)
    commands: list[bytes] = []
    got_command = threading.Event()

    def on_reset(topic: str, payload: bytes) -> None:
        commands.append(payload)
        got_command.set()

    publisher = make_publisher(broker)
    publisher.subscribe(topic, on_reset)
    wait_until(lambda: publisher.stats().commands_refused == 1, "the retained command to be refused")

    # At every reconnect the broker sends it again: still refused, not reported again.
    broker.stop()
    wait_until(lambda: not publisher.connected.is_set(), "the publisher to notice the broker is gone")
    broker.start()
    wait_until(lambda: publisher.stats().commands_refused == 2, "the retained command to be refused again")

    # A live command (even one sent with -r, which a subscriber already there gets without the flag) runs.
    paho_publish.single(topic, b"{}", qos=1, hostname=broker.host, port=broker.port)
    assert got_command.wait(DEADLINE_S)
    assert commands == [b"{}"]
    (warning,) = records(caplog, logging.WARNING, "retained")
    text = warning.getMessage()
    assert topic in text
    assert f"mosquitto_pub -h {broker.host} -p {broker.port} -r -n -t '{topic}'" in text


def test_oversized_commands_are_refused_before_the_handler_with_one_line(
    mqtt_broker: Mosquitto, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = make_publisher(mqtt_broker)
    topic = TOPICS.alert_ack("porch")
    received: list[bytes] = []
    done = threading.Event()

    def handler(topic: str, payload: bytes) -> None:
        received.append(payload)
        if payload == b"last":
            done.set()

    publisher.subscribe(topic, handler)
    assert publisher.connected.wait(DEADLINE_S)
    big = b"x" * 4097
    # One connection, QoS 1: delivered in this order, so "last" arriving means the others were seen.
    paho_publish.multiple(
        [
            {"topic": topic, "payload": big, "qos": 1},
            {"topic": topic, "payload": b"x" * 4096, "qos": 1},
            {"topic": topic, "payload": big, "qos": 1},
            {"topic": topic, "payload": b"x" * 60_000, "qos": 1},
            {"topic": topic, "payload": b"last", "qos": 1},
        ],
        hostname=mqtt_broker.host,
        port=mqtt_broker.port,
    )
    assert done.wait(DEADLINE_S)
    assert received == [b"x" * 4096, b"last"]
    assert publisher.stats().commands_refused == 3
    (line,) = records(caplog, logging.WARNING, f"ignored a message of 4097 bytes on {topic}")
    assert "larger than the 4096 bytes allowed" in line.getMessage()
    assert len(records(caplog, logging.WARNING, "ignored a message")) == 1  # the next two within the minute


def test_a_retained_home_assistant_status_is_ignored_quietly(
    mqtt_broker: Mosquitto, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    paho_publish.single(
        TOPICS.homeassistant_status, b"online", retain=True, hostname=mqtt_broker.host, port=mqtt_broker.port
    )
    calls: list[bytes] = []
    publisher = make_publisher(mqtt_broker)
    publisher.subscribe(TOPICS.homeassistant_status, lambda t, p: calls.append(p), max_payload=64, warn_retained=False)
    wait_until(lambda: publisher.stats().commands_refused == 1, "the retained status to be ignored")
    assert calls == []
    assert not records(caplog, logging.WARNING, "retained")
