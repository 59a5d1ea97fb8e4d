"""MQTT command payloads (ack, baseline reset) are validated strictly: one-line ValueErrors, never a crash."""

from __future__ import annotations

import re

import pytest

from edge_depth.alerts.commands import parse_ack, parse_baseline_reset


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
