"""``edge-depth record``: a live camera's depth (and its images) through the configured model into a replayable
``.npz`` recording, to tune zones and alerts by replaying it (a camera whose ``source`` is that file replays it).

The frames take the daemon's own path: its ``CameraReader`` (open, reconnect, ``fps_limit``, resize in the
capture thread), ``FrameHub``, ``DepthEngine`` built by ``stages.build_engine`` and the ``Pipeline`` that
dispatches them asynchronously and hands results back in order. Only the outputs differ: the results are
kept instead of published, so no MQTT broker is needed.

``--no-images`` keeps the pictures out of the file (privacy, size): the frames' images are stored black, which
compresses to almost nothing. A replay then sees a dark view, so give the replaying camera
``alerts.health.enabled: false``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

import numpy as np

from edge_depth.capture.hub import FrameHub
from edge_depth.capture.reader import CameraReader
from edge_depth.capture.replay import save_recording
from edge_depth.config import Config, ConfigError, load_config
from edge_depth.config.schema import CameraConfig
from edge_depth.config.sources import RECORDING_SUFFIX
from edge_depth.frames import DepthFrame
from edge_depth.model.engine import ModelError
from edge_depth.model.preprocess import Resizer
from edge_depth.pipeline import Pipeline
from edge_depth.stages import OUTPUT_QUEUE_FRAMES, build_engine

_PROGRESS_S = 0.25  # how often the progress line is redrawn
_STOP_S = 5.0  # at the end, how long capture and the requests in flight get to finish
_LINE_WIDTH = 64  # the progress line is padded to this many characters
_MAX_SECONDS = 86400.0  # a day: a recording is held in memory until it is written


class RecordError(Exception):
    """Why nothing (or nothing more) can be recorded: one line, exit status 2."""


@dataclass(frozen=True, slots=True)
class Progress:
    """What has been recorded so far: ``frames``, ``seconds`` of camera time from the first frame to the
    latest, and their rate (frames per second; 0 before two frames)."""

    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return (self.frames - 1) / self.seconds if self.frames > 1 and self.seconds > 0 else 0.0

    def line(self, camera: str) -> str:
        return f"recording {camera}: {self.frames} frames, {self.seconds:.1f} s, {self.fps:.1f} fps"


class _Keeper:
    """The pipeline's output for the recorded camera: keeps ``seconds`` of camera time of results.

    The first result is not kept: with ``input_size: auto`` the engine compiles for the camera's frame size
    when that frame arrives, which takes a second or more, and a live camera's frames decoded meanwhile are
    replaced in the hub. Recording from the next result on keeps that gap out of the file.
    Runs on the pipeline's output worker; ``progress`` and ``frames`` are read from the main thread.
    """

    def __init__(self, seconds: float, images: bool) -> None:
        self._seconds = seconds
        self._images = images
        self._lock = threading.Lock()
        self._frames: list[DepthFrame] = []
        self._warm = False
        self.full = threading.Event()

    def handle(self, result: DepthFrame) -> None:
        if not self._warm:
            self._warm = True
            return
        with self._lock:
            first = self._frames[0].captured_mono if self._frames else result.captured_mono
            if result.captured_mono - first >= self._seconds:
                self.full.set()
                return
            if not self._images:
                result = replace(result, image=np.zeros_like(result.image))
            self._frames.append(result)

    def progress(self) -> Progress:
        with self._lock:
            if not self._frames:
                return Progress(0, 0.0)
            return Progress(len(self._frames), self._frames[-1].captured_mono - self._frames[0].captured_mono)

    def frames(self) -> list[DepthFrame]:
        with self._lock:
            return list(self._frames)


def _camera(cfg: Config, name: str, config_path: Path) -> CameraConfig:
    by_name = {cam.name: cam for cam in cfg.cameras}
    cam = by_name.get(name)
    if cam is None:
        raise RecordError(f"{config_path}: no camera {name!r} (cameras: {', '.join(by_name)})")
    if cam.source_kind() == "recording":
        raise RecordError(f"camera {name!r} replays a recording ({cam.source}); record a live camera or a video")
    return cam


def _check_output(out: Path) -> Path:
    """The temporary file the recording is written to before it replaces ``out``; raises when ``out`` cannot
    be written (checked now, not after the recording)."""
    if out.suffix.lower() != RECORDING_SUFFIX:
        raise RecordError(f"{out}: the output must end in {RECORDING_SUFFIX} (cameras replay .npz sources)")
    if out.is_dir():
        raise RecordError(f"{out}: is a directory")
    part = out.with_name(f".{out.name}.part{RECORDING_SUFFIX}")
    try:
        with part.open("wb"):
            pass
        part.unlink()
    except OSError as exc:
        raise RecordError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return part


def record(
    config_path: Path,
    camera: str,
    seconds: float,
    out: Path,
    *,
    images: bool = True,
    progress: TextIO | None = None,
    interrupted: Callable[[], bool] = lambda: False,
) -> Progress:
    """Record ``seconds`` of ``camera`` (a name in the config at ``config_path``) to ``out`` (.npz).

    ``progress``: where the updating progress line goes (a ``\\r``-redrawn line, then a newline); None = silent.
    ``interrupted``: polled while recording; True ends it early and keeps what was recorded. Returns what was
    written. Raises ``RecordError`` (one line) for an unknown camera, an unwritable output, a broken model, or
    a camera that delivers no frame within its ``open_timeout_s``.
    """
    try:
        # The model is checked when it is loaded, after the camera and the output: those errors come first.
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise RecordError(str(exc).splitlines()[0]) from None
    cam = _camera(cfg, camera, config_path)
    part = _check_output(out)
    try:
        engine = build_engine(cfg.model)
    except ModelError as exc:
        raise RecordError(str(exc)) from None
    fixed = cfg.model.fixed_input_size()
    requests = engine.requests(fixed or engine.info.ir_input_size)
    keeper = _Keeper(seconds, images)
    capture_stop, pipeline_stop = threading.Event(), threading.Event()
    hub = FrameHub()
    pipeline = Pipeline(
        hub, engine, {cam.name: keeper}, max_in_flight=requests + OUTPUT_QUEUE_FRAMES, stop=pipeline_stop
    )
    reader = CameraReader(cam, hub, Resizer(engine.info.spec, fixed), capture_stop)
    pipeline.start()
    reader.start()
    started = time.monotonic()
    try:
        _wait(cam, reader, keeper, started, progress, interrupted)
    finally:
        capture_stop.set()
        reader.join(_STOP_S)
        pipeline.stop(_STOP_S)
        if progress is not None:
            print(file=progress, flush=True)
    frames = keeper.frames()
    if not frames:
        raise RecordError(f"camera {cam.name!r}: no frame was recorded")
    try:
        save_recording(part, frames)
        os.replace(part, out)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise RecordError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return keeper.progress()


def _wait(
    cam: CameraConfig,
    reader: CameraReader,
    keeper: _Keeper,
    started: float,
    progress: TextIO | None,
    interrupted: Callable[[], bool],
) -> None:
    """Until the keeper is full, the source ends, or ``interrupted``; redraws the progress line meanwhile."""
    while not keeper.full.wait(_PROGRESS_S):
        now = keeper.progress()
        if progress is not None:
            _redraw(progress, now.line(cam.name))
        state = reader.state()
        if state.state in ("ended", "stopped") or interrupted():
            return
        if now.frames == 0 and state.frames_read == 0 and time.monotonic() - started > cam.open_timeout_s:
            why = f": {state.last_error}" if state.last_error else ""
            raise RecordError(f"camera {cam.name!r}: no frame within its open timeout ({cam.open_timeout_s:g} s){why}")
    if progress is not None:
        _redraw(progress, keeper.progress().line(cam.name))


def _redraw(stream: TextIO, line: str) -> None:
    # Padded so that a shorter line ("9.9 fps" after "10.0 fps") leaves nothing of the longer one behind.
    print(f"\r{line:<{_LINE_WIDTH}}", end="", file=stream, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-depth record", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-c", "--config", type=Path, default=Path("/etc/edge-depth/edge-depth.yaml"))
    parser.add_argument("--camera", required=True, help="name of the camera in the config")
    parser.add_argument("--seconds", type=_positive_float, required=True, help="how long to record (camera time)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the recording to write (.npz)")
    parser.add_argument(
        "--no-images",
        action="store_true",
        help="store black images (depth only): the replaying camera needs alerts.health.enabled: false",
    )
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not 0 < value <= _MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {_MAX_SECONDS:g}, got {text}")
    return value


def main(argv: list[str]) -> int:
    """``edge-depth record``: 0 and a summary line on stdout, or 2 and one error line on stderr. Ctrl-C (or
    SIGTERM) ends the recording early and keeps what was recorded."""
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        done = record(
            args.config,
            args.camera,
            args.seconds,
            args.out,
            images=not args.no_images,
            progress=sys.stderr,
            interrupted=stop.is_set,
        )
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    kind = "without images" if args.no_images else "with images"
    print(f"{args.out}: {done.frames} frames, {done.seconds:.1f} s, {done.fps:.1f} fps, {kind}")
    return 0
