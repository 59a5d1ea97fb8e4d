"""What a camera's ``source`` setting names: the one rule, used by the config checks and by capture.

- ``device``: a V4L2 device, as an index (``0``, ``"2"``) or a path under ``/dev/``;
- ``stream``: a network stream, anything with a scheme (``rtsp://``, ``http://``, ...);
- ``recording``: a depth recording (``.npz``, made by ``edge-depth record`` or ``replay.save_recording``),
  replayed through the alert path instead of the model;
- ``file``: any other path, a video file.
"""

from __future__ import annotations

from typing import Literal

SourceKind = Literal["device", "stream", "recording", "file"]
RECORDING_SUFFIX = ".npz"


def classify_source(source: str | int) -> SourceKind:
    """The kind of ``source``, from its spelling alone (nothing is opened or checked on disk)."""
    if isinstance(source, int) or source.strip().isdigit():
        return "device"
    if "://" in source:
        return "stream"
    if source.startswith("/dev/"):
        return "device"
    return "recording" if source.lower().endswith(RECORDING_SUFFIX) else "file"
