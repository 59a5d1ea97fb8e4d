"""Commands that reach the alert logic over MQTT, validated strictly.

:func:`parse_ack` (``{"id": "<event id>"}`` on ``<prefix>/<camera>/alert/ack``) and :func:`parse_baseline_reset`
(``{}`` on ``<prefix>/<camera>/baseline/reset``) take the raw payload and raise ``ValueError`` with a one-line
reason for anything else: anyone on the broker can publish there, so nothing is trusted. The size is checked
before anything is decoded, the nesting before JSON is parsed (a deep one would recurse), and a reason quotes
the payload's keys only escaped and shortened: it goes to the log as it is.
"""

from __future__ import annotations

import json
import re

from edge_depth.redact import quoted

_MAX_COMMAND_BYTES = 4096
_MAX_ID_CHARS = 200
_MAX_DEPTH = 8  # a command is one flat object; a little room so that a wrong one still gets a precise reason
_MAX_KEYS_SHOWN = 3
# What the alert logic makes ids of (camera and zone names, a number): nothing a log line or topic chokes on.
_EVENT_ID = re.compile(r"[A-Za-z0-9._:-]+")


def parse_ack(payload: bytes) -> str:
    """The event id of an acknowledgement ``{"id": "<event id>"}``; ValueError naming what is wrong."""
    obj = _command_object(payload, "ack")
    extra = sorted(set(obj) - {"id"})
    if extra:
        raise ValueError(f"ack: unknown key(s) {_keys(extra)}; expected only 'id'")
    event_id = obj.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise ValueError("ack: 'id' must be a non-empty string (the alert's id)")
    if len(event_id) > _MAX_ID_CHARS:
        raise ValueError(f"ack: 'id' is longer than {_MAX_ID_CHARS} characters")
    if not _EVENT_ID.fullmatch(event_id):
        raise ValueError(f"ack: 'id' {quoted(event_id)} is not an alert id (letters, digits, '.', '_', ':', '-')")
    return event_id


def parse_baseline_reset(payload: bytes) -> None:
    """Validate a baseline-reset command: exactly the JSON object ``{}``; ValueError otherwise."""
    obj = _command_object(payload, "baseline reset")
    if obj:
        raise ValueError(f"baseline reset: expected {{}}, got key(s) {_keys(sorted(obj))}")


def _command_object(payload: bytes, what: str) -> dict[str, object]:
    if len(payload) > _MAX_COMMAND_BYTES:
        raise ValueError(f"{what}: payload of {len(payload)} bytes is larger than {_MAX_COMMAND_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if _nesting(text) > _MAX_DEPTH:
        raise ValueError(f"{what}: payload is nested more than {_MAX_DEPTH} levels deep")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: payload is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # defence in depth: the size and nesting checks leave none known
        raise ValueError(f"{what}: payload is not usable JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: payload must be a JSON object, got {type(value).__name__}")
    return value


def _nesting(text: str) -> int:
    """How deep arrays and objects nest in JSON `text` (brackets inside strings not counted)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _keys(keys: list[str]) -> str:
    """Keys from a payload for a one-line reason: each quoted and shortened, at most a few of them."""
    shown = ", ".join(quoted(key) for key in keys[:_MAX_KEYS_SHOWN])
    return shown if len(keys) <= _MAX_KEYS_SHOWN else f"{shown} and {len(keys) - _MAX_KEYS_SHOWN} more"
