"""Commands that reach the alert logic over MQTT, validated strictly.

:func:`parse_ack` (``{"id": "<event id>"}`` on ``<prefix>/<camera>/alert/ack``) and :func:`parse_baseline_reset`
(``{}`` on ``<prefix>/<camera>/baseline/reset``) take the raw payload and raise ``ValueError`` with a one-line
reason for anything else: anyone on the broker can publish there, so nothing is trusted.
"""

from __future__ import annotations

import json

_MAX_COMMAND_BYTES = 4096
_MAX_ID_CHARS = 200


def parse_ack(payload: bytes) -> str:
    """The event id of an acknowledgement ``{"id": "<event id>"}``; ValueError naming what is wrong."""
    obj = _command_object(payload, "ack")
    extra = sorted(set(obj) - {"id"})
    if extra:
        raise ValueError(f"ack: unknown key(s) {', '.join(map(repr, extra))}; expected only 'id'")
    event_id = obj.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise ValueError("ack: 'id' must be a non-empty string (the alert's id)")
    if len(event_id) > _MAX_ID_CHARS:
        raise ValueError(f"ack: 'id' is longer than {_MAX_ID_CHARS} characters")
    return event_id


def parse_baseline_reset(payload: bytes) -> None:
    """Validate a baseline-reset command: exactly the JSON object ``{}``; ValueError otherwise."""
    obj = _command_object(payload, "baseline reset")
    if obj:
        raise ValueError(f"baseline reset: expected {{}}, got key(s) {', '.join(map(repr, sorted(obj)))}")


def _command_object(payload: bytes, what: str) -> dict[str, object]:
    if len(payload) > _MAX_COMMAND_BYTES:
        raise ValueError(f"{what}: payload of {len(payload)} bytes is larger than {_MAX_COMMAND_BYTES}")
    try:
        value = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: payload is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: payload must be a JSON object, got {type(value).__name__}")
    return value
