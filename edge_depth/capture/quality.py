"""A camera's connection quality in one word, like Frigate's ``connection_quality``.

From what the camera delivered in the last seconds against what it should deliver, and from its reconnects
and stalls over the last hour (:class:`~edge_depth.capture.reader.CaptureState`):

============= ====================================================================================
``excellent`` at least 90 % of the expected frame rate, no reconnect and no stall in the last hour
``fair``      at least 75 %, at most 2 reconnects and at most 5 stalls in the last hour
``poor``      at least 50 %, at most 10 reconnects and at most 20 stalls in the last hour
``unusable``  anything worse, or the source is down (``reconnecting``, ``error``)
============= ====================================================================================

The grade is the worst that any figure allows. With no expected rate (a file read as fast as inference goes,
a source that does not report its rate and no ``fps_limit``) the rate is not judged. None (unknown) while the
camera is starting, before its rate has been measured, and once it has ``ended`` or is ``stopped``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Quality = Literal["excellent", "fair", "poor", "unusable"]

QUALITIES: tuple[Quality, ...] = ("excellent", "fair", "poor", "unusable")
"""Best first: the options of the Home Assistant enum sensor."""


@dataclass(frozen=True, slots=True)
class Grade:
    """The least a camera must achieve for one quality: ``min_fps_ratio`` of the expected rate (0..1) and at most
    ``max_reconnects`` and ``max_stalls`` in the last hour."""

    quality: Quality
    min_fps_ratio: float
    max_reconnects: int
    max_stalls: int


GRADES: tuple[Grade, ...] = (
    Grade("excellent", 0.9, 0, 0),
    Grade("fair", 0.75, 2, 5),
    Grade("poor", 0.5, 10, 20),
)
"""Tried best first; a camera that meets none is ``unusable``."""

_DOWN = frozenset({"reconnecting", "error"})
_UNKNOWN = frozenset({"starting", "ended", "stopped"})


def connection_quality(
    state: str,
    *,
    delivered_fps: float | None,
    expected_fps: float | None,
    reconnects_last_hour: int,
    stalls_last_hour: int,
) -> Quality | None:
    """The quality of a camera in capture state ``state`` (``CaptureState.state``); rates in frames per second.

    None when it cannot be told: the camera is starting, ended or stopped, or its rate is expected but not
    measured yet.
    """
    if state in _DOWN:
        return "unusable"
    if state in _UNKNOWN:
        return None
    ratio: float | None = None
    if expected_fps:
        if delivered_fps is None:
            return None
        ratio = delivered_fps / expected_fps
    for grade in GRADES:
        fast_enough = ratio is None or ratio >= grade.min_fps_ratio
        if fast_enough and reconnects_last_hour <= grade.max_reconnects and stalls_last_hour <= grade.max_stalls:
            return grade.quality
    return "unusable"
