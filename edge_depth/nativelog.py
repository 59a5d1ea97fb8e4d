"""What C libraries print: FFmpeg (inside OpenCV), OpenCV and OpenVINO write to file descriptors 1 and 2 directly
(OpenCV passes FFmpeg's messages on to stdout).

Left alone, those lines bypass logging: they break ``logging.format: json`` (a journal shipper then meets lines
that are not JSON), skip redaction (FFmpeg quotes camera URLs), and their content, the only place that says
*why* a stream failed ("Connection refused", "404 Not Found", "401 Unauthorized"), is lost to the daemon.

``NativeStderr.install()`` points fds 1 and 2 at a pipe and keeps a private duplicate of the real stderr for
the daemon's own log handler. A thread reads the pipe line by line, keeps the recent lines with their time (capture
asks for those written while it opened a source, to explain a failure), and logs each through ``logging``
(logger ``edge_depth.native``) with the same handler, format and redaction as everything else. A line that
repeats is logged once a minute with the count of the repeats, so a decoder complaining on every frame cannot
flood the journal.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections import deque
from typing import TextIO

log = logging.getLogger("edge_depth.native")

_RECENT = 256  # lines kept for explaining failures
_SENTINEL = "\x00edge-depth-flush "  # written by flush(): never logged
_REPEAT_WINDOW_S = 60.0
# "[tcp @ 0x5581c0]" -> "[tcp]": the address changes with every open, the message does not.
_ADDRESS = re.compile(r" @ 0x[0-9a-f]+\]")
_OPENCV_PREFIX = re.compile(r"^\[ ?(WARN|ERROR|INFO):\d+@[\d.]+\] ")


def normalised(line: str) -> str:
    """``line`` without the parts that differ between repeats of one message (object addresses, timestamps)."""
    return _OPENCV_PREFIX.sub(r"[\1] ", _ADDRESS.sub("]", line.strip()))


class NativeStderr:
    """Fd 2 captured into logging; ``lines_since(t)`` gives what C libraries said since monotonic time ``t``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, str]] = deque(maxlen=_RECENT)
        self._last_logged: dict[str, tuple[float, int]] = {}
        self._thread: threading.Thread | None = None
        self._flushed = threading.Condition(self._lock)
        self._flush_sent = 0
        self._flush_seen = 0

    def install(self) -> TextIO:
        """Redirect fds 1 and 2 to the reader; return a text stream on the original stderr for the log handler."""
        original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr] # a print() is a line, not a 4 KB block
        self._thread = threading.Thread(target=self._read, args=(read_end,), name="native-stderr", daemon=True)
        self._thread.start()
        return open(original, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=True)

    def lines_since(self, since: float) -> list[tuple[float, str]]:
        """(monotonic time read, normalised line) of the lines read at or after ``since``, oldest first."""
        with self._lock:
            return [(t, line) for t, line in self._recent if t >= since]

    def flush(self, timeout: float) -> None:
        """Wait until every line written to fd 2 before this call has been read (or ``timeout`` s passed).

        A marker line goes through the pipe behind them: a failed open asks for this before it reads
        ``lines_since``, so FFmpeg's explanation is not still in the pipe.
        """
        if self._thread is None:
            return
        with self._lock:
            self._flush_sent += 1
            number = self._flush_sent
        os.write(2, f"{_SENTINEL}{number}\n".encode())
        with self._flushed:
            self._flushed.wait_for(lambda: self._flush_seen >= number, timeout)

    def record(self, line: str, now: float | None = None) -> None:
        """Keep and log one line as if a C library had written it (the reader's path; also for tests)."""
        if line.startswith(_SENTINEL):
            with self._flushed:
                self._flush_seen = max(self._flush_seen, int(line[len(_SENTINEL) :]))
                self._flushed.notify_all()
            return
        text = normalised(line)
        if not text:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent.append((now, text))
            last, repeats = self._last_logged.get(text, (-_REPEAT_WINDOW_S, 0))
            if now - last < _REPEAT_WINDOW_S:
                self._last_logged[text] = (last, repeats + 1)
                return
            if len(self._last_logged) >= _RECENT:  # forget messages not seen for a minute: memory stays flat
                self._last_logged = {k: v for k, v in self._last_logged.items() if now - v[0] < _REPEAT_WINDOW_S}
            self._last_logged[text] = (now, 0)
        suffix = f" (and {repeats} more times in the last minute)" if repeats else ""
        log.warning("%s%s", text, suffix)

    def _read(self, fd: int) -> None:
        with open(fd, encoding="utf-8", errors="replace") as pipe:
            for line in pipe:
                try:
                    self.record(line)
                except Exception:  # the reader must outlive any bad line, or writers to fd 2 would block
                    continue


native_stderr = NativeStderr()
