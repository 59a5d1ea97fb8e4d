"""Camera capture: one reader per camera feeding a newest-frame hub that inference takes from.

A ``CameraReader`` runs two kinds of thread:

- its supervisor, ``capture-<name>`` (non-daemon): opens sessions, watches them for stalls, backs off
  between reconnects and publishes ``CaptureState`` changes;
- one I/O thread per session, ``capture-<name>-io<k>`` (daemon): opens the source, reads, resizes with
  ``prepare`` and deposits the frame in the ``FrameHub``.

``VideoCapture.read()`` can block far longer than its timeout on a dead stream (a known OpenCV behaviour),
and releasing a capture from another thread while it reads is unsafe. So the supervisor never touches
a capture: when no frame came for ``stall_timeout_s`` it marks the session abandoned and starts a new
one. The abandoned I/O thread releases its capture and exits as soon as its read returns; it is a
daemon thread so that a read that never returns cannot hold up the process's exit.

Sources and their openers are in ``sources``, the hub in ``hub``. Capture never imports OpenVINO: it hands
``Frame``s over and knows nothing of the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from edge_depth.capture.hub import FrameHub
from edge_depth.capture.sources import Source, SourceError, one_line, open_source, open_turn, read_failure_reason
from edge_depth.config.schema import CameraConfig
from edge_depth.frames import Frame

log = logging.getLogger(__name__)

StateName = Literal["starting", "online", "reconnecting", "error", "ended", "stopped"]

DEFAULT_FILE_FPS = 25.0
_OPEN_GRACE_S = 2.0  # an open may overrun its own timeout by this much before the watchdog gives up on it
_FPS_WINDOW_S = 1.0
_RELEASE_WAIT_S = 1.0  # at shutdown, how long the supervisor waits for the I/O thread to release its capture
# A gap this long between two decoded frames of an open source is a stall, whether the frames resume or the
# session is given up; shorter gaps are jitter of the network or the encoder.
STALL_GAP_S = 2.0
HISTORY_S = 3600.0  # reconnects and stalls are reported over the last hour
_DELIVERED_WINDOW_S = 10.0  # delivered frames are counted over this window: several even at a low fps_limit
_DELIVERED_MIN_S = 2.0  # no delivered rate before the camera has been online this long
_MAX_SOURCE_FPS = 240.0  # what a source reports above this is a time base, not a frame rate
# A decoder gives back at most its reorder and threading depth of held frames (a few; 16 at most for H.264):
# a timestamp that stands still longer is a backend's constant, not a frozen source.
_MAX_HELD_FRAMES = 32
_FRAME_COUNT_SLACK = 2  # frames a container's count may be off by (rounded durations), or 1 %


@dataclass(frozen=True, slots=True)
class CaptureState:
    """A camera's capture health, as published in its status.

    ``state``: starting | online | reconnecting (lost a source that worked, retrying) | error (the source
    never came up, retrying) | ended (a file without ``loop`` reached its end) | stopped (shut down).
    ``frames_dropped``: frames lost to overload: decoded and handed over, then replaced in the hub by a newer
    one before inference took them (= ``frames_stale``). ``frames_skipped``: frames left out on purpose to
    honour ``fps_limit``; never counted as dropped.
    ``reconnects``: attempts to open the source again after it failed or stalled.
    ``fps``: decoded frames per second over the last second or so; 0 when frames stopped.
    ``last_error``: one line, redacted; ``source``: redacted. ``since``: ``time.time()`` of the state change.
    ``delivered_fps``: frames per second handed to inference (after ``fps_limit``) over the last 10 s; None
    until the camera has been online for 2 s. ``expected_fps``: what it should deliver: the lower of
    ``fps_limit`` and the source's own rate, whichever is known; None when neither is (or for a file read
    as fast as inference goes). ``stalls``: gaps of ``STALL_GAP_S`` or more without a decoded frame while the
    source was open. ``reconnects_last_hour``, ``stalls_last_hour``: the same over the last hour.
    """

    camera: str
    state: StateName
    frames_read: int
    frames_dropped: int
    frames_stale: int
    frames_skipped: int
    reconnects: int
    fps: float
    last_error: str | None
    source: str
    since: float
    delivered_fps: float | None = None
    expected_fps: float | None = None
    stalls: int = 0
    reconnects_last_hour: int = 0
    stalls_last_hour: int = 0


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How a session ended."""

    kind: Literal["ended", "failed", "stalled", "stopped"]
    error: str | None = None


def _cut_short(cap: cv2.VideoCapture) -> str | None:
    """At the end of a file: why it ended early when its header promises more frames than it had (a copy cut
    short by a full disk or a crash); None when it ended where it said it would."""
    read, promised = int(cap.get(cv2.CAP_PROP_POS_FRAMES)), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    # Containers round their frame count: only a clear shortfall is a cut.
    if promised <= 0 or promised - read <= max(_FRAME_COUNT_SLACK, promised // 100):
        return None
    return f"after {read} of {promised} frames: the file is truncated (cut short)"


class _Session:
    """One open-read cycle of a source, shared by its I/O thread and the supervisor."""

    def __init__(self, now: float) -> None:
        self.thread: threading.Thread | None = None
        self.abandoned = threading.Event()  # set by the supervisor: the I/O thread must let go
        self.done = threading.Event()
        self.outcome = _Outcome("failed", "session ended without a reason")
        self.opened = False
        self.frames = 0
        self.last_progress = now  # clock() of the start, the open, or the latest decoded frame
        self.last_position = -1.0  # the decoder's timestamp (ms) of the latest frame, to spot frames given again
        self.repeats = 0  # frames in a row with the same timestamp
        self.clock_unusable = False  # the timestamp stood still too long to mean a held frame
        self.waiting_for_consumer = False
        self.cut_short_said = False

    def finish(self, outcome: _Outcome) -> None:
        self.outcome = outcome
        self.done.set()


class CameraReader:
    """Reads one camera in threads of its own and puts prepared frames into ``hub``.

    ``prepare``: maps the decoded (H, W, 3) uint8 BGR image to the model's (h, w, 3) uint8 BGR input;
    it runs in the reader's thread so that resizing overlaps with inference.
    ``stop``: the shutdown event (may be shared by every reader); ``stop()`` sets it.
    ``on_state``: called with the new ``CaptureState`` whenever ``state`` or ``last_error`` changes (not on
    every frame), from a reader thread; it must be quick and must not raise.
    ``clock``: monotonic seconds, for frame timestamps and stall detection.
    """

    def __init__(
        self,
        cfg: CameraConfig,
        hub: FrameHub,
        prepare: Callable[[np.ndarray], np.ndarray],
        stop: threading.Event,
        *,
        on_state: Callable[[CaptureState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._hub = hub
        self._prepare = prepare
        self._stop = stop
        self._on_state = on_state
        self._clock = clock
        self._source = Source.parse(cfg.source)
        self._name = cfg.name
        self._lock = threading.Lock()
        self._frames_read = 0
        self._frames_skipped = 0
        self._reconnects = 0
        self._fps = 0.0
        self._last_frame_mono: float | None = None
        self._fps_window_start = 0.0
        self._fps_window_frames = 0
        self._stalls = 0
        self._reconnect_times: deque[float] = deque()  # clock() of each reconnect in the last hour
        self._stall_times: deque[float] = deque()
        self._delivered_times: deque[float] = deque()  # clock() of each frame handed over, last window
        self._online_since: float | None = None  # clock() of the current session's first frame
        self._source_fps: float | None = None
        self._session: _Session | None = None
        self._ever_online = False
        self._state = CaptureState(
            camera=cfg.name,
            state="starting",
            frames_read=0,
            frames_dropped=0,
            frames_stale=0,
            frames_skipped=0,
            reconnects=0,
            fps=0.0,
            last_error=None,
            source=self._source.display,
            since=time.time(),
        )
        self._thread = threading.Thread(target=self._supervise, name=f"capture-{cfg.name}", daemon=False)

    @property
    def name(self) -> str:
        return self._name

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Set the stop event and wait for the reader; True if it finished within ``timeout`` seconds."""
        self._stop.set()
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader to finish (after ``stop`` was set, or a file ended); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def state(self) -> CaptureState:
        """The current state with up-to-date counters and fps."""
        with self._lock:
            stale = self._hub.dropped(self._name)
            fps = self._fps
            now = self._clock()
            frozen = self._state.state != "online" or (
                self._last_frame_mono is not None and now - self._last_frame_mono > 2 * _FPS_WINDOW_S
            )
            if frozen:
                fps = 0.0  # never show a rate for a frozen camera
            _prune(self._reconnect_times, now - HISTORY_S)
            _prune(self._stall_times, now - HISTORY_S)
            return replace(
                self._state,
                frames_read=self._frames_read,
                frames_dropped=stale,
                frames_stale=stale,
                frames_skipped=self._frames_skipped,
                reconnects=self._reconnects,
                fps=round(fps, 2),
                delivered_fps=self._delivered_fps(now, frozen),
                expected_fps=self._expected_fps(),
                stalls=self._stalls,
                reconnects_last_hour=len(self._reconnect_times),
                stalls_last_hour=len(self._stall_times),
            )

    def _delivered_fps(self, now: float, frozen: bool) -> float | None:
        """Frames handed over per second over the last window (caller holds the lock); 0 when frozen."""
        if frozen:
            return 0.0 if self._online_since is not None else None
        since = self._online_since
        if since is None or now - since < _DELIVERED_MIN_S:
            return None
        span = min(_DELIVERED_WINDOW_S, now - since)
        _prune(self._delivered_times, now - span)
        return round(len(self._delivered_times) / span, 2)

    def _expected_fps(self) -> float | None:
        """The rate the camera should deliver; None when unknown or when inference sets the pace."""
        is_file = self._source.kind == "file"
        source = self._source_fps if not is_file or self._cfg.realtime else None
        if is_file and not self._cfg.realtime:
            return None
        known = [rate for rate in (self._cfg.fps_limit, source) if rate]
        return min(known) if known else None

    # ---------------------------------------------------------------------------- state bookkeeping

    def _set_state(self, state: StateName, error: str | None = None, session: _Session | None = None) -> None:
        """Record a state change; ``session``: only if that session is still the current one."""
        with self._lock:
            if session is not None and (session is not self._session or session.abandoned.is_set()):
                return
            last_error = self._state.last_error if error is None else error
            if state == self._state.state and last_error == self._state.last_error:
                return
            self._state = replace(self._state, state=state, last_error=last_error, since=time.time())
        if self._on_state is not None:
            try:
                self._on_state(self.state())
            except Exception as exc:
                log.error("camera %s: state callback failed: %s", self._name, one_line(repr(exc)))

    # ---------------------------------------------------------------------------------- supervisor

    def _supervise(self) -> None:
        try:
            self._run_sessions()
        except Exception as exc:  # a bug here must not take other cameras or the daemon down
            error = one_line(f"capture failed: {exc!r}")
            log.error("camera %s: %s", self._name, error)
            self._set_state("error", error)
        finally:
            session = self._abandon_session()
            if session is not None and session.thread is not None:
                session.thread.join(_RELEASE_WAIT_S)  # let it release the capture, unless a read hangs
            if self._state.state != "ended":
                self._set_state("stopped")
                log.info("camera %s: stopped", self._name)

    def _run_sessions(self) -> None:
        delay = self._cfg.reconnect.initial_s
        number = 0
        while not self._stop.is_set():
            number += 1
            session = self._start_session(number)
            outcome = self._watch(session)
            if outcome.kind == "stopped":
                return
            if outcome.kind == "ended":
                if outcome.error:
                    log.warning("camera %s: %s", self._name, outcome.error)
                else:
                    log.info("camera %s: end of %s", self._name, self._source.display)
                self._set_state("ended", outcome.error)
                return
            if session.frames:
                delay = self._cfg.reconnect.initial_s  # frames flowed: the source works again
            if outcome.kind == "stalled" and session.opened:
                self._count_stall()
            with self._lock:
                self._online_since = None
            self._abandon_session()
            state: StateName = "reconnecting" if self._ever_online else "error"
            log.warning("camera %s: %s; retrying in %.1f s", self._name, outcome.error, delay)
            self._set_state(state, outcome.error)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self._cfg.reconnect.max_s)
            with self._lock:
                self._reconnects += 1
                self._reconnect_times.append(self._clock())

    def _start_session(self, number: int) -> _Session:
        session = _Session(self._clock())
        session.thread = threading.Thread(
            target=self._run_session, args=(session,), name=f"capture-{self._name}-io{number}", daemon=True
        )
        with self._lock:
            self._session = session
        session.thread.start()
        return session

    def _watch(self, session: _Session) -> _Outcome:
        """Wait for the session to end, to stall, or for stop; the verdict."""
        tick = min(0.2, self._cfg.stall_timeout_s / 4)
        while not session.done.wait(tick):
            if self._stop.is_set():
                return _Outcome("stopped")
            silent = self._clock() - session.last_progress
            if not session.opened and silent > self._cfg.open_timeout_s + _OPEN_GRACE_S:
                return _Outcome("stalled", f"opening {self._source.display} did not finish in {silent:.1f} s")
            if session.opened and not session.waiting_for_consumer and silent > self._cfg.stall_timeout_s:
                return _Outcome("stalled", f"no frame from {self._source.display} for {silent:.1f} s")
        return _Outcome("stopped") if self._stop.is_set() else session.outcome

    def _abandon_session(self) -> _Session | None:
        """Tell the current session's I/O thread to let go of its capture; that session."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.abandoned.set()
        return session

    # ------------------------------------------------------------------------------- session (I/O)

    def _run_session(self, session: _Session) -> None:
        try:
            with open_turn(session.abandoned) as turn:
                if not turn:
                    session.finish(_Outcome("stopped"))
                    return
                cap = open_source(self._cfg)
        except SourceError as exc:
            session.finish(_Outcome("failed", str(exc)))
            return
        except Exception as exc:
            session.finish(_Outcome("failed", one_line(f"cannot open {self._source.display}: {exc!r}")))
            return
        try:
            session.opened = True
            session.last_progress = self._clock()
            session.finish(self._read_frames(cap, session))
        except Exception as exc:
            session.finish(_Outcome("failed", one_line(f"reading {self._source.display} failed: {exc!r}")))
        finally:
            cap.release()

    def _read_frames(self, cap: cv2.VideoCapture, session: _Session) -> _Outcome:
        is_file = self._source.kind == "file"
        shown = self._source.display
        pace = 1.0 / self._file_fps(cap) if is_file and self._cfg.realtime else 0.0
        block = is_file and not self._cfg.realtime
        limit = 1.0 / self._cfg.fps_limit if self._cfg.fps_limit else 0.0
        reported = float(cap.get(cv2.CAP_PROP_FPS))
        with self._lock:
            self._source_fps = reported if 0 < reported <= _MAX_SOURCE_FPS else None
        next_due = next_allowed = self._clock()
        while not (self._stop.is_set() or session.abandoned.is_set()):
            if pace:
                next_due = self._wait_until(next_due, pace)
            # With fps_limit, a frame is decoded (grab) and only converted to BGR (retrieve) once it is let
            # through: a camera sending 25 FPS limited to 10 converts 10 frames a second, not 25.
            image: np.ndarray | None
            ok, image = (cap.grab(), None) if limit else cap.read()
            if session.abandoned.is_set():
                break
            if not ok and is_file and session.frames:
                short = _cut_short(cap)
                if self._cfg.loop and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                    if short and not session.cut_short_said:
                        session.cut_short_said = True  # once, not at every pass
                        log.warning("camera %s: %s ends %s; looping over what it has", self._name, shown, short)
                    continue
                return _Outcome("ended", None if short is None else f"end of {shown} {short}")
            if not ok:
                why = read_failure_reason(self._source, session.last_progress) or "stream ended or read failed"
                return _Outcome("failed", f"no frame from {self._source.display} ({why})")
            now = self._clock()
            if not is_file and self._repeated(session, cap, self._name):
                continue  # the decoder gave a frame again: no progress (the stall watchdog must not be fed)
            self._count_frame(session, now)
            if limit:
                if now < next_allowed:
                    with self._lock:
                        self._frames_skipped += 1
                    continue
                next_allowed = next_allowed + limit if now - next_allowed < limit else now + limit
                ok, image = cap.retrieve()
                if not ok:
                    return _Outcome("failed", f"no frame from {self._source.display} (a decoded frame was unreadable)")
            if image is None or not self._deliver(session, image, now, block):
                break
        return _Outcome("stopped")

    @staticmethod
    def _repeated(session: _Session, cap: cv2.VideoCapture, camera: str = "camera") -> bool:
        """The frame just read has the timestamp of the one before: a frame held by the decoder of a source that
        froze, not a new one. A source without timestamps (0) never counts as repeating, nor one whose
        timestamp stands still for more frames than a decoder holds (a backend that reports a constant): for
        the rest of the session its frames count as new."""
        if session.clock_unusable:
            return False
        position = float(cap.get(cv2.CAP_PROP_POS_MSEC))
        repeated = position > 0 and position == session.last_position
        session.last_position = position
        session.repeats = session.repeats + 1 if repeated else 0
        if session.repeats > _MAX_HELD_FRAMES:
            session.clock_unusable = True
            log.info("camera %s: the decoder's timestamp stays at %.0f ms; every frame counts as new", camera, position)
            return False
        return repeated

    def _file_fps(self, cap: cv2.VideoCapture) -> float:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        return fps if 0 < fps <= _MAX_SOURCE_FPS else DEFAULT_FILE_FPS

    def _wait_until(self, due: float, period: float) -> float:
        """Sleep until ``due`` (or stop); the next due time, re-anchored if we fell more than a period behind."""
        delay = due - self._clock()
        if delay > 0:
            self._stop.wait(delay)
        now = self._clock()
        return due + period if now - due < period else now + period

    def _count_frame(self, session: _Session, now: float) -> None:
        if session.frames and now - session.last_progress >= STALL_GAP_S:
            self._count_stall()
        session.frames += 1
        session.last_progress = now
        with self._lock:
            if session.frames == 1:
                self._online_since = now
            self._frames_read += 1
            self._update_fps(now)
            self._last_frame_mono = now
        if session.frames == 1:
            self._ever_online = True
            log.info("camera %s: online (%s)", self._name, self._source.display)
            self._set_state("online", session=session)

    def _update_fps(self, now: float) -> None:
        """Frames per second over windows of about ``_FPS_WINDOW_S``; a pause starts a new window."""
        if self._last_frame_mono is None or now - self._last_frame_mono > _FPS_WINDOW_S:
            self._fps_window_start, self._fps_window_frames = now, 0
            return
        self._fps_window_frames += 1
        elapsed = now - self._fps_window_start
        if elapsed >= _FPS_WINDOW_S:
            self._fps = self._fps_window_frames / elapsed
            self._fps_window_start, self._fps_window_frames = now, 0

    def _deliver(self, session: _Session, image: np.ndarray, now: float, block: bool) -> bool:
        height, width = image.shape[:2]
        frame = Frame(
            camera=self._name,
            seq=self._frames_read,
            captured_mono=now,
            captured_wall=time.time(),
            image=self._prepare(image),
            source_size=(width, height),
        )
        session.waiting_for_consumer = block
        try:
            delivered = self._hub.put(frame, block=block, stop=self._stop)
            if delivered:
                with self._lock:
                    self._delivered_times.append(now)
                    _prune(self._delivered_times, now - _DELIVERED_WINDOW_S)
            return delivered
        finally:
            session.waiting_for_consumer = False
            session.last_progress = self._clock()

    def _count_stall(self) -> None:
        with self._lock:
            self._stalls += 1
            self._stall_times.append(self._clock())


def _prune(times: deque[float], horizon: float) -> None:
    """Drop the clock() values older than ``horizon`` from the front of ``times`` (kept in order)."""
    while times and times[0] < horizon:
        times.popleft()
