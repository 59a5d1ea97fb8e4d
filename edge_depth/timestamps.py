"""Wall-clock times as they appear in payloads: ISO 8601 in UTC with milliseconds and a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(epoch_s: float) -> str:
    """``time.time()`` seconds -> ``2026-12-03T08:05:25.123Z``."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
