"""Camera sources: what a ``source`` setting names (``config.sources.classify_source``) and one opener per kind.

Every message is one line and redacted: camera URLs carry passwords.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2

from edge_depth.config.schema import CameraConfig
from edge_depth.config.sources import SourceKind, classify_source
from edge_depth.redact import redact_url

_FFMPEG_OPTIONS_VAR = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class SourceError(Exception):
    """A source that cannot be opened; the message is one line and already redacted."""


def one_line(text: str) -> str:
    """``text`` redacted and folded to a single line (OpenCV errors span several)."""
    return re.sub(r"\s+", " ", redact_url(text)).strip()


@dataclass(frozen=True, slots=True)
class Source:
    """What a camera's ``source`` setting names: a V4L2 device, a network stream or a video file."""

    kind: SourceKind
    target: str | int  # device index or path, URL, or file path, as OpenCV takes it
    display: str  # redacted, for logs and status

    @staticmethod
    def parse(source: str | int) -> Source:
        kind = classify_source(source)
        if kind == "device" and (isinstance(source, int) or source.strip().isdigit()):
            index = int(source)
            return Source("device", index, f"/dev/video{index}")
        if kind == "device":
            return Source("device", source, str(source))
        return Source(kind, source, redact_url(str(source)))


class _FfmpegOptions:
    """Serialises OPENCV_FFMPEG_CAPTURE_OPTIONS, which OpenCV's FFmpeg backend reads when a capture opens.

    The variable is process-wide, so cameras that want different RTSP transports must not open at the
    same time. Opens that want the value currently set run concurrently (the usual case: every camera
    on TCP); one that wants another value waits until no open is in flight.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: str | None = None
        self._in_flight = 0

    @contextmanager
    def use(self, value: str) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._in_flight == 0 or self._value == value)
            if self._value != value:
                os.environ[_FFMPEG_OPTIONS_VAR] = value
                self._value = value
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()


_ffmpeg_options = _FfmpegOptions()


def open_source(cfg: CameraConfig) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` for ``cfg.source``, or ``SourceError`` with a one-line redacted reason.

    One opener per kind of source; a depth recording is not opened here (``replay.ReplayCamera`` plays it).
    """
    source = Source.parse(cfg.source)
    opener = _OPENERS.get(source.kind)
    if opener is None:
        raise SourceError(f"{source.kind} {source.display} is not a camera OpenCV opens")
    cap = opener(source, cfg)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"cannot open {source.kind} {source.display}")
    return cap


def _open_device(source: Source, _cfg: CameraConfig) -> cv2.VideoCapture:
    """V4L2 on Linux, whose backend rejects FFmpeg's timeout parameters: the reader's stall watchdog covers a
    device that stops sending."""
    path = source.display if isinstance(source.target, int) else str(source.target)
    if sys.platform.startswith("linux") and not Path(path).exists():
        raise SourceError(f"video device not found: {path}")
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    return cv2.VideoCapture(source.target, api)


def _ffmpeg_timeouts(cfg: CameraConfig) -> list[int]:
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        round(cfg.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        round(cfg.read_timeout_s * 1000),
    ]


def _open_stream(source: Source, cfg: CameraConfig) -> cv2.VideoCapture:
    """FFmpeg with open/read timeouts and ``cfg.rtsp_transport`` (TCP by default: it survives lossy links)."""
    with _ffmpeg_options.use(f"rtsp_transport;{cfg.rtsp_transport}"):
        return cv2.VideoCapture(source.target, cv2.CAP_FFMPEG, _ffmpeg_timeouts(cfg))


def _open_file(source: Source, cfg: CameraConfig) -> cv2.VideoCapture:
    if not Path(str(source.target)).is_file():
        raise SourceError(f"video file not found: {source.display}")
    return cv2.VideoCapture(source.target, cv2.CAP_FFMPEG, _ffmpeg_timeouts(cfg))


_OPENERS: dict[SourceKind, Callable[[Source, CameraConfig], cv2.VideoCapture]] = {
    "device": _open_device,
    "stream": _open_stream,
    "file": _open_file,
}
