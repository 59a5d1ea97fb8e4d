"""A replayable depth source: recorded DepthFrames saved to and loaded from one ``.npz`` file.

A recording holds, for N frames of one camera: ``depth`` (N, H, W) float32 (or float16, widened on load)
relative inverse depth, ``image`` (N, H, W, 3) uint8 BGR, ``seq`` (N,) int64, ``captured_mono`` and
``captured_wall`` (N,) float64 seconds, ``infer_ms`` (N,) float64, and ``camera`` (0-d str). Replaying
yields the frames with their recorded timestamps, so the alert logic gives the same events on every run.
"""

from __future__ import annotations

import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

from edge_depth.capture.reader import CaptureState
from edge_depth.frames import DepthFrame

_DEPTH_NDIM, _IMAGE_NDIM = 3, 4  # (N, H, W) depth maps and (N, H, W, 3) images
_KEYS = ("depth", "image", "seq", "captured_mono", "captured_wall", "infer_ms", "camera")


def save_recording(path: Path, frames: Iterable[DepthFrame], *, depth_dtype: type = np.float32) -> int:
    """Write ``frames`` (one camera, all the same shape) to ``path`` (compressed .npz); the frame count.

    ``depth_dtype=np.float16`` halves the file; MiDaS's output keeps about 3 significant digits in it.
    """
    items = list(frames)
    if not items:
        raise ValueError(f"{path}: no frames to record")
    cameras = {f.camera for f in items}
    if len(cameras) != 1:
        raise ValueError(f"{path}: frames of several cameras ({', '.join(sorted(cameras))}); record one camera")
    shapes = {(f.depth.shape, f.image.shape) for f in items}
    if len(shapes) != 1:
        raise ValueError(f"{path}: frames of different shapes {sorted(map(str, shapes))}")
    np.savez_compressed(
        path,
        depth=np.stack([f.depth for f in items]).astype(depth_dtype),
        image=np.stack([f.image for f in items]).astype(np.uint8),
        seq=np.array([f.seq for f in items], np.int64),
        captured_mono=np.array([f.captured_mono for f in items], np.float64),
        captured_wall=np.array([f.captured_wall for f in items], np.float64),
        infer_ms=np.array([f.infer_ms for f in items], np.float64),
        camera=np.array(items[0].camera),
    )
    return len(items)


class Recording:
    """Recorded depth frames of one camera, loaded and checked up front. Iterate for DepthFrames."""

    def __init__(self, path: Path, *, camera: str | None = None) -> None:
        """Load ``path``; ``camera`` renames the frames (replay a recording under another camera's name).

        Raises ValueError naming the file for anything that is not a well-formed recording.
        """
        self.path = path
        try:
            with np.load(path, allow_pickle=False) as data:
                files = set(data.files)
                arrays = {k: data[k] for k in _KEYS if k in files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path}: cannot read depth recording ({exc})") from None
        missing = [k for k in _KEYS if k not in arrays]
        if missing:
            raise ValueError(f"{path}: not a depth recording (missing {', '.join(missing)})")
        depth, image = arrays["depth"], arrays["image"]
        n = depth.shape[0] if depth.ndim == _DEPTH_NDIM else -1
        if n < 1 or image.shape[:3] != depth.shape or image.ndim != _IMAGE_NDIM or image.dtype != np.uint8:
            raise ValueError(f"{path}: depth {depth.shape} and image {image.shape} {image.dtype} do not match")
        for key in ("seq", "captured_mono", "captured_wall", "infer_ms"):
            if arrays[key].shape != (n,):
                raise ValueError(f"{path}: {key} has shape {arrays[key].shape}, expected ({n},)")
        self._depth = depth
        self._image = image
        self._seq = arrays["seq"]
        self._mono = arrays["captured_mono"]
        self._wall = arrays["captured_wall"]
        self._infer = arrays["infer_ms"]
        self.camera = camera if camera is not None else str(arrays["camera"])

    def __len__(self) -> int:
        return int(self._depth.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the depth maps."""
        return int(self._depth.shape[1]), int(self._depth.shape[2])

    @property
    def duration_s(self) -> float:
        """Time from the first to the last frame (s)."""
        return float(self._mono[-1] - self._mono[0])

    def __iter__(self) -> Iterator[DepthFrame]:
        for i in range(len(self)):
            yield DepthFrame(
                camera=self.camera,
                seq=int(self._seq[i]),
                captured_mono=float(self._mono[i]),
                captured_wall=float(self._wall[i]),
                image=self._image[i],
                depth=self._depth[i].astype(np.float32, copy=False),
                infer_ms=float(self._infer[i]),
            )


class ReplayCamera:
    """Plays a recording into the pipeline in place of a camera and the model, for tuning zones and for tests.

    A camera whose ``source`` is a ``.npz`` recording gets one of these instead of a ``CameraReader``. With
    ``realtime`` the frames are spaced as recorded; otherwise as fast as the output worker takes them. The
    frames keep their recorded timestamps, so alert timing is exactly that of the recording.
    """

    def __init__(
        self,
        recording: Recording,
        feed: Callable[[Iterable[DepthFrame]], None],
        stop: threading.Event,
        *,
        loop: bool = False,
        realtime: bool = True,
    ) -> None:
        self._recording = recording
        self._feed = feed
        self._stop = stop
        self._loop = loop
        self._realtime = realtime
        self._frames = 0
        self._state: Literal["starting", "online", "ended", "stopped"] = "starting"
        self._since = time.time()
        self._thread = threading.Thread(target=self._run, name=f"replay-{recording.camera}")

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def state(self) -> CaptureState:
        return CaptureState(
            camera=self._recording.camera,
            state=self._state,
            frames_read=self._frames,
            frames_dropped=0,
            frames_stale=0,
            frames_skipped=0,
            reconnects=0,
            fps=0.0,
            last_error=None,
            source=str(self._recording.path),
            since=self._since,
        )

    def _set(self, state: Literal["starting", "online", "ended", "stopped"]) -> None:
        self._state, self._since = state, time.time()

    def _run(self) -> None:
        self._set("online")
        offset = 0.0  # added to recorded times on each loop, so time keeps moving forward
        while not self._stop.is_set():
            started, first = time.monotonic(), None
            for recorded in self._recording:
                first = recorded.captured_mono if first is None else first
                due = recorded.captured_mono - first - (time.monotonic() - started)
                if (self._realtime and self._stop.wait(max(0.0, due))) or self._stop.is_set():
                    break
                frame = replace(
                    recorded,
                    captured_mono=recorded.captured_mono + offset,
                    captured_wall=recorded.captured_wall + offset,
                )
                self._feed((frame,))
                self._frames += 1
            if not self._loop or self._stop.is_set():
                break
            frame_interval = self._recording.duration_s / max(len(self._recording) - 1, 1)
            offset += self._recording.duration_s + frame_interval
        self._set("stopped" if self._stop.is_set() else "ended")
