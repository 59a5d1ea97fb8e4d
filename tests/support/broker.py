"""A real Mosquitto broker for tests (Debian's package, started by ``edge_depth.tools.mosquitto``), and a
subscriber that records what it receives.

Fixtures: ``mqtt_broker`` (anonymous), ``mqtt_broker_auth`` (user ``edge``, password in ``.users``),
``mqtt_broker_tls`` (certificates in ``.tls``), and ``make_broker(...)`` for other variants. Every broker runs on a
free loopback port with its own config in a temporary directory and is stopped at the end of the test.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_depth.tools import mosquitto as launcher
from edge_depth.tools.mosquitto import ServerTls

T = TypeVar("T")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files made with openssl: a CA, a server certificate for 127.0.0.1/localhost, a client certificate,
    and an unrelated CA that did not sign the server (for the wrong-CA case)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_tls_files(directory: Path) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    def new_ca(name: str) -> None:
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=edge-depth test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def new_leaf(name: str, extensions: str) -> None:
        (directory / f"{name}.ext").write_text(extensions + "authorityKeyIdentifier=keyid\n")
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=edge-depth test {name}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
        )  # fmt: skip

    new_ca("ca")
    new_ca("other-ca")
    new_leaf("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    new_leaf("client", "extendedKeyUsage=clientAuth\n")
    return TlsFiles(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.crt",
    )


def make_server_cert(tls: TlsFiles, name: str, san: str, *, expired: bool = False) -> TlsFiles:
    """``tls`` with another server certificate signed by the same CA: for ``san`` (e.g. ``DNS:elsewhere.invalid``
    for a wrong host name), and with ``expired`` valid only for a day in 2020. ``openssl x509`` cannot back-date a
    certificate, ``openssl ca`` can (with a throwaway CA database)."""
    directory = tls.ca.parent

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    (directory / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=edge-depth test {name}",
    )  # fmt: skip
    database = directory / f"{name}-db"
    database.mkdir(exist_ok=True)
    (database / "index.txt").write_text("")
    (database / "serial").write_text("1000\n")
    (directory / f"{name}-ca.cnf").write_text(
        "[ca]\ndefault_ca = test\n"
        f"[test]\ndatabase = {database}/index.txt\nserial = {database}/serial\nnew_certs_dir = {database}\n"
        "default_md = sha256\npolicy = any\nunique_subject = no\n"
        "[any]\ncommonName = supplied\n"
    )
    dates = ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"] if expired else ["-days", "2"]
    openssl(
        "ca", "-batch", "-notext", "-config", f"{name}-ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key",
        "-in", f"{name}.csr", "-out", f"{name}.crt", "-extfile", f"{name}.ext", *dates,
    )  # fmt: skip
    return dataclasses.replace(tls, server_cert=directory / f"{name}.crt", server_key=directory / f"{name}.key")


class Mosquitto(launcher.Mosquitto):
    """The package's launcher with the tests' TLS files and a full log (``log_text()`` for assertions).

    ``stop()`` and ``start()`` again keep the port. ``persistent=True`` keeps sessions and retained messages
    across restarts (saved on a clean stop); without it a restart forgets everything, like a broker that lost
    its disk.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        require_certificate: bool = False,
        persistent: bool = False,
        extra_config: Sequence[str] = (),
    ) -> None:
        server = None if tls is None else ServerTls(tls.ca, tls.server_cert, tls.server_key, require_certificate)
        super().__init__(workdir, users=users, tls=server, persistent=persistent, log=True, extra_config=extra_config)
        self.tls = tls


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class MqttRecorder:
    """A subscriber that records every message; tests wait on conditions over the recording, never sleep.

    ``auth``: ``username``, ``password``, ``ca_file``, ``cert_file``, ``key_file``, ``client_id`` and
    ``clean_session`` (False with a fixed client_id: a persistent session the broker queues QoS 1 messages for).
    The constructor returns once the subscriptions are acknowledged; it reconnects and re-subscribes by itself.
    """

    def __init__(self, host: str, port: int, topics: list[str] | str, **auth: Any) -> None:
        self.messages: list[Received] = []
        self._topics = [topics] if isinstance(topics, str) else list(topics)
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        clean_session = auth.pop("clean_session", True)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=auth.pop("client_id", ""), clean_session=clean_session
        )
        if "username" in auth:
            self._client.username_pw_set(auth.pop("username"), auth.pop("password", None))
        if "ca_file" in auth:
            cert, key = auth.pop("cert_file", None), auth.pop("key_file", None)
            self._client.tls_set(
                ca_certs=str(auth.pop("ca_file")), certfile=cert and str(cert), keyfile=key and str(key)
            )
        if auth:
            raise TypeError(f"unknown MqttRecorder options: {sorted(auth)}")
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(20):
            self.close()
            raise TimeoutError(f"recorder could not subscribe to {self._topics} on {host}:{port}")

    @classmethod
    def for_broker(cls, broker: Mosquitto, topics: list[str] | str, **auth: Any) -> MqttRecorder:
        """A recorder with the broker's first user and its CA, unless ``auth`` says otherwise."""
        if broker.users:
            user, password = next(iter(broker.users.items()))
            auth.setdefault("username", user)
            auth.setdefault("password", password)
        if broker.tls is not None:
            auth.setdefault("ca_file", broker.tls.ca)
        return cls(broker.host, broker.port, topics, **auth)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self._topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[Received]], T | None], timeout: float = 20) -> T:
        """Waits until ``predicate(messages)`` is truthy and returns it; fails the test with what arrived."""
        with self._cond:
            result = self._cond.wait_for(lambda: predicate(list(self.messages)), timeout)
            if not result:
                shown = [(m.topic, m.payload[:60], m.retain) for m in self.messages[-20:]]
                pytest.fail(f"condition not met within {timeout} s; last messages: {shown}")
            return result

    def wait_for_message(self, topic: str, payload: bytes | None = None, *, retain: bool | None = None) -> Received:
        """The first message on ``topic`` (with that payload and retain flag, when given)."""

        def find(messages: list[Received]) -> Received | None:
            for m in messages:
                if m.topic == topic and payload in (None, m.payload) and retain in (None, m.retain):
                    return m
            return None

        return self.wait_for(find)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BrokerFactory = Callable[..., Mosquitto]


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("mqtt-tls"))


@pytest.fixture
def make_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFactory]:
    """``make_broker(users=..., tls=..., require_certificate=..., persistent=..., start=True)``."""
    brokers: list[Mosquitto] = []

    def make(*, start: bool = True, **options: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"), **options)
        brokers.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mqtt_broker(make_broker: BrokerFactory) -> Mosquitto:
    return make_broker()


@pytest.fixture
def mqtt_broker_auth(make_broker: BrokerFactory) -> Mosquitto:
    return make_broker(users={"edge": "correct-horse-battery"})


@pytest.fixture
def mqtt_broker_tls(make_broker: BrokerFactory, tls_files: TlsFiles) -> Mosquitto:
    return make_broker(tls=tls_files)
