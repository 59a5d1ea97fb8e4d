"""pytest fixtures: a real RTSP server on loopback (GStreamer's, see rtsp_server.py) serving the sample clip.

``rtsp_server`` yields a started ``RtspServer``: ``.url`` (rtsp://127.0.0.1:PORT/cam), ``.stop()`` kills it
like a crash would, ``.start()`` brings it back on the same port (for reconnect tests), ``.pause()`` and
``.resume()`` freeze and thaw it (a hung camera: the connection stays open, no data comes).
"""

from __future__ import annotations

import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
# GStreamer's Python bindings (python3-gi) come with the system interpreter, not with the project's venv.
SYSTEM_PYTHON = "/usr/bin/python3"
READY_TIMEOUT_S = 30.0
CLIP_REPEATS = 20  # the 8.8 s sample clip played 20 times: about 3 minutes of stream per client


class RtspServer:
    """The RTSP server script as a subprocess."""

    def __init__(self, clip: Path, port: int = 0, mount: str = "/cam") -> None:
        self.clip = clip
        self.port = port
        self.mount = mount
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the RTSP server has not been started yet")
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Start the server (on the port it had before, if any) and wait until it listens."""
        if self.running:
            raise RuntimeError("the RTSP server is already running")
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--clip", str(self.clip), "--port", str(self.port)]
        cmd += ["--mount", self.mount]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._read_ready_line(timeout)
        if not line.startswith("READY "):
            self._proc.kill()
            _, err = self._proc.communicate(timeout=10)
            self._proc = None
            raise RuntimeError(f"RTSP server did not start: {line!r} {err.strip()}")
        self.port = int(line.split()[1].rsplit(":", 1)[1].split("/", 1)[0])

    def _read_ready_line(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if sel.select(left):
                    return self._proc.stdout.readline().strip()
        return f"no ready line within {timeout:.0f} s"

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing more is sent, as with a hung camera."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill the server at once (SIGKILL: clients see the connection drop as in a crash)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(10)
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()
        self._proc = None


@pytest.fixture(scope="session")
def rtsp_clip(sample_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample clip's video repeated ``CLIP_REPEATS`` times (stream copy, no re-encoding), so that a
    client never reaches the end during a test."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is needed to make the RTSP test clip (Debian package ffmpeg)"
    out = tmp_path_factory.mktemp("rtsp") / "looped.mp4"
    cmd = [ffmpeg, "-v", "error", "-y", "-stream_loop", str(CLIP_REPEATS - 1), "-i", str(sample_clip)]
    subprocess.run([*cmd, "-map", "0:v", "-c", "copy", str(out)], check=True, timeout=120)
    return out


@pytest.fixture
def rtsp_server(rtsp_clip: Path) -> Iterator[RtspServer]:
    """A running RTSP server serving ``rtsp_clip`` at ``.url``; killed after the test."""
    server = RtspServer(rtsp_clip)
    server.start()
    try:
        yield server
    finally:
        server.stop()
