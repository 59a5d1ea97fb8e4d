"""Camera sources: what a ``source`` setting names (``config.sources.classify_source``) and one opener per kind.

Every message is one line and redacted: camera URLs carry passwords.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2

from edge_depth.config.schema import CameraConfig
from edge_depth.config.sources import SourceKind, classify_source
from edge_depth.nativelog import native_stderr
from edge_depth.redact import redact_url

_FFMPEG_OPTIONS_VAR = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_FLUSH_WAIT_S = 0.5  # after a failed open, how long to wait for FFmpeg's explanation to come through the pipe


class SourceError(Exception):
    """A source that cannot be opened; the message is one line and already redacted."""


def one_line(text: str) -> str:
    """``text`` redacted and folded to a single line (OpenCV errors span several)."""
    return re.sub(r"\s+", " ", redact_url(text)).strip()


# What FFmpeg and OpenCV print when a source fails, and the reason a user can act on. First match wins.
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason)
    for pattern, reason in (
        (r"\b401\b|unauthori[sz]ed", "unauthorized (401): check the user name and password"),
        (r"\b403\b|forbidden", "forbidden (403)"),
        (r"\b404\b", "not found (404): check the path of the URL"),
        (r"connection refused", "connection refused: nothing listens on that host and port"),
        (r"no route to host|network is unreachable", "no route to host"),
        (r"name or service not known|temporary failure in name resolution|failed to resolve", "host name not found"),
        (r"timed out|immediate exit requested", "timed out"),
        (
            r"invalid data found|could not find codec|no video stream|does not contain any stream|moov atom not found",
            "no video stream",
        ),
        (r"end of file|\beof\b", "stream ended"),
    )
)


def explain(lines: list[str]) -> str | None:
    """The reason a source failed, from what FFmpeg/OpenCV printed meanwhile (newest line first); None if unknown."""
    for line in reversed(lines):
        for pattern, reason in _REASONS:
            if pattern.search(line):
                return reason
    return None


# OpenCV's FFmpeg backend opens one capture at a time (a lock of its own, measured: an open queued behind a
# hung one waits for its timeout). Taking that turn explicitly costs nothing more, and makes everything FFmpeg
# prints during an open that open's own: its messages rarely name the URL ("method DESCRIBE failed: 404").
# It also guards OPENCV_FFMPEG_CAPTURE_OPTIONS, which is process-wide and read at open. Reentrant: a reader
# takes the turn with ``open_turn`` (so that it can give up waiting) and ``open_source`` takes it again.
_open_turn = threading.RLock()
_TURN_CHECK_S = 0.2  # a wait for the open turn re-checks its give-up event this often (an Event cannot notify a lock)


@contextmanager
def open_turn(give_up: threading.Event) -> Iterator[bool]:
    """Holds the open turn for the block (True), or gives up waiting for it once ``give_up`` is set (False).

    With cameras that hang until their open timeout, opens queue for the turn. A reconnect attempt the reader
    has abandoned meanwhile must leave the queue instead of opening a capture nobody reads: that open would
    hold every other camera's open back by a whole timeout, and its thread would linger for as long.
    """
    taken = False
    while not (taken or give_up.is_set()):
        taken = _open_turn.acquire(timeout=_TURN_CHECK_S)
    if not taken:
        yield False
        return
    try:
        yield True
    finally:
        _open_turn.release()


def _host_port(source: Source) -> str | None:
    found = re.search(r"://(?:[^@/]*@)?([^/?#]+)", str(source.target))
    return found.group(1) if found else None


def read_failure_reason(source: Source, since: float) -> str | None:
    """Why reading ``source`` stopped, from what FFmpeg printed since ``since`` that names its host and port
    (other cameras read meanwhile, so an anonymous line may be theirs); None if it said nothing."""
    host = _host_port(source)
    return explain([line for _, line in native_stderr.lines_since(since) if host and host in line])


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


def open_source(cfg: CameraConfig) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` for ``cfg.source``, or ``SourceError`` with a one-line redacted reason.

    One opener per kind of source; a depth recording is not opened here (``replay.ReplayCamera`` plays it).
    """
    source = Source.parse(cfg.source)
    opener = _OPENERS.get(source.kind)
    if opener is None:
        raise SourceError(f"{source.kind} {source.display} is not a camera OpenCV opens")
    with _open_turn:
        started = time.monotonic()
        cap = opener(source, cfg)
        if cap.isOpened():
            return cap
        waited = time.monotonic() - started
        native_stderr.flush(timeout=_FLUSH_WAIT_S)
        said = [line for _, line in native_stderr.lines_since(started)]
    cap.release()
    reason = explain(said)
    if reason is None and source.kind == "stream" and waited >= 0.9 * cfg.open_timeout_s:
        reason = f"timed out after {waited:.1f} s"  # FFmpeg gives up silently when its interrupt callback fires
    if source.kind == "file" and reason in (None, "no video stream"):
        reason = _unreadable_file(str(source.target), said)
    raise SourceError(f"cannot open {source.kind} {source.display}" + (f": {reason}" if reason else ""))


_INCOMPLETE_MP4 = "incomplete file (no index: cut short, or still being written)"


def _unreadable_file(path: str, said: list[str]) -> str:
    """Why a file OpenCV could not open is no video: an MP4 begun (its ``ftyp`` box is there) whose index, the
    ``moov`` box written last unless the file was made for streaming, never came; or not a video at all."""
    if any("moov atom not found" in line for line in said):
        try:
            with open(path, "rb") as f:
                head = f.read(12)
        except OSError:
            head = b""
        if head[4:8] == b"ftyp":
            return _INCOMPLETE_MP4
    return "not a video file OpenCV can decode"


def _open_device(source: Source, _cfg: CameraConfig) -> cv2.VideoCapture:
    """V4L2 on Linux, whose backend rejects FFmpeg's timeout parameters: the reader's stall watchdog covers a
    device that stops sending."""
    path = source.display if isinstance(source.target, int) else str(source.target)
    if sys.platform.startswith("linux") and not Path(path).exists():
        raise SourceError(f"video device not found: {path}")
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    return cv2.VideoCapture(source.target, api)


def _ffmpeg_params(cfg: CameraConfig) -> list[int]:
    """Open and read timeouts, and the decoder's threads: one by default, because FFmpeg's own choice (one
    per core, frame-threaded) costs more CPU per frame where the model and other cameras keep every core busy,
    and holds each decoded frame back until the other threads' frames are done."""
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        round(cfg.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        round(cfg.read_timeout_s * 1000),
    ]
    if cfg.decoder_threads:
        params += [cv2.CAP_PROP_N_THREADS, cfg.decoder_threads]
    return params


def _open_stream(source: Source, cfg: CameraConfig) -> cv2.VideoCapture:
    """FFmpeg with open/read timeouts and ``cfg.rtsp_transport`` (TCP by default: it survives lossy links)."""
    os.environ[_FFMPEG_OPTIONS_VAR] = f"rtsp_transport;{cfg.rtsp_transport}"  # read at open, under _open_turn
    return cv2.VideoCapture(source.target, cv2.CAP_FFMPEG, _ffmpeg_params(cfg))


def _open_file(source: Source, cfg: CameraConfig) -> cv2.VideoCapture:
    if not Path(str(source.target)).is_file():
        raise SourceError(f"video file not found: {source.display}")
    return cv2.VideoCapture(source.target, cv2.CAP_FFMPEG, _ffmpeg_params(cfg))


_OPENERS: dict[SourceKind, Callable[[Source, CameraConfig], cv2.VideoCapture]] = {
    "device": _open_device,
    "stream": _open_stream,
    "file": _open_file,
}
