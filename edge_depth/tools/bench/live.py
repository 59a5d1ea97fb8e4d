"""Live cameras for the bench: a 1280x720 H.264 clip made from the sample with FFmpeg, served over RTSP by the
test suite's GStreamer server (a script run by the system's Python, which has GStreamer's bindings).

``live_problem`` says in one line why live rows cannot run here (no FFmpeg, no GStreamer, no server script),
so that their rows can say so instead of failing the bench.
"""

from __future__ import annotations

import selectors
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_depth.tools.bench.common import REPO, BenchError

SERVER_SCRIPT = REPO / "tests" / "support" / "rtsp_server.py"
SYSTEM_PYTHON = Path("/usr/bin/python3")  # GStreamer's Python bindings come with the system's interpreter
LIVE_SIZE = (1280, 720)
LIVE_FPS = 25
_GOP = 50  # a keyframe every 2 s, no B-frames: what IP cameras send
_READY_S = 30.0
_ENCODE_S = 300.0
_PROBE = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"


def live_problem() -> str | None:
    """Why live RTSP cameras cannot be served here, or None when they can."""
    if shutil.which("ffmpeg") is None:
        return "ffmpeg not found (needed to make the 720p clip)"
    if not SERVER_SCRIPT.is_file():
        return f"the RTSP server script {SERVER_SCRIPT.name} is not installed (it ships with the source tree)"
    if not SYSTEM_PYTHON.is_file():
        return f"{SYSTEM_PYTHON} not found (GStreamer's Python bindings come with it)"
    try:
        cmd = [str(SYSTEM_PYTHON), "-c", _PROBE]
        probe = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {SYSTEM_PYTHON}: {exc}"
    if probe.returncode != 0:
        return "GStreamer's RTSP server is not installed (gir1.2-gst-rtsp-server-1.0, python3-gi)"
    return None


def make_live_clip(clip: Path, directory: Path, seconds: float) -> Path:
    """``clip`` scaled to 1280x720 at 25 FPS in H.264 (no B-frames, a keyframe every 2 s), repeated (stream copy)
    to last at least ``seconds``, so that no client reaches its end during a run."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise BenchError("ffmpeg not found")
    once = directory / "live-once.mp4"
    out = directory / "live.mp4"
    w, h = LIVE_SIZE
    encode = [ffmpeg, "-v", "error", "-y", "-i", str(clip), "-an", "-vf", f"scale={w}:{h},fps={LIVE_FPS}"]
    encode += ["-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", str(_GOP), "-pix_fmt", "yuv420p"]
    _run([*encode, str(once)])
    frames = _frame_count(once)
    repeats = max(1, int(seconds * LIVE_FPS / max(frames, 1)) + 1)
    _run([ffmpeg, "-v", "error", "-y", "-stream_loop", str(repeats - 1), "-i", str(once), "-c", "copy", str(out)])
    return out


def _frame_count(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()


def _run(cmd: list[str]) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=_ENCODE_S)
    except subprocess.CalledProcessError as exc:
        last = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else f"exit code {exc.returncode}"
        raise BenchError(f"ffmpeg failed: {last}") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"ffmpeg did not finish within {_ENCODE_S:.0f} s") from None


@contextmanager
def rtsp_server(clip: Path) -> Iterator[str]:
    """The URL of ``clip`` served on loopback, one GStreamer pipeline per client (each camera its own stream
    from the start); the server is stopped on exit."""
    cmd = [str(SYSTEM_PYTHON), str(SERVER_SCRIPT), "--clip", str(clip), "--port", "0", "--mount", "/cam"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            line = proc.stdout.readline().strip() if sel.select(_READY_S) else ""
        if not line.startswith("READY "):
            raise BenchError(f"the RTSP server did not start: {line or 'no ready line'}")
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
