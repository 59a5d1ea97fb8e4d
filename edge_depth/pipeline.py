"""The per-frame path: frames from the capture hub -> asynchronous inference -> per-camera outputs.

Threads: one dispatcher waits for a free inference request, then takes the newest frame of each camera in
turn and starts it (waiting for a request is the backpressure, and the frame started is never older than
the hub's newest). OpenVINO completes requests in its own
threads, possibly out of order; a sequencer puts each camera's results back into submission order and
queues them for one output worker, which does the colour range, heatmaps, alerts and publishing. The
number of frames between dispatch and the end of output work is bounded, so memory never grows.

This module never imports paho: outputs publish through ``outputs.meters.Publisher``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from edge_depth.frames import DepthFrame, Frame

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    def take(self, timeout: float) -> Frame | None: ...


class Engine(Protocol):
    def set_result_callback(self, on_result: Callable[[DepthFrame], None]) -> None: ...

    def submit(self, frame: Frame) -> None: ...

    def wait_idle(self, timeout: float) -> bool: ...

    def wait_all(self) -> None: ...


class FrameHandler(Protocol):
    """Per-camera output work, run by the output worker for every result in order."""

    def handle(self, result: DepthFrame) -> None: ...


class Sequencer:
    """Restores each camera's submission order among results that complete out of order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._order: dict[str, deque[int]] = {}
        self._done: dict[str, dict[int, DepthFrame]] = {}

    def submitted(self, camera: str, seq: int) -> None:
        with self._lock:
            self._order.setdefault(camera, deque()).append(seq)
            self._done.setdefault(camera, {})

    def completed(self, result: DepthFrame) -> list[DepthFrame]:
        """Record a result; return the results now releasable in order (possibly none)."""
        with self._lock:
            self._done[result.camera][result.seq] = result
            return self._release(result.camera)

    def abandoned(self, camera: str, seq: int) -> list[DepthFrame]:
        """Forget a frame whose request never started, so later results of its camera are not held behind it."""
        with self._lock:
            self._order[camera].remove(seq)
            return self._release(camera)

    def _release(self, camera: str) -> list[DepthFrame]:
        order, done = self._order[camera], self._done[camera]
        ready = []
        while order and order[0] in done:
            ready.append(done.pop(order.popleft()))
        return ready


@dataclass(frozen=True, slots=True)
class _Command:
    """Work for the output worker that is not a frame (MQTT commands): keeps alert state single-threaded."""

    run: Callable[[], None]


class Pipeline:
    """Owns the dispatcher and output worker threads; ``start``, then ``stop`` for an ordered shutdown."""

    def __init__(
        self,
        source: FrameSource,
        engine: Engine,
        handlers: dict[str, FrameHandler],
        *,
        max_in_flight: int,
        stop: threading.Event,
    ) -> None:
        self._source = source
        self._engine = engine
        self._handlers = handlers
        self._stop = stop
        self._sequencer = Sequencer()
        # Frames between dispatch and the end of output work: requests in flight plus a short queue.
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._results: queue.SimpleQueue[DepthFrame | _Command | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="dispatch", daemon=True)
        self._worker = threading.Thread(target=self._work, name="outputs", daemon=True)
        self.frames_done = 0  # written by the worker only; read for watchdog and stats
        self.last_error: str | None = None
        engine.set_result_callback(self._completed)

    def start(self) -> None:
        self._dispatcher.start()
        self._worker.start()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the output worker, between frames (for MQTT commands that touch alert state)."""
        self._results.put(_Command(fn))

    def feed(self, results: Iterable[DepthFrame]) -> None:
        """Hand ready-made depth frames (a replayed recording) to the output worker, bypassing the model."""
        for result in results:
            while not self._slots.acquire(timeout=0.2):
                if self._stop.is_set():
                    return
            self._results.put(result)

    def _dispatch(self) -> None:
        # Room for the frame and a free request come first, the frame last: a frame held while every request
        # is busy would age, and by then a live camera has a newer one in the hub.
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.2):
                continue
            frame = self._source.take(timeout=0.2) if self._engine.wait_idle(0.2) else None
            if frame is None:
                self._slots.release()
                continue
            self._sequencer.submitted(frame.camera, frame.seq)
            try:
                self._engine.submit(frame)
            except Exception as exc:  # a broken request must not end the dispatcher
                self._slots.release()
                for ready in self._sequencer.abandoned(frame.camera, frame.seq):
                    self._results.put(ready)
                self.last_error = f"camera {frame.camera}: inference failed: {exc}"
                log.exception("camera %s: inference failed", frame.camera)

    def _completed(self, result: DepthFrame) -> None:
        for ready in self._sequencer.completed(result):
            self._results.put(ready)

    def _work(self) -> None:
        while True:
            item = self._results.get()
            if item is None:
                return
            if isinstance(item, _Command):
                self._run_command(item)
                continue
            try:
                self._handlers[item.camera].handle(item)
            except Exception:
                log.exception("camera %s: output processing failed for frame %d", item.camera, item.seq)
            finally:
                self._slots.release()
                self.frames_done += 1

    @staticmethod
    def _run_command(command: _Command) -> None:
        try:
            command.run()
        except Exception:
            log.exception("command failed")

    def stop(self, timeout: float = 3.0) -> None:
        """Ordered: no new frames, requests in flight finish, their outputs are published, worker ends."""
        self._stop.set()
        self._dispatcher.join(timeout)
        self._engine.wait_all()
        self._results.put(None)
        self._worker.join(timeout)
