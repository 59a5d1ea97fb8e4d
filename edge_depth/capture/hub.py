"""The newest-frame hub between capture and inference: one slot per camera, served round-robin."""

from __future__ import annotations

import threading

from edge_depth.frames import Frame


class FrameHub:
    """Where readers deposit frames and inference takes them: one slot per camera holding the newest
    frame not yet taken.

    ``put(block=False)`` replaces an untaken frame and counts it as dropped (live sources: inference
    always sees the newest view); ``put(block=True)`` waits for the slot to be free (files played as
    fast as inference goes, so that none is lost). ``take`` serves cameras round-robin so that one fast
    camera cannot starve the others.
    """

    _STOP_CHECK_S = 0.1  # a blocked put re-checks its stop event this often (the event cannot notify us)

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._slots: dict[str, Frame | None] = {}
        self._order: list[str] = []
        self._next = 0
        self._dropped: dict[str, int] = {}

    def _register(self, camera: str) -> None:
        if camera not in self._slots:
            self._slots[camera] = None
            self._order.append(camera)
            self._dropped[camera] = 0

    def put(self, frame: Frame, *, block: bool, stop: threading.Event) -> bool:
        """Deposit ``frame`` in its camera's slot; True once it is there, False if ``stop`` was set first."""
        with self._cond:
            self._register(frame.camera)
            if block:
                while self._slots[frame.camera] is not None:
                    if stop.is_set():
                        return False
                    self._cond.wait(self._STOP_CHECK_S)
            elif self._slots[frame.camera] is not None:
                self._dropped[frame.camera] += 1
            self._slots[frame.camera] = frame
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> Frame | None:
        """The next untaken frame, choosing cameras round-robin; None after ``timeout`` seconds without one."""
        with self._cond:
            frame = self._pop_next()
            if frame is None and self._cond.wait_for(self._any_ready, timeout):
                frame = self._pop_next()
            if frame is not None:
                self._cond.notify_all()  # a blocked put may go on
            return frame

    def _any_ready(self) -> bool:
        return any(f is not None for f in self._slots.values())

    def _pop_next(self) -> Frame | None:
        count = len(self._order)
        for i in range(count):
            index = (self._next + i) % count
            camera = self._order[index]
            frame = self._slots[camera]
            if frame is not None:
                self._slots[camera] = None
                self._next = index + 1
                return frame
        return None

    def dropped(self, camera: str) -> int:
        """Frames of ``camera`` replaced in the hub before inference took them."""
        with self._cond:
            return self._dropped.get(camera, 0)
