"""MQTT command payloads (ack, baseline reset) are validated strictly: one-line ValueErrors, never a crash."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from edge_depth.alerts.commands import parse_ack, parse_baseline_reset
from edge_depth.config import Config
from edge_depth.service import Service


def test_a_valid_ack_gives_the_event_id() -> None:
    assert parse_ack(b'{"id": "kitchen-fall-1750000010467"}') == "kitchen-fall-1750000010467"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "ack: payload is not JSON"),
        (b"kitchen-fall-1", "ack: payload is not JSON"),
        (b"\xff\xfe", "ack: payload is not UTF-8"),
        (b'["kitchen-fall-1"]', "ack: payload must be a JSON object, got list"),
        (b'"kitchen-fall-1"', "ack: payload must be a JSON object, got str"),
        (b"{}", "ack: 'id' must be a non-empty string"),
        (b'{"id": ""}', "ack: 'id' must be a non-empty string"),
        (b'{"id": 17}', "ack: 'id' must be a non-empty string"),
        (b'{"id": "a", "force": true}', "ack: unknown key(s) 'force'"),
        (b'{"id": "' + b"x" * 300 + b'"}', "ack: 'id' is longer than 200 characters"),
        (b'{"id": "' + b"x" * 5000 + b'"}', "ack: payload of 5010 bytes is larger than 4096"),
    ],
)
def test_a_malformed_ack_is_rejected_with_its_reason(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)) as info:
        parse_ack(payload)
    assert "\n" not in str(info.value)


def test_a_valid_baseline_reset_is_the_empty_object() -> None:
    parse_baseline_reset(b"{}")
    parse_baseline_reset(b" { } \n")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "baseline reset: payload is not JSON"),
        (b"reset", "baseline reset: payload is not JSON"),
        (b"[]", "baseline reset: payload must be a JSON object, got list"),
        (b'{"camera": "kitchen"}', "baseline reset: expected {}, got key(s) 'camera'"),
    ],
)
def test_a_malformed_baseline_reset_is_rejected_with_its_reason(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_baseline_reset(payload)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------- hostile payloads


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"a":' * 600 + b"0" + b"}" * 600, "ack: payload is nested more than 8 levels deep"),
        (b"[" * 2000 + b"]" * 2000, "ack: payload is nested more than 8 levels deep"),
        (b'{"id": "x", "k": ' + b"[" * 9 + b"]" * 9 + b"}", "ack: payload is nested more than 8 levels deep"),
        (b"x" * 1_000_000, "ack: payload of 1000000 bytes is larger than 4096"),
        (b"{" * 10_000_000, "ack: payload of 10000000 bytes is larger than 4096"),
        (b'{"id": "a\\nFORGED 2026 INFO line"}', "ack: 'id' 'a\\nFORGED 2026 INFO line' is not an alert id"),
        (b'{"id": "a\\u0000b"}', "ack: 'id' 'a\\x00b' is not an alert id"),
        (b'{"id": "a\\ud800"}', "ack: 'id' 'a\\ud800' is not an alert id"),
        (b'{"id": "cam-zone 1"}', "ack: 'id' 'cam-zone 1' is not an alert id"),
        (b'{"id": "cam/+/#"}', "ack: 'id' 'cam/+/#' is not an alert id"),
        (b'{"id": "a", "\\r\\nforged": 1}', "ack: unknown key(s) '\\r\\nforged'; expected only 'id'"),
    ],
    ids=[
        "deep object",
        "deep array",
        "nesting inside a valid ack",
        "1 MB",
        "10 MB",
        "newline in id",
        "NUL in id",
        "lone surrogate in id",
        "space in id",
        "wildcards in id",
        "newline in a key",
    ],
)
def test_a_hostile_ack_is_one_bounded_printable_line(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_ack(payload)
    reason = str(info.value)
    assert reason.startswith(message), reason
    assert reason.isprintable() and len(reason) < 300


def test_many_or_long_unknown_keys_are_shortened() -> None:
    keys = {f"key{n}-" + "x" * 500: n for n in range(5)}
    with pytest.raises(ValueError) as info:
        parse_baseline_reset(json.dumps(keys).encode())
    reason = str(info.value)
    assert reason.startswith("baseline reset: expected {}, got key(s) 'key0-xxx") and reason.endswith(" and 2 more")
    assert len(reason) < 400


def test_brackets_inside_strings_are_not_nesting() -> None:
    assert parse_ack(b'{"id": "cam-door-1"}') == "cam-door-1"
    with pytest.raises(ValueError, match=r"^ack: unknown key\(s\) '\[\[\[\[\[\[\[\[\[\[\\\\\"'"):
        parse_ack(b'{"id": "a", "[[[[[[[[[[\\\\\\"": 1}')


# ----------------------------------------------------------------------------------------------- the daemon's answer


class _Publisher:
    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[str, bytes], None]] = {}

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None], **_options: object) -> None:
        self.handlers[topic] = handler


class _Pipeline:
    def __init__(self) -> None:
        self.calls: list[Callable[[], None]] = []

    def call_soon(self, call: Callable[[], None]) -> None:
        self.calls.append(call)


def test_a_flood_of_bad_commands_costs_one_line_a_minute_per_topic(caplog: pytest.LogCaptureFixture) -> None:
    cfg = Config.model_validate({"cameras": [{"name": "hall", "source": 0}], "homeassistant": {"enabled": False}})
    service = Service(cfg)
    alerts = SimpleNamespace(acknowledge=lambda event_id: False, reset_baseline=lambda: None)
    service._stages = SimpleNamespace(outputs={"hall": SimpleNamespace(cfg=cfg.cameras[0], alerts=alerts)})  # type: ignore[assignment]
    publisher, pipeline = _Publisher(), _Pipeline()
    service._subscribe_commands(publisher, pipeline)  # type: ignore[arg-type]
    ack, reset = (publisher.handlers[f"edge-depth/hall/{name}"] for name in ("alert/ack", "baseline/reset"))

    with caplog.at_level(logging.INFO, logger="edge_depth.service"):
        for number in range(300):
            ack("edge-depth/hall/alert/ack", b'{"id": "x\\nFORGED %d"}' % number)
            reset("edge-depth/hall/baseline/reset", b"[" * 3000)
        ack("edge-depth/hall/alert/ack", b'{"id": "hall-door-1"}')
        for call in pipeline.calls:
            call()  # an unknown alert: counted with the topic's other bad commands

    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("ignored message on edge-depth/hall/alert/ack: ack: 'id' 'x\\nFORGED 0'")
    assert lines[1].startswith("ignored message on edge-depth/hall/baseline/reset: baseline reset: payload is nested")
    assert not any(record.exc_info for record in caplog.records)
