"""The daemon's stages built from a config, in one place: ``Service.run`` and ``edge-depth bench`` both use it, so
the benchmark measures the wiring the daemon really runs.

Built, not started: ``Stages.start`` starts the pipeline and then the readers, ``Stages.stop`` stops them in order.
The MQTT connection is the caller's: the daemon publishes status and discovery on it, the bench waits for it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2

from edge_depth.alerts.camera import CameraAlerts
from edge_depth.capture.hub import FrameHub
from edge_depth.capture.reader import CameraReader, CaptureState
from edge_depth.capture.replay import Recording, ReplayCamera
from edge_depth.config.schema import Config, ModelConfig
from edge_depth.config.sources import classify_source
from edge_depth.model.engine import DepthEngine
from edge_depth.model.preprocess import Resizer
from edge_depth.mqtt.topics import Topics
from edge_depth.outputs.camera import CameraOutput
from edge_depth.outputs.meters import Publisher
from edge_depth.pipeline import FrameHandler, Pipeline

# Frames between dispatch and the end of output work, beyond the requests in flight: enough that the output
# worker always has the next result queued while the model runs, few enough that memory stays flat.
OUTPUT_QUEUE_FRAMES = 4
CACHE_SUBDIR = "openvino"  # under systemd's $CACHE_DIRECTORY: the compiled-model cache's own directory
_READERS_RESERVE_S = 0.5  # of the stop budget, what is left for the pipeline once the readers are joined


log = logging.getLogger(__name__)


class StartupError(Exception):
    """Something named in the config cannot be used (a broken recording, unreadable TLS files). One line."""


class Reader(Protocol):
    """One camera's frame source: a ``CameraReader``, or a ``ReplayCamera`` playing a depth recording."""

    def start(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...

    def state(self) -> CaptureState: ...


@dataclass(frozen=True, slots=True)
class Stages:
    """Capture, inference and outputs of every enabled camera, wired and not yet started.

    ``outputs`` and ``readers`` are keyed by camera name, in config order. ``requests``: inference requests
    compiled for the configured input size (or the IR's own with ``input_size: auto``). ``capture_stop`` ends
    the readers, ``pipeline_stop`` the dispatcher (``Pipeline.stop`` sets it).
    """

    engine: DepthEngine
    hub: FrameHub
    resizer: Resizer
    pipeline: Pipeline
    outputs: Mapping[str, CameraOutput]
    readers: Mapping[str, Reader]
    requests: int
    capture_stop: threading.Event
    pipeline_stop: threading.Event

    def start(self) -> None:
        """The pipeline first, so that the readers' first frames find it running."""
        self.pipeline.start()
        for reader in self.readers.values():
            reader.start()

    def stop(self, deadline: float) -> None:
        """Ordered, by ``deadline`` (``time.monotonic()``): capture ends, requests in flight finish and their
        outputs run, then the output worker ends."""
        self.capture_stop.set()
        for reader in self.readers.values():
            reader.join(timeout=max(0.1, deadline - time.monotonic() - _READERS_RESERVE_S))
        self.pipeline.stop(timeout=max(0.1, deadline - time.monotonic()))


def topics_of(cfg: Config) -> Topics:
    """The topics of a config's prefixes."""
    return Topics(cfg.mqtt.topic_prefix, cfg.homeassistant.discovery_prefix)


def model_cache_dir(model: ModelConfig, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where compiled models are cached: ``model.cache_dir`` when set; else ``openvino`` under systemd's
    ``$CACHE_DIRECTORY`` (``CacheDirectory=edge-depth``: writable under ``ProtectSystem=strict``, kept across
    restarts); else None (no cache). Of several directories in ``$CACHE_DIRECTORY`` the first is used."""
    if model.cache_dir is not None:
        return model.cache_dir
    first = environ.get("CACHE_DIRECTORY", "").split(":")[0]
    return Path(first) / CACHE_SUBDIR if first else None


def build_engine(model: ModelConfig) -> DepthEngine:
    """The OpenVINO engine of ``model``; raises ``ModelError`` naming the IR (or ``model.input_size``) when it
    cannot be used. Compiled models are cached in :func:`model_cache_dir`."""
    cache_dir = model_cache_dir(model)
    if cache_dir is not None and model.cache_dir is None:
        try:
            cache_dir.mkdir(exist_ok=True)
        except OSError as exc:  # systemd made $CACHE_DIRECTORY; a cache is worth a warning, not a failed start
            log.warning("no compiled-model cache in %s: %s", cache_dir, exc)
            cache_dir = None
    return DepthEngine(
        model.path,
        device=model.device,
        hint=model.performance_hint,
        infer_requests=model.infer_requests,
        inference_precision=model.inference_precision,
        cache_dir=cache_dir,
        input_size=model.fixed_input_size(),
    )


def build_stages(
    cfg: Config,
    publisher: Publisher,
    *,
    engine: DepthEngine | None = None,
    state_dir: Path | None = None,
    on_state: Callable[[str, CaptureState], None] | None = None,
    on_health_change: Callable[[str], None] | None = None,
    wrap_output: Callable[[CameraOutput], FrameHandler] | None = None,
) -> Stages:
    """Every enabled camera of ``cfg`` wired from capture to ``publisher``; the model compiled, nothing started.

    ``engine``: one already made from ``cfg.model`` (the daemon makes it first, so a broken IR is the first
    error reported); built here when None. ``state_dir``: where baselines are kept across restarts.
    ``on_state(camera, state)``: a reader's capture state changed (from its thread). ``on_health_change(camera)``:
    a camera's depth turned unreliable or recovered (from the output worker). ``wrap_output``: what the pipeline
    calls instead of each ``CameraOutput`` (the bench meters frames with it); ``Stages.outputs`` stays unwrapped.
    Raises ``StartupError`` for a recording that cannot be read, ``ModelError`` for the IR.
    """
    # OpenCV's own thread pool, off. Every OpenCV call on the per-frame path works on a small image (the 256x128
    # model input, 32x64 alert grids, a heatmap): handing such work to the pool costs more than the work, and
    # its threads spin on the cores the model needs (measured, one camera at 25 FPS: 0.7 ms CPU a frame less).
    # Decoding threads are FFmpeg's own (``decoder_threads``), not this pool's.
    cv2.setNumThreads(1)
    engine = engine or build_engine(cfg.model)
    fixed = cfg.model.fixed_input_size()
    # Compile before any frame flows: a model the device cannot run fails now, not on the first frame.
    requests = engine.requests(fixed or engine.info.ir_input_size)
    topics = topics_of(cfg)
    cameras = [cam for cam in cfg.cameras if cam.enabled]
    outputs: dict[str, CameraOutput] = {}
    for cam in cameras:
        alerts = CameraAlerts(cam.name, cam.alerts, precision=engine.info.precision, state_dir=state_dir)
        outputs[cam.name] = CameraOutput(cam, topics, publisher, alerts, on_health_change=on_health_change)
    handlers: dict[str, FrameHandler] = (
        dict(outputs) if wrap_output is None else {name: wrap_output(out) for name, out in outputs.items()}
    )
    capture_stop, pipeline_stop = threading.Event(), threading.Event()
    hub = FrameHub()
    pipeline = Pipeline(hub, engine, handlers, max_in_flight=requests + OUTPUT_QUEUE_FRAMES, stop=pipeline_stop)
    resizer = Resizer(engine.info.spec, fixed)
    readers: dict[str, Reader] = {}
    for cam in cameras:
        if classify_source(cam.source) == "recording":
            try:
                recording = Recording(Path(str(cam.source)), camera=cam.name)
            except ValueError as exc:
                raise StartupError(f"cameras: {cam.name}: {exc}") from None
            readers[cam.name] = ReplayCamera(
                recording, pipeline.feed, capture_stop, loop=cam.loop, realtime=cam.realtime
            )
        else:
            changed = None if on_state is None else _named(on_state, cam.name)
            readers[cam.name] = CameraReader(cam, hub, resizer, capture_stop, on_state=changed)
    return Stages(
        engine=engine,
        hub=hub,
        resizer=resizer,
        pipeline=pipeline,
        outputs=outputs,
        readers=readers,
        requests=requests,
        capture_stop=capture_stop,
        pipeline_stop=pipeline_stop,
    )


def _named(on_state: Callable[[str, CaptureState], None], camera: str) -> Callable[[CaptureState], None]:
    def changed(state: CaptureState) -> None:
        on_state(camera, state)

    return changed
