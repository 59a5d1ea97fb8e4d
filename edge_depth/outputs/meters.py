"""What outputs measure and where they send it: rate and latency meters, and the publisher they need."""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

import numpy as np

_MIN_SAMPLES = 2  # a rate needs two ticks


class Publisher(Protocol):
    """What outputs need of an MQTT client (``mqtt.client.MqttPublisher`` is one)."""

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 0, retain: bool = False) -> bool: ...

    def set_retained(self, topic: str, payload: bytes | str, qos: int = 1) -> None: ...


class LatencyWindow:
    """The last ``size`` latencies (ms) for percentiles, in a fixed ring buffer (no growth)."""

    def __init__(self, size: int = 512) -> None:
        self._values = np.zeros(size, dtype=np.float64)
        self._count = 0

    def add(self, ms: float) -> None:
        self._values[self._count % len(self._values)] = ms
        self._count += 1

    def percentile(self, pct: float) -> float | None:
        n = min(self._count, len(self._values))
        return float(np.percentile(self._values[:n], pct)) if n else None


class RateMeter:
    """Events per second over the last ``window_s`` seconds, from monotonic timestamps.

    ``tick`` is called by one thread; ``rate`` may be read from another and does not mutate.
    """

    def __init__(self, window_s: float = 5.0, capacity: int = 4096) -> None:
        self._window_s = window_s
        self._times: deque[float] = deque(maxlen=capacity)

    def tick(self, t: float) -> None:
        self._times.append(t)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        recent = [t for t in tuple(self._times) if now - t <= self._window_s]
        if len(recent) < _MIN_SAMPLES:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)
