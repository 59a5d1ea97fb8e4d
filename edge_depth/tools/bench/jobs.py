"""The measurements, each run in a fresh child process (``run_in_child``): OpenVINO alone (``raw_job``), the
daemon's stages as ``build_stages`` wires them (``pipeline_job``) and PyTorch eager (``torch_job``).

A fresh process per measurement keeps its CPU time, peak RSS, threads and open files its own, not those of
earlier runs or of torch. OpenVINO, OpenCV and torch are imported inside the jobs, so that each child loads only
what its job needs.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from edge_depth.tools.bench.common import TOPIC_PREFIX, TORCH_THREADS, BenchError, say
from edge_depth.tools.bench.procfs import Samples, cpu_pct, status_mb
from edge_depth.tools.bench.results import (
    Memory,
    PipelineResult,
    PipelineWindow,
    RawResult,
    TorchResult,
    Window,
    percentile,
)

if TYPE_CHECKING:
    from edge_depth.config.schema import Config
    from edge_depth.frames import DepthFrame
    from edge_depth.outputs.camera import CameraOutput
    from edge_depth.stages import Reader

_MIN_TORCH_FRAMES = 5  # per repetition, however long they take
_STALL_S = 60.0  # a run without one processed frame for this long has hung
_CONNECT_S = 10.0  # for the broker to accept the pipeline's MQTT connection
_STOP_S = 10.0  # for the stages to stop at the end of a pipeline job

S = TypeVar("S")
R = TypeVar("R")


# ------------------------------------------------------------------------------------------ child processes


@dataclass(frozen=True, slots=True)
class _Failure:
    """What a child sends instead of its result: the exception as one line."""

    message: str


def _child_entry(conn: Connection, job: Callable[[S], R], spec: S) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result: R | _Failure
    try:
        result = job(spec)
    except Exception as exc:  # reported by the parent as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result = _Failure(f"{type(exc).__name__}: {first}")
    conn.send(result)
    conn.close()


def run_in_child(job: Callable[[S], R], spec: S, *, timeout: float) -> R:
    """``job(spec)`` in a fresh interpreter (spawned); its result, or ``BenchError`` with the child's error."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_entry, args=(sender, job, spec), name=f"bench-{job.__name__}")
    proc.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise BenchError(f"{job.__name__} did not finish within {timeout:.0f} s")
        result: R | _Failure = receiver.recv()
    except EOFError:
        proc.join(5)
        raise BenchError(f"{job.__name__} died (exit code {proc.exitcode}) without a result") from None
    finally:
        receiver.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if isinstance(result, _Failure):
        raise BenchError(f"{job.__name__}: {result.message}")
    return result


# ------------------------------------------------------------------------------------------------ frames


def clip_size(clip: str) -> tuple[int, int]:
    """The video's (width, height); ``BenchError`` when it cannot be read."""
    import cv2  # noqa: PLC0415

    cap = cv2.VideoCapture(clip, cv2.CAP_FFMPEG)
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise BenchError(f"{clip}: cannot read the video's frame size")
    return w, h


def _clip_frames(clip: str, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """The clip's first ``count`` frames resized as the daemon does: (h, w, 3) uint8 BGR."""
    import cv2  # noqa: PLC0415

    from edge_depth.model.preprocess import Resizer  # noqa: PLC0415

    resize = Resizer(fixed_size=size)
    cap = cv2.VideoCapture(clip, cv2.CAP_FFMPEG)
    frames: list[np.ndarray] = []
    try:
        while len(frames) < count:
            ok, image = cap.read()
            if not ok:
                break
            frames.append(resize(image))
    finally:
        cap.release()
    if not frames:
        raise BenchError(f"{clip}: no frame could be decoded")
    return frames


def _window(latencies: list[float], started: float, cpu0: float) -> Window:
    """The figures of a measuring window that began at ``started`` (perf_counter) and ``cpu0`` (process_time)."""
    wall = time.perf_counter() - started
    return Window(
        fps=len(latencies) / wall,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        cpu_pct=cpu_pct(time.process_time() - cpu0, wall),
    )


# ------------------------------------------------------------------------------------------ raw OpenVINO


@dataclass(frozen=True, slots=True)
class RawSpec:
    """OpenVINO alone on ``model`` at ``size`` (width, height) with ``hint``, ``seconds`` per repetition;
    ``precision`` forces INFERENCE_PRECISION_HINT (``f32``), None leaves the plugin's choice."""

    model: str
    clip: str
    size: tuple[int, int]
    hint: str
    seconds: float
    repeat: int
    precision: str | None = None


def raw_job(spec: RawSpec) -> RawResult:
    """An ``AsyncInferQueue`` of the hint's optimal size kept full for ``spec.seconds``, ``spec.repeat`` times
    after a warm-up, as ``benchmark_app`` does (FPS = completed requests / wall time; latency = each request's)."""
    import openvino as ov  # noqa: PLC0415

    from edge_depth.model.contract import INPUT_NAME  # noqa: PLC0415
    from edge_depth.model.engine import read_model  # noqa: PLC0415

    size = spec.size
    frames = _clip_frames(spec.clip, size, 32)
    core = ov.Core()
    model = read_model(core, Path(spec.model))
    model.reshape({INPUT_NAME: [1, size[1], size[0], 3]})
    config: dict[str, Any] = {"PERFORMANCE_HINT": spec.hint}
    if spec.precision:
        config["INFERENCE_PRECISION_HINT"] = spec.precision
    compiled = core.compile_model(model, "CPU", config)
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, requests)
    latencies: list[float] = []
    queue.set_callback(lambda request, _: latencies.append(request.latency))
    inputs = [{INPUT_NAME: f[np.newaxis]} for f in frames]

    def window(duration: float) -> Window:
        latencies.clear()
        started, cpu0 = time.perf_counter(), time.process_time()
        for i in itertools.count():
            queue.start_async(inputs[i % len(inputs)], None)
            if time.perf_counter() - started >= duration:
                break
        queue.wait_all()
        return _window(latencies, started, cpu0)

    window(max(0.5, spec.seconds / 2))
    runs = tuple(window(spec.seconds) for _ in range(spec.repeat))
    m = Window.median(runs)
    return RawResult(
        fps=m.fps,
        p50_ms=m.p50_ms,
        p95_ms=m.p95_ms,
        cpu_pct=m.cpu_pct,
        runs=runs,
        requests=requests,
        streams=int(compiled.get_property("NUM_STREAMS")),
        inference_precision=compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
        peak_rss_mb=status_mb("VmHWM"),
    )


# ------------------------------------------------------------------------------------------ PyTorch eager


@dataclass(frozen=True, slots=True)
class TorchSpec:
    """PyTorch eager on the clip's frames at ``size`` (width, height), ``seconds`` per repetition."""

    clip: str
    size: tuple[int, int]
    seconds: float
    repeat: int


def torch_job(spec: TorchSpec) -> TorchResult:
    """PyTorch eager MiDaS small (synthetic weights: speed does not depend on them), one frame at a time,
    normalisation included as the IR includes it."""
    import torch  # noqa: PLC0415

    from convert.synthetic import synthetic_model  # noqa: PLC0415

    torch.set_num_threads(TORCH_THREADS)
    model = synthetic_model().eval()
    frames = _clip_frames(spec.clip, spec.size, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def infer(bgr: np.ndarray) -> None:
        rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1)[None].float() / 255.0
        model((rgb - mean) / std)

    def window(duration: float) -> Window:
        latencies: list[float] = []
        started, cpu0 = time.perf_counter(), time.process_time()
        for i in itertools.count():
            t = time.perf_counter()
            infer(frames[i % len(frames)])
            latencies.append((time.perf_counter() - t) * 1000.0)
            if i + 1 >= _MIN_TORCH_FRAMES and time.perf_counter() - started >= duration:
                break
        return _window(latencies, started, cpu0)

    with torch.inference_mode():
        window(max(0.5, spec.seconds / 2))
        runs = tuple(window(spec.seconds) for _ in range(spec.repeat))
    m = Window.median(runs)
    return TorchResult(
        fps=m.fps,
        p50_ms=m.p50_ms,
        p95_ms=m.p95_ms,
        cpu_pct=m.cpu_pct,
        runs=runs,
        threads=TORCH_THREADS,
        peak_rss_mb=status_mb("VmHWM"),
    )


# ------------------------------------------------------------------------------------------ the pipeline


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """One run of the daemon's stages: ``cameras`` file cameras on ``clip``, looping, at ``input_size``
    (width, height); ``warmup_frames`` and ``frames`` per repetition count all cameras together."""

    model: str
    clip: str
    input_size: tuple[int, int]
    cameras: int
    hint: str
    realtime: bool
    fps_limit: float | None
    heatmap_hz: float
    warmup_frames: int
    frames: int
    repeat: int
    mqtt_host: str
    mqtt_port: int


def bench_alerts() -> dict[str, Any]:
    """A busy but plausible alert setup: baseline reference, two zones, an exclusion and fall detection."""
    return {
        "reference": {"mode": "baseline"},
        "zones": [
            {"name": "path", "polygon": [[0.3, 0.55], [0.7, 0.55], [0.9, 1.0], [0.1, 1.0]]},
            {"name": "left", "polygon": [[0.0, 0.4], [0.3, 0.4], [0.3, 1.0], [0.0, 1.0]]},
        ],
        "exclusions": [{"name": "sky", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.3], [0.0, 0.3]]}],
        "fall": {"enabled": True},
    }


def bench_config(spec: PipelineSpec, client_id: str) -> Config:
    """The daemon's config for a run: the model with the run's hint and the raw runs' input size (so that both
    compile the same shape, before any frame flows), the cameras on the clip, the bench's broker and alerts."""
    from edge_depth.config.schema import Config  # noqa: PLC0415

    return Config.model_validate(
        {
            "mqtt": {
                "host": spec.mqtt_host,
                "port": spec.mqtt_port,
                "client_id": client_id,
                "topic_prefix": TOPIC_PREFIX,
            },
            "model": {
                "path": spec.model,
                "performance_hint": spec.hint,
                "input_size": "{}x{}".format(*spec.input_size),
            },
            "cameras": [
                {
                    "name": f"cam{i}",
                    "source": spec.clip,
                    "loop": True,
                    "realtime": spec.realtime,
                    "fps_limit": spec.fps_limit,
                    "heatmap": {"rate_hz": spec.heatmap_hz},
                    "alerts": bench_alerts(),
                }
                for i in range(spec.cameras)
            ],
            "homeassistant": {"enabled": False},
        }
    )


class _Meter:
    """Counts processed frames per camera and keeps their latencies (ms); written by the output worker only."""

    def __init__(self, cameras: list[str], capacity: int) -> None:
        self._cond = threading.Condition()
        self.total = 0
        self.per_camera = dict.fromkeys(cameras, 0)
        self._latency = np.zeros(capacity, dtype=np.float64)
        self._count = 0
        self._target: int | None = None

    def record(self, camera: str, latency_s: float) -> None:
        with self._cond:
            self.total += 1
            self.per_camera[camera] += 1
            if self._count < len(self._latency):
                self._latency[self._count] = latency_s * 1000.0
                self._count += 1
            if self._target is not None and self.total >= self._target:
                self._cond.notify_all()

    def wait_for(self, total: int, timeout: float) -> bool:
        with self._cond:
            self._target = total
            return self._cond.wait_for(lambda: self.total >= total, timeout)

    def mark(self) -> tuple[float, float, dict[str, int]]:
        """(monotonic time, process CPU s, frames per camera) now, and a fresh latency record from here on."""
        with self._cond:
            self._count = 0
            return time.monotonic(), time.process_time(), dict(self.per_camera)

    def latencies(self) -> np.ndarray:
        with self._cond:
            return self._latency[: self._count].copy()


class _MeteredOutput:
    """The camera's real ``CameraOutput`` (heatmaps, alerts, publishing); then the frame counts as done."""

    def __init__(self, output: CameraOutput, meter: _Meter) -> None:
        self.output = output
        self._meter = meter

    def handle(self, result: DepthFrame) -> None:
        self.output.handle(result)
        self._meter.record(result.camera, time.monotonic() - result.captured_mono)


def pipeline_job(spec: PipelineSpec) -> PipelineResult:
    """The stages ``build_stages`` makes of the bench's config, publishing to the bench's broker, measured over
    ``spec.repeat`` windows after ``spec.warmup_frames``."""
    from edge_depth.mqtt.client import MqttPublisher  # noqa: PLC0415
    from edge_depth.stages import build_stages, topics_of  # noqa: PLC0415

    cfg = bench_config(spec, client_id=f"edge-depth-bench-{os.getpid()}")
    meter = _Meter([cam.name for cam in cfg.cameras], capacity=spec.frames * 2 + 1000)
    publisher = MqttPublisher(cfg.mqtt, topics_of(cfg))
    publisher.start()
    try:
        if not publisher.connected.wait(_CONNECT_S):
            raise BenchError(
                f"MQTT broker {spec.mqtt_host}:{spec.mqtt_port} did not accept a connection within {_CONNECT_S:g} s"
            )
        stages = build_stages(cfg, publisher, wrap_output=lambda out: _MeteredOutput(out, meter))
        first = next(iter(stages.readers.values()))
        samples = Samples()
        windows: list[PipelineWindow] = []
        try:
            stages.start()
            _wait_frames(meter, spec.warmup_frames, Samples(), first)
            samples.take()  # memory growth counts from the end of the warm-up
            label = f"{spec.cameras} camera{'s' if spec.cameras > 1 else ''}"
            for rep in range(spec.repeat):
                windows.append(_measure_window(meter, spec.frames, samples, first))
                say(f"    {label} rep {rep + 1}/{spec.repeat}: {windows[-1].fps:.1f} FPS")
        finally:
            stages.stop(time.monotonic() + _STOP_S)
    finally:
        publisher.stop(3)
    frames_done = sum(out.frames for out in stages.outputs.values())
    heatmaps = sum(out.heatmaps for out in stages.outputs.values())
    m = Window.median([Window(w.fps, w.p50_ms, w.p95_ms, w.cpu_pct) for w in windows])
    rss0, rss1 = samples.rss_mb[0], samples.rss_mb[-1]
    return PipelineResult(
        fps=m.fps,
        p50_ms=m.p50_ms,
        p95_ms=m.p95_ms,
        cpu_pct=m.cpu_pct,
        fairness=statistics.median(w.fairness for w in windows),
        per_camera_fps=windows[len(windows) // 2].per_camera_fps,
        runs=tuple(windows),
        requests=stages.requests,
        frames=frames_done,
        frames_per_heatmap=frames_done / heatmaps if heatmaps else None,
        peak_rss_mb=status_mb("VmHWM"),
        memory=Memory(
            rss_start_mb=rss0,
            rss_end_mb=rss1,
            rss_growth_pct=100.0 * (rss1 - rss0) / rss0,
            threads_start=samples.threads[0],
            threads_end=samples.threads[-1],
            fds_start=samples.fds[0],
            fds_end=samples.fds[-1],
            samples=len(samples.rss_mb),
        ),
    )


def _wait_frames(meter: _Meter, count: int, samples: Samples, reader: Reader) -> None:
    """Wait until ``count`` more frames are processed, sampling memory each second; ``BenchError`` on a hang."""
    target = meter.total + count
    last_total, last_progress = meter.total, time.monotonic()
    while not meter.wait_for(target, 1.0):
        samples.take()
        now = time.monotonic()
        if meter.total != last_total:
            last_total, last_progress = meter.total, now
        elif now - last_progress > _STALL_S:
            state = reader.state()
            raise BenchError(
                f"pipeline stalled at {meter.total} frames (camera {state.state}: {state.last_error or 'no error'})"
            )
    samples.take()


def _measure_window(meter: _Meter, frames: int, samples: Samples, reader: Reader) -> PipelineWindow:
    t0, cpu0, counts0 = meter.mark()
    _wait_frames(meter, frames, samples, reader)
    t1, cpu1, counts1 = time.monotonic(), time.process_time(), dict(meter.per_camera)
    latency = meter.latencies()
    wall = t1 - t0
    per_camera = {name: (counts1[name] - counts0[name]) / wall for name in counts0}
    rates = list(per_camera.values())
    return PipelineWindow(
        fps=sum(rates),
        per_camera_fps=per_camera,
        fairness=min(rates) / (sum(rates) / len(rates)) if sum(rates) else 0.0,
        p50_ms=percentile(latency, 50),
        p95_ms=percentile(latency, 95),
        cpu_pct=cpu_pct(cpu1 - cpu0, wall),
        wall_s=wall,
    )
