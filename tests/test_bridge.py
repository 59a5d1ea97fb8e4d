"""Many boxes: the daemon publishes to a box-local Mosquitto bridged to a central one (the shipped
config/mosquitto-bridge.conf, both brokers real, on loopback). A cut bridge loses no QoS 1 alert."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from edge_depth.mqtt.client import MqttPublisher
from edge_depth.mqtt.topics import Topics
from edge_depth.tools.mosquitto import bridge_config
from tests.support.broker import BrokerFactory, Mosquitto, MqttRecorder, Received
from tests.test_publish import DEADLINE_S, mqtt_config, wait_until

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "config" / "mosquitto-bridge.conf"
BOX = "box1"
PREFIX = f"edge-depth-{BOX}"
BRIDGE_STATE = f"$SYS/broker/connection/edge-depth-bridge-{BOX}/state"
# The launcher writes its own listener, user and persistence lines; TLS to the central broker is not tested here.
LAUNCHER_OWNS = ("listener", "allow_anonymous", "persistence", "persistence_location", "bridge_cafile")


def box_broker(make_broker: BrokerFactory, central: Mosquitto) -> Mosquitto:
    """The box-local broker with the shipped bridge section, pointed at ``central``. Reconnect backoff of 1 s to
    2 s instead of 2 s to 30 s, so that the test does not wait on the jitter; everything else as shipped."""
    lines = bridge_config(
        SHIPPED.read_text().replace("BOX", BOX),
        address=f"{central.host}:{central.port}",
        replace={"restart_timeout": "1 2"},
        drop=LAUNCHER_OWNS,
    )
    return make_broker(persistent=True, extra_config=lines)


def bridge_is(state: bytes) -> Callable[[list[Received]], bool]:
    """The bridge's own notification (retained on the box's broker): ``1`` connected, ``0`` not."""

    def check(messages: list[Received]) -> bool:
        states = [m.payload for m in messages if m.topic == BRIDGE_STATE]
        return bool(states) and states[-1] == state

    return check


def got(payload: bytes) -> Callable[[list[Received]], bool]:
    """``payload`` has arrived (the last alert sent: the bridge keeps order, so all before it have too)."""

    def check(messages: list[Received]) -> bool:
        return any(m.payload == payload for m in messages)

    return check


def test_the_shipped_config_is_a_persistent_bridge_with_queues() -> None:
    directives = [line.split()[0] for line in SHIPPED.read_text().splitlines() if line and not line.startswith("#")]
    for needed in ("persistence", "autosave_interval", "max_queued_messages", "max_queued_bytes", "connection"):
        assert needed in directives
    assert "cleansession false" in SHIPPED.read_text()
    assert "queue_qos0_messages false" in SHIPPED.read_text()
    assert "topic edge-depth-BOX/+/alert out 1" in SHIPPED.read_text()


def test_every_alert_crosses_a_cut_bridge_in_order(make_broker: BrokerFactory) -> None:
    central = make_broker(persistent=True)
    box = box_broker(make_broker, central)
    topics = Topics(PREFIX)
    alert = topics.alert("porch")

    def dashboard() -> MqttRecorder:
        # A central subscriber that matters (Home Assistant, a fleet dashboard) keeps a session: what reaches the
        # central broker before it reconnects waits for it there.
        return MqttRecorder.for_broker(central, alert, client_id="central-dashboard", clean_session=False)

    box_sys = MqttRecorder.for_broker(box, BRIDGE_STATE)
    publisher = MqttPublisher(mqtt_config(box, topic_prefix=PREFIX), topics)
    before = dashboard()
    after: MqttRecorder | None = None
    published: list[bytes] = []

    def fire(count: int) -> None:
        for _ in range(count):
            n = len(published)
            payload = json.dumps({"id": f"porch-door-{n // 3}", "type": ("new", "update", "end")[n % 3], "n": n})
            published.append(payload.encode())
            assert publisher.publish(alert, payload, qos=1)

    try:
        box_sys.wait_for(bridge_is(b"1"))
        publisher.start()
        assert publisher.connected.wait(DEADLINE_S)
        fire(6)
        before.wait_for(lambda ms: len(ms) == 6)
        # A clean disconnect: its acks reach the broker first, so nothing it got comes again (a subscriber
        # killed mid-ack would get those again, as QoS 1 allows: that is the subscriber's side, not the bridge's).
        before.close()

        central.stop()  # the bridge is cut; the daemon's own broker is still there
        box_sys.wait_for(bridge_is(b"0"))
        fire(60)
        # The outage lasts while the bridge retries: at least three attempts (the shipped backoff is longer; the
        # mechanism, a queue on the box for a cleansession=false bridge, is the same for a minute or an hour).
        attempts = box.log_text().count("Connecting bridge (step 1)")
        wait_until(lambda: box.log_text().count("Connecting bridge (step 1)") >= attempts + 3, "bridge retries")
        fire(60)
        assert publisher.stats().alerts_queued == 0  # the daemon was connected all along: the box queued them

        central.start()
        box_sys.wait_for(bridge_is(b"1"))
        after = dashboard()
        after.wait_for(got(published[-1]), timeout=3 * DEADLINE_S)
        fire(3)  # after the outage, live again
        after.wait_for(got(published[-1]))
    finally:
        publisher.stop(timeout=1)
        before.close()
        if after is not None:
            after.close()
        box_sys.close()
    assert after is not None
    assert [m.payload for m in before.on(alert)] == published[:6]
    # QoS 1 delivers at least once: an alert that reached the centre just before the cut, but whose acknowledgement
    # had not reached the box yet, is sent again once the link is back. Only those come twice (the last of the six
    # sent before the cut), and they come first; every alert of the outage arrives once, in order.
    later = [m.payload for m in after.on(alert)]
    again = len(later) - len(published[6:])
    assert 0 <= again <= 6 and later[:again] == published[6 - again : 6], later[: again + 1]
    assert later[again:] == published[6:]
