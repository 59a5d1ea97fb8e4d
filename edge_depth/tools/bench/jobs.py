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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from edge_depth.tools.bench.common import TOPIC_PREFIX, TORCH_THREADS, BenchError, say
from edge_depth.tools.bench.procfs import Samples, cpu_pct, status_mb, thread_cpu_s
from edge_depth.tools.bench.results import (
    LoopResult,
    Memory,
    PipelineResult,
    PipelineWindow,
    RawResult,
    StartupResult,
    StartupRun,
    TorchResult,
    Window,
    percentile,
)

if TYPE_CHECKING:
    from edge_depth.config.schema import Config
    from edge_depth.frames import DepthFrame
    from edge_depth.mqtt.client import MqttPublisher
    from edge_depth.outputs.camera import CameraOutput
    from edge_depth.stages import Reader

_MIN_TORCH_FRAMES = 5  # per repetition, however long they take
_STALL_S = 60.0  # a run without one processed frame for this long has hung
_CONNECT_S = 10.0  # for the broker to accept the pipeline's MQTT connection
_STOP_S = 10.0  # for the stages to stop at the end of a pipeline job
_LEARN_S = 2.0  # the bench's baseline learning (camera time)

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
    import cv2

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
    import cv2

    from edge_depth.model.preprocess import Resizer

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
    ``precision`` forces INFERENCE_PRECISION_HINT (``f32``), None leaves the plugin's choice. ``paced_fps``: one
    request at a time, started at this rate (a camera's pace) instead of a queue kept full."""

    model: str
    clip: str
    size: tuple[int, int]
    hint: str
    seconds: float
    repeat: int
    precision: str | None = None
    paced_fps: float | None = None


def raw_job(spec: RawSpec) -> RawResult:
    """An ``AsyncInferQueue`` of the hint's optimal size kept full for ``spec.seconds``, ``spec.repeat`` times
    after a warm-up, as ``benchmark_app`` does (FPS = completed requests / wall time; latency = each request's)."""
    import openvino as ov

    from edge_depth.model.contract import INPUT_NAME
    from edge_depth.model.engine import read_model

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
            if spec.paced_fps:
                # The cores idle between requests, as under a camera: what one inference costs from cold.
                queue.wait_all()
                time.sleep(max(0.0, started + (i + 1) / spec.paced_fps - time.perf_counter()))
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
    import torch

    from convert.synthetic import synthetic_model

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
    (width, height); ``warmup_frames`` and ``frames`` per repetition count all cameras together. ``sources``:
    one per camera instead of the clip (live streams)."""

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
    sources: tuple[str, ...] = ()
    mjpeg_clients: int = 0  # viewers of the console's MJPEG stream of the first camera during the run


def bench_alerts() -> dict[str, Any]:
    """A busy but plausible alert setup: baseline reference, two zones, an exclusion and fall detection. The empty
    scene is learned over 2 s rather than 5: runs are measured after it, so a shorter learning only saves time."""
    return {
        "reference": {"mode": "baseline", "baseline": {"learn_s": _LEARN_S}},
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
    from edge_depth.config.schema import Config

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
                    "source": spec.sources[i] if spec.sources else spec.clip,
                    "loop": not spec.sources,
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

    def __init__(self, cameras: list[str], capacity: int, stale_s: float | None = None) -> None:
        self._cond = threading.Condition()
        self._stale_s = stale_s
        self.stale = 0  # frames published later than ``stale_s`` after their capture
        self.total = 0
        self.per_camera = dict.fromkeys(cameras, 0)
        self._latency = np.zeros(capacity, dtype=np.float64)
        self._count = 0
        self._target: int | None = None

    def record(self, camera: str, latency_s: float) -> None:
        with self._cond:
            self.total += 1
            self.per_camera[camera] += 1
            if self._stale_s is not None and latency_s > self._stale_s:
                self.stale += 1
            if self._count < len(self._latency):
                self._latency[self._count] = latency_s * 1000.0
                self._count += 1
            if self._target is not None and self.total >= self._target:
                self._cond.notify_all()

    def wait_for(self, total: int, timeout: float) -> bool:
        with self._cond:
            self._target = total
            return self._cond.wait_for(lambda: self.total >= total, timeout)

    def mark(self) -> tuple[float, float, dict[str, int], dict[str, float]]:
        """(monotonic time, process CPU s, frames per camera, CPU s per stage) now, and a fresh latency record
        from here on."""
        with self._cond:
            self._count = 0
            return time.monotonic(), time.process_time(), dict(self.per_camera), thread_cpu_s()

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


class _MjpegViewers:
    """The daemon's stages with the web console over them, and ``clients`` HTTP viewers reading the first camera's
    MJPEG stream the whole run: the console's cost, measured as the daemon would pay it."""

    def __init__(self, cfg: Config, publisher: MqttPublisher, meter: _Meter, clients: int) -> None:
        from edge_depth.config.web import WebConfig
        from edge_depth.stages import build_stages, topics_of
        from edge_depth.web import DaemonTap, StagesView, WebServer

        tap = DaemonTap(topics_of(cfg), cfg.cameras)
        self.stages = build_stages(
            cfg, tap.publisher(publisher), wrap_output=lambda out: tap.wrap(_MeteredOutput(out, meter))
        )
        view = StagesView(
            self.stages,
            tap,
            cfg.cameras,
            camera_status=lambda name: self.stages.outputs[name].figures(),
            stats=dict,
            mqtt=publisher.stats,
            infer_size=cfg.model.fixed_input_size() or self.stages.engine.info.ir_input_size,
        )
        self._server = WebServer(WebConfig(), view, tap, port=0)
        self._server.start()
        self._stop = threading.Event()
        self.parts = 0
        url = f"http://127.0.0.1:{self._server.port}/api/cameras/{cfg.cameras[0].name}/stream.mjpeg"
        self._threads = [threading.Thread(target=self._view, args=(url,), daemon=True) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _view(self, url: str) -> None:
        import urllib.request

        with urllib.request.urlopen(url, timeout=30) as stream:
            while not self._stop.is_set():
                line = stream.readline()
                if not line:
                    return
                self.parts += line.startswith(b"--edge-depth-frame")

    def stop(self) -> None:
        self._stop.set()
        self._server.stop()
        say(f"    MJPEG viewer(s) received {self.parts} heatmaps")


def pipeline_job(spec: PipelineSpec) -> PipelineResult:
    """The stages ``build_stages`` makes of the bench's config, publishing to the bench's broker, measured over
    ``spec.repeat`` windows after ``spec.warmup_frames``."""
    from edge_depth.mqtt.client import MqttPublisher
    from edge_depth.stages import build_stages, topics_of

    cfg = bench_config(spec, client_id=f"edge-depth-bench-{os.getpid()}")
    stale_s = 1.0 / spec.fps_limit if spec.fps_limit else None
    meter = _Meter([cam.name for cam in cfg.cameras], capacity=spec.frames * 2 + 1000, stale_s=stale_s)
    publisher = MqttPublisher(cfg.mqtt, topics_of(cfg))
    publisher.start()
    try:
        if not publisher.connected.wait(_CONNECT_S):
            raise BenchError(
                f"MQTT broker {spec.mqtt_host}:{spec.mqtt_port} did not accept a connection within {_CONNECT_S:g} s"
            )
        viewers = _MjpegViewers(cfg, publisher, meter, spec.mjpeg_clients) if spec.mjpeg_clients else None
        if viewers is not None:
            stages = viewers.stages
        else:
            stages = build_stages(cfg, publisher, wrap_output=lambda out: _MeteredOutput(out, meter))
        first = next(iter(stages.readers.values()))
        samples = Samples()
        windows: list[PipelineWindow] = []
        try:
            stages.start()
            _wait_frames(meter, spec.warmup_frames, Samples(), first)
            _wait_learned(stages.outputs.values(), meter, first)
            samples.take()  # memory growth counts from the end of the warm-up
            counts0, stale0 = _capture_counts(stages.readers.values()), meter.stale
            label = f"{spec.cameras} camera{'s' if spec.cameras > 1 else ''}"
            for rep in range(spec.repeat):
                windows.append(_measure_window(meter, spec.frames, samples, first))
                say(f"    {label} rep {rep + 1}/{spec.repeat}: {windows[-1].fps:.1f} FPS")
            counts1, stale1 = _capture_counts(stages.readers.values()), meter.stale
        finally:
            if viewers is not None:
                viewers.stop()
            stages.stop(time.monotonic() + _STOP_S)
    finally:
        publisher.stop(3)
    frames_done = sum(out.frames for out in stages.outputs.values())
    heatmaps = sum(out.heatmaps for out in stages.outputs.values())
    m = Window.median([Window(w.fps, w.p50_ms, w.p95_ms, w.cpu_pct) for w in windows])
    rss0, rss1 = samples.rss_mb[0], samples.rss_mb[-1]
    middle = sorted(windows, key=lambda w: w.fps)[len(windows) // 2]
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
        thread_ms=middle.thread_ms,
        infer_p50_ms=next(iter(stages.outputs.values())).infer_ms.percentile(50),
        dropped=counts1[0] - counts0[0],
        stale=stale1 - stale0,
        skipped=counts1[1] - counts0[1],
    )


def _capture_counts(readers: Iterable[Reader]) -> tuple[int, int]:
    """(dropped, skipped) frames of all cameras so far."""
    states = [reader.state() for reader in readers]
    return sum(s.frames_dropped for s in states), sum(s.frames_skipped for s in states)


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


def _wait_learned(outputs: Iterable[CameraOutput], meter: _Meter, reader: Reader) -> None:
    """Wait, frame by frame, until every camera's baseline is learned. Until then the alerts only learn (no
    zones, no falls): a window measured then would leave most of their cost out of the daemon's own work."""
    outputs = list(outputs)
    deadline = time.monotonic() + _STALL_S
    while not all(out.alerts.baseline_ready for out in outputs):
        if time.monotonic() > deadline:
            late = next(out for out in outputs if not out.alerts.baseline_ready)
            reason = late.health.reason if late.health is not None else None
            raise BenchError(
                f"camera {late.cfg.name}: baseline not learned after {_STALL_S:g} s (depth health: {reason or 'ok'})"
            )
        _wait_frames(meter, 1, Samples(), reader)


def _measure_window(meter: _Meter, frames: int, samples: Samples, reader: Reader) -> PipelineWindow:
    t0, cpu0, counts0, threads0 = meter.mark()
    _wait_frames(meter, frames, samples, reader)
    t1, cpu1, counts1, threads1 = time.monotonic(), time.process_time(), dict(meter.per_camera), thread_cpu_s()
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
        thread_ms=_per_frame_ms(threads0, threads1, sum(counts1.values()) - sum(counts0.values())),
    )


def _per_frame_ms(before: dict[str, float], after: dict[str, float], frames: int) -> dict[str, float]:
    """CPU ms per frame of each stage between two ``thread_cpu_s`` snapshots, busiest first. A thread that
    started meanwhile counts from zero; one that ended is lost (the pipeline's threads live through a window).
    The kernel counts CPU in ticks (10 ms), so a light stage in a short window can show 0: the daemon's own
    stages are listed even then, OpenVINO's and the decoder's threads only when they used any."""
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    ms = {name: 1000.0 * s / max(frames, 1) for name, s in spent.items() if s > 0 or not name.startswith("native:")}
    return dict(sorted(ms.items(), key=lambda item: -item[1]))


# ------------------------------------------------------------------------------- decoding alone, peers' loop


@dataclass(frozen=True, slots=True)
class LoopSpec:
    """A loop over ``frames`` frames of the clip (looping), ``repeat`` times after a warm-up of ``frames // 4``.

    Decoding alone when ``model`` is None; else the peers' loop on that IR at ``size`` (width, height), a
    heatmap of ``heatmap_height`` px every ``heatmap_every`` th frame at JPEG ``jpeg_quality``."""

    clip: str
    frames: int
    repeat: int
    model: str | None = None
    size: tuple[int, int] = (0, 0)
    heatmap_every: int = 5
    heatmap_height: int = 270
    jpeg_quality: int = 80


def _open_clip(clip: str) -> Any:
    """The clip opened as the daemon opens a camera's file (``open_source``: same backend and options)."""
    from edge_depth.capture.sources import open_source
    from edge_depth.config.schema import CameraConfig

    return open_source(CameraConfig.model_validate({"name": "cam0", "source": clip, "loop": True}))


def _loop_windows(step: Callable[[], None], spec: LoopSpec) -> LoopResult:
    """``step`` (one frame) timed: a warm-up, then ``spec.repeat`` windows of ``spec.frames`` frames."""

    def window(count: int) -> Window:
        latencies: list[float] = []
        started, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(count):
            t = time.perf_counter()
            step()
            latencies.append((time.perf_counter() - t) * 1000.0)
        return _window(latencies, started, cpu0)

    window(max(10, spec.frames // 4))
    runs = tuple(window(spec.frames) for _ in range(spec.repeat))
    m = Window.median(runs)
    return LoopResult(m.fps, m.p50_ms, m.p95_ms, m.cpu_pct, runs, status_mb("VmHWM"))


def decode_job(spec: LoopSpec) -> LoopResult:
    """The clip decoded as a camera's reader does (same opener, same rewind at the end), nothing else: the
    decoder's share of the pipeline's CPU time."""
    import cv2

    cap = _open_clip(spec.clip)

    def step() -> None:
        ok, _ = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, _ = cap.read()
        if not ok:
            raise BenchError(f"{spec.clip}: no frame could be decoded")

    try:
        return _loop_windows(step, spec)
    finally:
        cap.release()


def peers_job(spec: LoopSpec) -> LoopResult:
    """The loop of OpenVINO's MiDaS notebook and Open Model Zoo's monodepth demo, on the same IR and clip: read,
    resize (the daemon's filter), synchronous inference (the plugin's default hint), min-max normalisation, a
    colour map; every ``heatmap_every`` th frame the colour image resized to the heatmap's size and JPEG-encoded.
    One thread: what a plain script gets."""
    import cv2
    import openvino as ov

    from edge_depth.model.contract import INPUT_NAME
    from edge_depth.model.engine import read_model
    from edge_depth.model.preprocess import Resizer

    if spec.model is None:
        raise BenchError("the peers' loop needs a model")
    core = ov.Core()
    model = read_model(core, Path(spec.model))
    w, h = spec.size
    model.reshape({INPUT_NAME: [1, h, w, 3]})
    compiled = core.compile_model(model, "CPU")
    output = compiled.output(0)
    resize = Resizer(fixed_size=spec.size)
    # OpenCV's defaults, as the notebook opens it (FFmpeg decodes on every core, in the background of the
    # synchronous inference): the daemon's decoder settings are the daemon's, not the peers'.
    cap = cv2.VideoCapture(spec.clip, cv2.CAP_FFMPEG)
    count = itertools.count()
    src_w, src_h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out_size = (max(1, round(spec.heatmap_height * src_w / src_h)), spec.heatmap_height)

    def step() -> None:
        ok, image = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = cap.read()
        if not ok:
            raise BenchError(f"{spec.clip}: no frame could be decoded")
        depth = compiled({INPUT_NAME: resize(image)[np.newaxis]})[output][0]
        low, high = float(depth.min()), float(depth.max())
        grey = ((depth - low) * (255.0 / max(high - low, 1e-6))).astype(np.uint8)
        colour = cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)
        if next(count) % spec.heatmap_every == 0:
            big = cv2.resize(colour, out_size, interpolation=cv2.INTER_LINEAR)
            ok, _ = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])

    try:
        return _loop_windows(step, spec)
    finally:
        cap.release()


# ------------------------------------------------------------------------------------------------ start-up


@dataclass(frozen=True, slots=True)
class StartupSpec:
    """Starts of ``edge-depth run`` with one camera on ``clip``: ``repeat`` times, after ``prime`` starts
    that are not measured (to fill the cache). ``cache_dir``: the config's ``model.cache_dir`` (None: no cache)."""

    model: str
    clip: str
    input_size: tuple[int, int]
    cache: str
    cache_dir: str | None
    repeat: int
    prime: int
    mqtt_host: str
    mqtt_port: int
    timeout_s: float = 60.0


def startup_job(spec: StartupSpec) -> StartupResult:
    """Seconds from the daemon's process start to READY (its sd_notify datagram, on a socket of ours given as
    ``NOTIFY_SOCKET``) and to its first heatmap (``mosquitto_sub`` receiving one; None without it)."""
    import shutil
    import sys
    import tempfile

    import yaml

    from edge_depth.config.schema import Config
    from edge_depth.stages import topics_of

    config: dict[str, Any] = {
        "mqtt": {"host": spec.mqtt_host, "port": spec.mqtt_port, "topic_prefix": f"{TOPIC_PREFIX}-start"},
        "model": {"path": spec.model, "input_size": "{}x{}".format(*spec.input_size)},
        "cameras": [{"name": "cam0", "source": spec.clip, "loop": True, "heatmap": {"rate_hz": 5.0}}],
        "homeassistant": {"enabled": False},
        # The console starts with the daemon, as it does for users; on a free port, beside any other daemon.
        "web": {"port": _free_port()},
    }
    if spec.cache_dir is not None:
        config["model"]["cache_dir"] = spec.cache_dir
    topic = topics_of(Config.model_validate(config)).heatmap("cam0")
    # The daemon's own MQTT client refuses large incoming messages: a heatmap is received by Mosquitto's client.
    sub_tool = shutil.which("mosquitto_sub")
    runs: list[StartupRun] = []
    with tempfile.TemporaryDirectory(prefix="edge-depth-bench-") as tmp:
        path = Path(tmp) / "edge-depth.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if k not in ("CACHE_DIRECTORY", "NOTIFY_SOCKET")}
        daemon = [sys.executable, "-m", "edge_depth.cli", "run", "--config", str(path)]
        sub = None if sub_tool is None else [sub_tool, "-h", spec.mqtt_host, "-p", str(spec.mqtt_port), "-t", topic]
        for k in range(spec.prime + spec.repeat):
            run = _start_once(daemon, env, sub, Path(tmp) / f"start{k}", spec.timeout_s)
            if k >= spec.prime:
                runs.append(run)
    heatmaps = [r.first_heatmap_s for r in runs if r.first_heatmap_s is not None]
    return StartupResult(
        cache=spec.cache,
        ready_s=statistics.median(r.ready_s for r in runs),
        first_heatmap_s=statistics.median(heatmaps) if len(heatmaps) == len(runs) else None,
        runs=tuple(runs),
    )


def _start_once(
    daemon: list[str], env: dict[str, str], sub: list[str] | None, base: Path, timeout: float
) -> StartupRun:
    """One start of ``daemon``: READY on a socket at ``base`` given as ``NOTIFY_SOCKET``, then its first heatmap
    as ``sub`` (``mosquitto_sub`` on the heatmap topic) receives it; the daemon stopped after."""
    import socket
    import subprocess

    listener = None
    if sub is not None:
        listener = subprocess.Popen([*sub, "-C", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # subscribed before the daemon starts
    log_path = base.with_suffix(".log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(base.with_suffix(".sock")))
        started = time.monotonic()
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(
                daemon,
                env={**env, "NOTIFY_SOCKET": str(base.with_suffix(".sock"))},
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        try:
            ready = _wait_ready(sock, proc, started + timeout, log_path) - started
            first = None
            if listener is not None:
                try:
                    listener.wait(max(started + timeout - time.monotonic(), 0.1))
                    first = time.monotonic() - started if listener.returncode == 0 else None
                except subprocess.TimeoutExpired:
                    pass
        finally:
            for child in (proc, listener):
                if child is not None and child.poll() is None:
                    child.terminate()
                    try:
                        child.wait(15)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait()
    return StartupRun(ready, first)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_ready(sock: Any, proc: Any, deadline: float, log_path: Path) -> float:
    """``time.monotonic()`` when the daemon said READY=1 on ``sock``; ``BenchError`` (with the daemon's last log
    line) when it exited or the deadline passed first."""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(min(left, 0.5))
        try:
            message = sock.recv(4096).decode(errors="replace")
        except TimeoutError:
            if proc.poll() is not None:
                lines = log_path.read_text(errors="replace").strip().splitlines()
                last = f": {lines[-1]}" if lines else ""
                raise BenchError(f"the daemon exited with code {proc.returncode} before READY{last}") from None
            continue
        if "READY=1" in message.splitlines():
            return time.monotonic()
    raise BenchError("the daemon did not say READY in time")
