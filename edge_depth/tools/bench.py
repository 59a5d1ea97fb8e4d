"""``edge-depth bench``: how fast the model runs alone, and how close the daemon comes to it.

For each IR (FP32, FP16 and INT8 of a model directory, or one ``--model``), at the input size the daemon
chooses for the clip (``auto_input_size``: 960x540 -> 256x128), in one run:

1. raw OpenVINO: LATENCY and THROUGHPUT hints with an ``AsyncInferQueue`` kept full, as ``benchmark_app``
   measures (FPS = completed requests / wall time; latency = each request's own);
2. the daemon's own classes end to end (``CameraReader`` on the file, ``FrameHub``, ``Resizer``,
   ``DepthEngine``, ``Pipeline``, ``CameraOutput`` with heatmaps for every 5th frame and alerts on every frame,
   ``MqttPublisher`` to a real Mosquitto): one and four cameras at maximum speed, one camera offered 15 FPS
   with the LATENCY hint, and a long one-camera run for memory, threads and open files;
3. PyTorch eager MiDaS small on the same frames, 2 threads (when torch is installed).

Every measurement runs in a fresh child process (``multiprocessing``, spawn), so that its CPU time, peak RSS,
threads and open files are its own and not those of earlier runs or of torch. Each one warms up first, then
measures; the table shows medians of the repetitions. Raw THROUGHPUT and the max-speed pipeline runs alternate
in rounds and their ratio is taken per round, because other load on a shared machine drifts over minutes;
CPU ms per frame (process CPU time / frames) is the figure that such load barely moves. Latency of the
pipeline is from the moment a frame is decoded to the moment its messages are handed to the MQTT client
(after heatmap and alerts).
"""

from __future__ import annotations

import argparse
import getpass
import importlib.metadata
import itertools
import json
import logging
import math
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

PRECISIONS = ("fp32", "fp16", "int8")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_CLIP = REPO / "tests" / "fixtures" / "video" / "solidWhiteRight.mp4"
DEFAULT_JSON = Path("bench-results") / "bench.json"
TOPIC_PREFIX = "edge-depth-bench"
HEATMAP_EVERY = 5  # a heatmap for every 5th frame, as the targets ask
OFFERED_FPS = 15.0
TORCH_THREADS = 2
_MIN_TORCH_FRAMES = 5  # per repetition, however long they take
_BROKER_START_S = 10.0
_STALL_S = 60.0  # a run without one processed frame for this long has hung

# The targets.
TARGET_PIPELINE_VS_RAW = 0.9
TARGET_INT8_VS_FP32 = 2.5
TARGET_INT8_VS_TORCH = 6.0
TARGET_FAIRNESS = 0.8
TARGET_LATENCY_VS_SINGLE = 1.5
TARGET_PEAK_RSS_MB = 400.0
TARGET_RSS_GROWTH_PCT = 5.0


class BenchError(Exception):
    """A benchmark that cannot run; the message is one line and names the culprit."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure: frames per pipeline repetition, seconds per raw/torch repetition, repetitions."""

    frames: int
    seconds: float
    repeat: int
    warmup_frames: int
    long_frames: int
    latency_frames: int
    cameras: tuple[int, ...]

    @staticmethod
    def make(args: argparse.Namespace) -> Plan:
        short = bool(args.short)
        return Plan(
            frames=args.frames or (150 if short else 1000),
            seconds=args.seconds or (1.0 if short else 5.0),
            repeat=args.repeat or (2 if short else 3),
            warmup_frames=30 if short else 100,
            long_frames=args.long_frames or (300 if short else 20_000),
            latency_frames=40 if short else 250,
            cameras=args.cameras,
        )


# ------------------------------------------------------------------------------------------ child processes


def _child_entry(conn: Connection, job: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = job(*args)
    except Exception as exc:  # reported by the parent as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result = {"error": f"{type(exc).__name__}: {first}"}
    conn.send(result)
    conn.close()


def run_in_child(job: Callable[..., dict[str, Any]], *args: Any, timeout: float) -> dict[str, Any]:
    """``job(*args)`` in a fresh interpreter; its result dict, or ``BenchError`` with the child's error."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_entry, args=(sender, job, args), name=f"bench-{job.__name__}")
    proc.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise BenchError(f"{job.__name__} did not finish within {timeout:.0f} s")
        result: dict[str, Any] = receiver.recv()
    except EOFError:
        proc.join(5)
        raise BenchError(f"{job.__name__} died (exit code {proc.exitcode}) without a result") from None
    finally:
        receiver.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if "error" in result:
        raise BenchError(f"{job.__name__}: {result['error']}")
    return result


# --------------------------------------------------------------------------------------- process figures


def _proc_count(what: str) -> int:
    """Entries of /proc/self/<what> (``task``: threads, ``fd``: open files)."""
    try:
        return len(os.listdir(f"/proc/self/{what}"))
    except OSError:
        return threading.active_count() if what == "task" else -1


def _status_mb(key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MB, from /proc/self/status."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource  # noqa: PLC0415 -- fallback off Linux: the peak only

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_pct(cpu_s: float, wall_s: float) -> float:
    """Process CPU time over wall time, as a percentage of all cores."""
    return 100.0 * cpu_s / max(wall_s, 1e-9) / (os.cpu_count() or 1)


def _pct(values: np.ndarray | list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def _window_figures(latencies: list[float], started: float, cpu0: float) -> dict[str, float]:
    """FPS, latency percentiles (ms) and CPU use of a measuring window that began at ``started``/``cpu0``."""
    wall = time.perf_counter() - started
    return {
        "fps": len(latencies) / wall,
        "p50_ms": _pct(latencies, 50),
        "p95_ms": _pct(latencies, 95),
        "cpu_pct": _cpu_pct(time.process_time() - cpu0, wall),
    }


def _clip_frames(clip: str, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """The clip's first ``count`` frames resized as the daemon does: (h, w, 3) uint8 BGR."""
    import cv2  # noqa: PLC0415

    from edge_depth.model.preprocess import Resizer  # noqa: PLC0415

    resize = Resizer(size)
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


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ raw OpenVINO


@dataclass(frozen=True, slots=True)
class RawSpec:
    """OpenVINO alone on ``model`` at ``size`` (width, height); ``precision`` forces INFERENCE_PRECISION_HINT
    (``f32``), None leaves the plugin's choice."""

    model: str
    clip: str
    size: tuple[int, int]
    hint: str
    seconds: float
    repeat: int
    precision: str | None = None


def raw_job(spec: RawSpec) -> dict[str, Any]:
    """An ``AsyncInferQueue`` of the hint's optimal size kept full for ``spec.seconds``, ``spec.repeat`` times
    after a warm-up, as ``benchmark_app`` does."""
    import openvino as ov  # noqa: PLC0415

    from edge_depth.model.engine import INPUT_NAME, read_model  # noqa: PLC0415

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

    def window(duration: float) -> dict[str, float]:
        latencies.clear()
        started, cpu0 = time.perf_counter(), time.process_time()
        for i in itertools.count():
            queue.start_async(inputs[i % len(inputs)], None)
            if time.perf_counter() - started >= duration:
                break
        queue.wait_all()
        return _window_figures(latencies, started, cpu0)

    window(max(0.5, spec.seconds / 2))
    runs = [window(spec.seconds) for _ in range(spec.repeat)]
    return {
        **_medians(runs),
        "runs": runs,
        "requests": requests,
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
        "peak_rss_mb": _status_mb("VmHWM"),
    }


def _cpu_ms_per_frame(r: dict[str, Any]) -> float | None:
    if not r.get("fps") or r.get("cpu_pct") is None:
        return None
    return float(r["cpu_pct"]) / 100.0 * (os.cpu_count() or 1) * 1000.0 / float(r["fps"])


def _raw_note(r: dict[str, Any]) -> str:
    return f"{r['requests']} req, {r['streams']} streams, float layers in {r['inference_precision']}"


def _combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one measurement as one: medians of the figures, the highest peak RSS, the median round's
    other details, and the rounds themselves."""
    figures = ("fps", "p50_ms", "p95_ms", "cpu_pct", "fairness", "vs_raw")
    middle = sorted(rounds, key=lambda r: float(r["fps"]))[len(rounds) // 2]
    combined = {**middle, "rounds": rounds, "peak_rss_mb": max(float(r["peak_rss_mb"]) for r in rounds)}
    combined |= {key: statistics.median(float(r[key]) for r in rounds) for key in figures if key in middle}
    return combined


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


# ------------------------------------------------------------------------------------------ PyTorch eager


def torch_job(clip: str, size: tuple[int, int], seconds: float, repeat: int) -> dict[str, Any]:
    """PyTorch eager MiDaS small (synthetic weights: speed does not depend on them), one frame at a time,
    normalisation included as the IR includes it."""
    import torch  # noqa: PLC0415

    from convert.synthetic import synthetic_model  # noqa: PLC0415

    torch.set_num_threads(TORCH_THREADS)
    model = synthetic_model().eval()
    frames = _clip_frames(clip, size, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def infer(bgr: np.ndarray) -> None:
        rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1)[None].float() / 255.0
        model((rgb - mean) / std)

    def window(duration: float) -> dict[str, float]:
        latencies: list[float] = []
        started, cpu0 = time.perf_counter(), time.process_time()
        for i in itertools.count():
            t = time.perf_counter()
            infer(frames[i % len(frames)])
            latencies.append((time.perf_counter() - t) * 1000.0)
            if i + 1 >= _MIN_TORCH_FRAMES and time.perf_counter() - started >= duration:
                break
        return _window_figures(latencies, started, cpu0)

    with torch.inference_mode():
        window(max(0.5, seconds / 2))
        runs = [window(seconds) for _ in range(repeat)]
    return {**_medians(runs), "runs": runs, "threads": TORCH_THREADS, "peak_rss_mb": _status_mb("VmHWM")}


# ------------------------------------------------------------------------------------------ the pipeline


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """One run of the daemon's pipeline: ``cameras`` file sources of ``clip`` looping."""

    model: str
    clip: str
    cameras: int
    hint: str
    realtime: bool
    fps_limit: float | None
    heatmap_hz: float
    warmup_frames: int
    frames: int  # per repetition, all cameras together
    repeat: int
    mqtt_host: str
    mqtt_port: int


def bench_alerts_config() -> Any:
    """A busy but plausible alert setup: baseline reference, two zones, an exclusion and fall detection."""
    from edge_depth.config.alerts import CameraAlertsConfig  # noqa: PLC0415

    return CameraAlertsConfig.model_validate(
        {
            "reference": {"mode": "baseline"},
            "zones": [
                {"name": "path", "polygon": [[0.3, 0.55], [0.7, 0.55], [0.9, 1.0], [0.1, 1.0]]},
                {"name": "left", "polygon": [[0.0, 0.4], [0.3, 0.4], [0.3, 1.0], [0.0, 1.0]]},
            ],
            "exclusions": [{"name": "sky", "polygon": [[0.0, 0.0], [1.0, 0.0], [1.0, 0.3], [0.0, 0.3]]}],
            "fall": {"enabled": True},
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

    def __init__(self, output: Any, meter: _Meter) -> None:
        self.output = output
        self._meter = meter

    def handle(self, result: Any) -> None:
        self.output.handle(result)
        self._meter.record(result.camera, time.monotonic() - result.captured_mono)


@dataclass(slots=True)
class _Samples:
    """RSS (MB), threads and open files of the process, sampled while it runs."""

    rss_mb: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def take(self) -> None:
        self.rss_mb.append(_status_mb("VmRSS"))
        self.threads.append(_proc_count("task"))
        self.fds.append(_proc_count("fd"))


def pipeline_job(spec: PipelineSpec) -> dict[str, Any]:
    """The daemon's classes wired as ``Service.run`` wires them, measured over ``spec.repeat`` windows."""
    from edge_depth.alerts.camera import CameraAlerts  # noqa: PLC0415
    from edge_depth.capture.reader import CameraReader, FrameHub  # noqa: PLC0415
    from edge_depth.config.schema import CameraConfig, HeatmapConfig, MqttConfig  # noqa: PLC0415
    from edge_depth.model.engine import DepthEngine  # noqa: PLC0415
    from edge_depth.model.preprocess import Resizer  # noqa: PLC0415
    from edge_depth.mqtt.client import MqttPublisher  # noqa: PLC0415
    from edge_depth.mqtt.topics import Topics  # noqa: PLC0415
    from edge_depth.outputs.camera import CameraOutput  # noqa: PLC0415
    from edge_depth.pipeline import Pipeline  # noqa: PLC0415

    alerts_cfg = bench_alerts_config()
    cams = [
        CameraConfig(
            name=f"cam{i}",
            source=spec.clip,
            loop=True,
            realtime=spec.realtime,
            fps_limit=spec.fps_limit,
            heatmap=HeatmapConfig(rate_hz=spec.heatmap_hz),
            alerts=alerts_cfg,
        )
        for i in range(spec.cameras)
    ]
    mqtt_cfg = MqttConfig(
        host=spec.mqtt_host, port=spec.mqtt_port, client_id=f"edge-depth-bench-{os.getpid()}", topic_prefix=TOPIC_PREFIX
    )
    topics = Topics(TOPIC_PREFIX)
    engine = DepthEngine(Path(spec.model), hint=spec.hint)
    publisher = MqttPublisher(mqtt_cfg, topics)
    publisher.start()
    if not publisher.connected.wait(10):
        publisher.stop()
        raise BenchError(f"MQTT broker {spec.mqtt_host}:{spec.mqtt_port} did not accept a connection within 10 s")
    hub = FrameHub()
    meter = _Meter([c.name for c in cams], capacity=spec.frames * 2 + 1000)
    handlers: dict[str, _MeteredOutput] = {}
    for cam in cams:
        alerts = CameraAlerts(cam.name, cam.alerts, precision=engine.info.precision)
        handlers[cam.name] = _MeteredOutput(CameraOutput(cam, topics, publisher, alerts), meter)
    capture_stop, pipeline_stop = threading.Event(), threading.Event()
    resizer = Resizer()
    readers = [CameraReader(cam, hub, resizer, capture_stop) for cam in cams]
    first = readers[0]
    # Compile for the clip's size before any frame flows, as the daemon does for its configured size.
    size = _clip_size(spec.clip)
    requests = engine.requests(resizer.target_size(*size))
    pipeline = Pipeline(hub, engine, dict(handlers), max_in_flight=requests + 4, stop=pipeline_stop)
    samples = _Samples()
    try:
        pipeline.start()
        for reader in readers:
            reader.start()
        _wait_frames(meter, spec.warmup_frames, _Samples(), first)
        samples.take()  # memory growth counts from the end of the warm-up
        windows = []
        for rep in range(spec.repeat):
            windows.append(_measure_window(meter, spec.frames, samples, first, handlers))
            label = f"{spec.cameras} camera{'s' if spec.cameras > 1 else ''}"
            _say(f"    {label} rep {rep + 1}/{spec.repeat}: {windows[-1]['fps']:.1f} FPS")
    finally:
        capture_stop.set()
        for reader in readers:
            reader.join(5)
        pipeline.stop(5)
        publisher.stop(3)
    frames_done = sum(h.output.frames for h in handlers.values())
    heatmaps = sum(h.output.heatmaps for h in handlers.values())
    result = _medians([{k: w[k] for k in ("fps", "p50_ms", "p95_ms", "cpu_pct", "fairness")} for w in windows])
    return {
        **result,
        "per_camera_fps": windows[len(windows) // 2]["per_camera_fps"],
        "runs": windows,
        "requests": requests,
        "frames": frames_done,
        "frames_per_heatmap": frames_done / heatmaps if heatmaps else None,
        "peak_rss_mb": _status_mb("VmHWM"),
        "memory": {
            "rss_start_mb": samples.rss_mb[0],
            "rss_end_mb": samples.rss_mb[-1],
            "rss_growth_pct": 100.0 * (samples.rss_mb[-1] - samples.rss_mb[0]) / samples.rss_mb[0],
            "threads_start": samples.threads[0],
            "threads_end": samples.threads[-1],
            "fds_start": samples.fds[0],
            "fds_end": samples.fds[-1],
            "samples": len(samples.rss_mb),
        },
    }


def _clip_size(clip: str) -> tuple[int, int]:
    import cv2  # noqa: PLC0415

    cap = cv2.VideoCapture(clip, cv2.CAP_FFMPEG)
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise BenchError(f"{clip}: cannot read the video's frame size")
    return w, h


def _wait_frames(meter: _Meter, count: int, samples: _Samples, reader: Any) -> None:
    """Wait until ``count`` more frames are processed, sampling memory each second; fail on a hang."""
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


def _measure_window(
    meter: _Meter, frames: int, samples: _Samples, reader: Any, handlers: dict[str, _MeteredOutput]
) -> dict[str, Any]:
    t0, cpu0, counts0 = meter.mark()
    _wait_frames(meter, frames, samples, reader)
    t1, cpu1, counts1 = time.monotonic(), time.process_time(), dict(meter.per_camera)
    latency = meter.latencies()
    wall = t1 - t0
    per_camera = {name: (counts1[name] - counts0[name]) / wall for name in handlers}
    rates = list(per_camera.values())
    return {
        "fps": sum(rates),
        "per_camera_fps": per_camera,
        "fairness": min(rates) / (sum(rates) / len(rates)) if sum(rates) else 0.0,
        "p50_ms": _pct(latency, 50),
        "p95_ms": _pct(latency, 95),
        "cpu_pct": _cpu_pct(cpu1 - cpu0, wall),
        "wall_s": wall,
    }


# ------------------------------------------------------------------------------------------------ broker


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def private_broker() -> Iterator[tuple[str, int]]:
    """A Mosquitto of our own on a free loopback port with its own config; stopped on exit."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None)
    if exe is None:
        raise BenchError("mosquitto not found (install it, or give a broker with --mqtt-host/--mqtt-port)")
    host = "127.0.0.1"
    with tempfile.TemporaryDirectory(prefix="edge-depth-bench-") as tmp:
        port = _free_port(host)
        conf = Path(tmp) / "mosquitto.conf"
        lines = [f"listener {port} {host}", "allow_anonymous true", "persistence false", "log_dest none"]
        if os.geteuid() == 0:  # as root it would switch to its own user
            lines.append(f"user {getpass.getuser()}")
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_listening(proc, host, port)
            yield host, port
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


def _wait_listening(proc: subprocess.Popen[bytes], host: str, port: int) -> None:
    deadline = time.monotonic() + _BROKER_START_S
    pause = threading.Event()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise BenchError(f"mosquitto exited at start: {err.splitlines()[-1] if err else proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            pause.wait(0.05)  # polling the port until the deadline
    raise BenchError(f"mosquitto did not listen on {host}:{port} within {_BROKER_START_S:.0f} s")


# ------------------------------------------------------------------------------------------------ the run


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table."""

    precision: str
    input_size: str
    run: str
    fps: float
    p50_ms: float | None
    p95_ms: float | None
    cpu_pct: float | None
    peak_rss_mb: float | None
    cpu_ms_per_frame: float | None = None  # process CPU time per frame: unlike FPS, barely moved by other load
    vs_raw: float | None = None  # pipeline FPS / raw THROUGHPUT FPS
    note: str = ""

    def cells(self) -> list[str]:
        numbers = [self.fps, self.p50_ms, self.p95_ms, self.cpu_pct, self.cpu_ms_per_frame]
        figures = [_fmt(n) for n in numbers] + [_fmt(self.peak_rss_mb, 0), _fmt(self.vs_raw, 2)]
        return [self.precision, self.input_size, self.run, *figures, self.note]


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    figure: str
    passed: bool


@dataclass(slots=True)
class Results:
    input_size: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _models(args: argparse.Namespace) -> dict[str, Path]:
    if args.model is not None:
        if not args.model.is_file():
            raise BenchError(f"{args.model}: model file not found")
        return {_precision_of(args.model): args.model}
    directory: Path = args.models
    if not directory.is_dir():
        raise BenchError(f"{directory}: model directory not found (make one with `edge-depth convert`)")
    found = {p: directory / f"midas_small_{p}.xml" for p in PRECISIONS}
    found = {p: path for p, path in found.items() if path.is_file()}
    if not found:
        raise BenchError(
            f"{directory}: no midas_small_{{fp32,fp16,int8}}.xml in it (make them with `edge-depth convert`)"
        )
    return found


def _precision_of(path: Path) -> str:
    stem = path.stem
    return next((p for p in PRECISIONS if stem.endswith(p)), stem)


def _clip(args: argparse.Namespace) -> Path:
    clip: Path = args.clip or DEFAULT_CLIP
    if not clip.is_file():
        what = "the bundled sample clip" if args.clip is None else "video file"
        raise BenchError(f"{clip}: {what} not found")
    return clip


class Bench:
    """Runs every measurement in order, printing progress to stderr, and collects the table."""

    def __init__(self, models: dict[str, Path], clip: Path, plan: Plan, broker: tuple[str, int]) -> None:
        from edge_depth.model.preprocess import auto_input_size  # noqa: PLC0415

        self.models = models
        self.clip = str(clip)
        self.plan = plan
        self.broker = broker
        self.size = auto_input_size(*_clip_size(self.clip))
        self.results = Results(input_size="{}x{}".format(*self.size))
        self._step = 0
        self._steps = self._count_steps()

    def _count_steps(self) -> int:
        per_model = 1 + self.plan.repeat * (1 + len(self.plan.cameras)) + 1
        fp32_forced = 1 if "fp32" in self.models else 0
        return per_model * len(self.models) + fp32_forced + 1 + 1  # + long run + torch

    def _progress(self, what: str) -> None:
        self._step += 1
        _say(f"[{self._step}/{self._steps}] {what} ...")

    def run(self) -> Results:
        raw: dict[str, dict[str, Any]] = {}
        pipe: dict[tuple[str, int], dict[str, Any]] = {}
        for precision, path in self.models.items():
            raw[precision] = self._raw(precision, path)
            for n, result in self._throughput_rounds(precision, path, raw[precision]).items():
                pipe[(precision, n)] = result
            self._latency(precision, path, raw[precision])
        long_precision = "int8" if "int8" in self.models else next(iter(self.models))
        long_run = self._long_run(long_precision, self.models[long_precision], raw[long_precision])
        torch_fps = self._torch()
        self._targets(raw, pipe, long_precision, long_run, torch_fps)
        return self.results

    def _row(self, precision: str, run: str, r: dict[str, Any], vs_raw: float | None = None, note: str = "") -> Row:
        row = Row(
            precision=precision,
            input_size=self.results.input_size,
            run=run,
            fps=r["fps"],
            p50_ms=r.get("p50_ms"),
            p95_ms=r.get("p95_ms"),
            cpu_pct=r.get("cpu_pct"),
            peak_rss_mb=r.get("peak_rss_mb"),
            cpu_ms_per_frame=_cpu_ms_per_frame(r),
            vs_raw=vs_raw,
            note=note,
        )
        self.results.rows.append(row)
        return row

    def _child(self, job: Callable[..., dict[str, Any]], spec: Any, timeout: float) -> dict[str, Any]:
        r = run_in_child(job, spec, timeout=timeout)
        latency = f"p50 {_fmt(r['p50_ms'])} ms, p95 {_fmt(r['p95_ms'])} ms"
        _say(f"    {r['fps']:.1f} FPS, {latency}, CPU {_fmt(r['cpu_pct'])} %")
        return r

    def _raw(self, precision: str, path: Path) -> dict[str, dict[str, Any]]:
        """The LATENCY hint (THROUGHPUT comes with the pipeline, in rounds); real f32 for a BF16-run FP32 IR."""
        self._progress(f"{precision} {self.results.input_size}: OpenVINO alone, LATENCY hint")
        r = self._child(raw_job, self._raw_spec(path, "LATENCY"), self._raw_timeout())
        self._row(precision, "OpenVINO alone, LATENCY", r, note=_raw_note(r))
        out = {"LATENCY": r}
        if precision == "fp32" and r["inference_precision"] != "f32":
            # CPUs with BF16 (AVX512_BF16, AMX) run an FP32 IR in BF16 unless told otherwise: show real FP32 too.
            self._progress(f"{precision} {self.results.input_size}: OpenVINO alone, THROUGHPUT, f32 forced")
            spec = self._raw_spec(path, "THROUGHPUT", precision="f32")
            out["THROUGHPUT_F32"] = self._child(raw_job, spec, self._raw_timeout())
        self.results.details.setdefault("raw", {})[precision] = out
        return out

    def _throughput_rounds(
        self, precision: str, path: Path, raw: dict[str, dict[str, Any]]
    ) -> dict[int, dict[str, Any]]:
        """Raw THROUGHPUT and the pipeline in alternation, one repetition of each per round.

        Other processes load a shared machine differently from minute to minute: measured side by side and
        paired per round, the pipeline/raw ratio holds where the FPS figures alone would drift.
        """
        raw_rounds: list[dict[str, Any]] = []
        pipe_rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in self.plan.cameras}
        size = self.results.input_size
        for k in range(1, self.plan.repeat + 1):
            self._progress(f"{precision} {size}: round {k}/{self.plan.repeat}, OpenVINO alone, THROUGHPUT hint")
            r = self._child(raw_job, self._raw_spec(path, "THROUGHPUT", repeat=1), self._raw_timeout())
            raw_rounds.append(r)
            for n in self.plan.cameras:
                label = f"pipeline, {n} camera{'s' if n > 1 else ''}"
                self._progress(f"{precision} {size}: round {k}/{self.plan.repeat}, {label}, max speed")
                spec = self._spec(path, n, heatmap_hz=self._heatmap_hz(r["fps"], n), repeat=1)
                p = self._child(pipeline_job, spec, self._pipe_timeout(spec))
                p["vs_raw"] = p["fps"] / r["fps"]
                pipe_rounds[n].append(p)
        raw["THROUGHPUT"] = _combine(raw_rounds)
        self._row(precision, "OpenVINO alone, THROUGHPUT", raw["THROUGHPUT"], note=_raw_note(raw["THROUGHPUT"]))
        if "THROUGHPUT_F32" in raw:
            forced = raw["THROUGHPUT_F32"]
            self._row(precision, "OpenVINO alone, THROUGHPUT, f32 forced", forced, note=_raw_note(forced))
        out: dict[int, dict[str, Any]] = {}
        for n, rounds in pipe_rounds.items():
            p = out[n] = _combine(rounds)
            note = f"heatmap every {_fmt(p['frames_per_heatmap'])} frames"
            if n > 1:
                note += f"; min/mean camera {p['fairness']:.2f}"
            self._row(precision, f"pipeline, {n} camera{'s' if n > 1 else ''}", p, vs_raw=p["vs_raw"], note=note)
            self.results.details.setdefault("pipeline", {}).setdefault(precision, {})[str(n)] = p
        return out

    def _raw_spec(self, path: Path, hint: str, precision: str | None = None, repeat: int | None = None) -> RawSpec:
        reps = repeat or self.plan.repeat
        return RawSpec(str(path), self.clip, self.size, hint, self.plan.seconds, reps, precision)

    def _raw_timeout(self) -> float:
        return 120.0 + self.plan.seconds * (self.plan.repeat + 1) * 2

    def _spec(self, path: Path, cameras: int, **kw: Any) -> PipelineSpec:
        base: dict[str, Any] = {
            "model": str(path),
            "clip": self.clip,
            "cameras": cameras,
            "hint": "THROUGHPUT",
            "realtime": False,
            "fps_limit": None,
            "warmup_frames": self.plan.warmup_frames * cameras,
            "frames": self.plan.frames,
            "repeat": self.plan.repeat,
            "mqtt_host": self.broker[0],
            "mqtt_port": self.broker[1],
        }
        return PipelineSpec(**(base | kw))

    @staticmethod
    def _heatmap_hz(fps: float, cameras: int) -> float:
        # CameraOutput publishes heatmaps at a rate, not every n-th frame: set the rate from the speed expected.
        return float(min(30.0, max(0.2, fps / cameras / HEATMAP_EVERY)))

    def _pipe_timeout(self, spec: PipelineSpec) -> float:
        frames = spec.warmup_frames + spec.frames * spec.repeat
        return 120.0 + frames / 5.0  # even at 5 FPS it finishes

    def _latency(self, precision: str, path: Path, raw: dict[str, dict[str, Any]]) -> None:
        self._progress(f"{precision} {self.results.input_size}: 1 camera offered {OFFERED_FPS:g} FPS, LATENCY hint")
        spec = self._spec(
            path,
            1,
            hint="LATENCY",
            realtime=True,
            fps_limit=OFFERED_FPS,
            heatmap_hz=OFFERED_FPS / HEATMAP_EVERY,
            warmup_frames=min(self.plan.warmup_frames, 25),
            frames=self.plan.latency_frames,
            repeat=1,
        )
        r = self._child(pipeline_job, spec, self._pipe_timeout(spec))
        single = raw["LATENCY"]["p50_ms"]
        r["vs_single_inference"] = r["p50_ms"] / single
        note = f"p50 = {r['vs_single_inference']:.2f} x single inference ({single:.1f} ms)"
        self._row(precision, f"1 camera, {OFFERED_FPS:g} FPS offered, LATENCY", r, note=note)
        self.results.details.setdefault("latency", {})[precision] = r

    def _long_run(self, precision: str, path: Path, raw: dict[str, dict[str, Any]]) -> dict[str, Any]:
        frames = self.plan.long_frames
        self._progress(f"{precision} {self.results.input_size}: long run, 1 camera, {frames} frames")
        spec = self._spec(path, 1, heatmap_hz=self._heatmap_hz(raw["THROUGHPUT"]["fps"], 1), frames=frames, repeat=1)
        r = self._child(pipeline_job, spec, self._pipe_timeout(spec))
        m = r["memory"]
        note = (
            f"RSS {m['rss_start_mb']:.0f} -> {m['rss_end_mb']:.0f} MB ({m['rss_growth_pct']:+.1f} %), "
            f"threads {m['threads_start']} -> {m['threads_end']}, files {m['fds_start']} -> {m['fds_end']}"
        )
        self._row(precision, f"long run, 1 camera, {frames} frames", r, note=note)
        self.results.details["long_run"] = {"precision": precision, **r}
        return r

    def _torch(self) -> float | None:
        self._progress(f"PyTorch eager fp32 {self.results.input_size}, {TORCH_THREADS} threads")
        try:
            import importlib.util  # noqa: PLC0415

            if importlib.util.find_spec("torch") is None:
                _say("    torch is not installed: skipped")
                return None
        except (ImportError, ValueError):
            return None
        timeout = self._raw_timeout() + 60
        r = run_in_child(torch_job, self.clip, self.size, self.plan.seconds, self.plan.repeat, timeout=timeout)
        _say(f"    {r['fps']:.1f} FPS, p50 {r['p50_ms']:.1f} ms, CPU {r['cpu_pct']:.1f} %")
        self._row("torch", f"PyTorch eager, {TORCH_THREADS} threads", r, note="model and normalisation only")
        self.results.details["torch"] = r
        fps: float = r["fps"]
        return fps

    def _targets(
        self,
        raw: dict[str, dict[str, dict[str, Any]]],
        pipe: dict[tuple[str, int], dict[str, Any]],
        long_precision: str,
        long_run: dict[str, Any],
        torch_fps: float | None,
    ) -> None:
        def check(name: str, figure: str, passed: bool) -> None:
            self.results.targets.append(Target(name, figure, passed))

        def ratio(a: float, b: float) -> str:
            return f"{a:.1f} / {b:.1f} = {a / b:.2f}"

        for precision in self.models:
            raw_fps = raw[precision]["THROUGHPUT"]["fps"]
            for n in self.plan.cameras:
                fps = pipe[(precision, n)]["fps"]
                name = f"{precision}: {n} camera{'s' if n > 1 else ''} >= {TARGET_PIPELINE_VS_RAW} x raw THROUGHPUT"
                check(name, ratio(fps, raw_fps), fps >= TARGET_PIPELINE_VS_RAW * raw_fps)
                if n > 1:
                    fair = pipe[(precision, n)]["fairness"]
                    check(
                        f"{precision}: {n} cameras, none below {TARGET_FAIRNESS} x mean",
                        f"min/mean {fair:.2f}",
                        fair >= TARGET_FAIRNESS,
                    )
            p50, single = self.results.details["latency"][precision]["p50_ms"], raw[precision]["LATENCY"]["p50_ms"]
            name = f"{precision}: p50 at {OFFERED_FPS:g} FPS <= {TARGET_LATENCY_VS_SINGLE} x single inference"
            check(name, ratio(p50, single) + " (ms)", p50 <= TARGET_LATENCY_VS_SINGLE * single)
        if 1 in self.plan.cameras and "int8" in self.models:
            int8 = pipe[("int8", 1)]["fps"]
            if "fp32" in self.models:
                fp32, runs_in = pipe[("fp32", 1)]["fps"], raw["fp32"]["THROUGHPUT"]["inference_precision"]
                check(
                    f"int8 end to end >= {TARGET_INT8_VS_FP32} x fp32 end to end",
                    f"{ratio(int8, fp32)} (the fp32 IR runs in {runs_in})",
                    int8 >= TARGET_INT8_VS_FP32 * fp32,
                )
            if torch_fps:
                check(
                    f"int8 end to end >= {TARGET_INT8_VS_TORCH} x PyTorch eager",
                    ratio(int8, torch_fps),
                    int8 >= TARGET_INT8_VS_TORCH * torch_fps,
                )
        m, peak = long_run["memory"], long_run["peak_rss_mb"]
        check(
            f"{long_precision}: peak RSS of 1 camera <= {TARGET_PEAK_RSS_MB:.0f} MB",
            f"{peak:.0f} MB",
            peak <= TARGET_PEAK_RSS_MB,
        )
        check(
            f"{long_precision}: RSS growth < {TARGET_RSS_GROWTH_PCT:g} % over {self.plan.long_frames} frames",
            f"{m['rss_growth_pct']:+.1f} %",
            m["rss_growth_pct"] < TARGET_RSS_GROWTH_PCT,
        )
        check(
            f"{long_precision}: no growth in threads or open files",
            f"threads {m['threads_start']} -> {m['threads_end']}, files {m['fds_start']} -> {m['fds_end']}",
            m["threads_end"] <= m["threads_start"] and m["fds_end"] <= m["fds_start"],
        )


# ------------------------------------------------------------------------------------------------ output


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_table(results: Results, machine: dict[str, Any]) -> str:
    """The table and the targets, as printed."""
    head = ["precision", "input", "run", "FPS", "p50 ms", "p95 ms", "CPU %", "CPU ms/frame", "peak RSS MB", "/raw"]
    head.append("notes")
    body = [r.cells() for r in results.rows]
    widths = [max(len(cells[i]) for cells in [head, *body]) for i in range(len(head))]
    numeric = range(3, 10)

    def line(cells: list[str]) -> str:
        padded = (
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    lines = [
        f"edge-depth bench on {machine['cpu']} ({machine['cores']} cores), "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        line(head),
        line(["-" * w for w in widths]),
        *(line(cells) for cells in body),
        "",
        "targets:",
    ]
    name_w = max((len(t.name) for t in results.targets), default=0)
    lines += [f"  {'PASS' if t.passed else 'MISS'}  {t.name.ljust(name_w)}  {t.figure}" for t in results.targets]
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("openvino", "opencv-python-headless", "numpy", "paho-mqtt", "torch"):
        try:
            versions[name.removesuffix("-python-headless")] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"cpu": cpu, "cores": os.cpu_count(), "versions": versions}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-depth bench", description=__doc__.splitlines()[0] if __doc__ else None)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", type=Path, help="one IR (.xml)")
    which.add_argument(
        "--models", type=Path, default=Path("models"), help="directory with midas_small_{fp32,fp16,int8}.xml"
    )
    parser.add_argument("--clip", type=Path, help="video file (default: the bundled sample clip)")
    parser.add_argument("--frames", type=_positive_int, help="frames per pipeline repetition")
    parser.add_argument("--seconds", type=_positive_float, help="seconds per raw / PyTorch repetition")
    parser.add_argument("--repeat", type=_positive_int, help="repetitions after warm-up (medians are reported)")
    parser.add_argument("--long-frames", type=_positive_int, help="frames of the memory run (default 20000)")
    parser.add_argument("--cameras", type=_camera_counts, default=(1, 4), help="camera counts at max speed, e.g. 1,4")
    parser.add_argument("--short", action="store_true", help="a few hundred frames per run (smoke test)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    parser.add_argument("--mqtt-host", help="use this broker instead of a private Mosquitto")
    parser.add_argument("--mqtt-port", type=_positive_int, default=1883)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _camera_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4, got {text!r}") from None
    if not counts or counts[0] < 1 or counts[-1] > 32:
        raise argparse.ArgumentTypeError(f"camera counts must be 1..32, got {text!r}")
    return counts


@contextmanager
def _broker(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    if args.mqtt_host:
        yield args.mqtt_host, args.mqtt_port
    else:
        with private_broker() as address:
            yield address


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        models = _models(args)
        clip = _clip(args)
        plan = Plan.make(args)
        machine = machine_info()
        started = time.monotonic()
        with _broker(args) as broker:
            results = Bench(models, clip, plan, broker).run()
    except BenchError as exc:
        print(f"edge-depth bench: error: {exc}", file=sys.stderr)
        return 2
    table = format_table(results, machine)
    print(table)
    payload = {
        "machine": machine,
        "plan": asdict(plan),
        "clip": str(clip),
        "models": {p: str(path) for p, path in models.items()},
        "input_size": results.input_size,
        "duration_s": round(time.monotonic() - started, 1),
        "rows": [asdict(r) for r in results.rows],
        "targets": [asdict(t) for t in results.targets],
        "details": results.details,
        "table": table,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    _say(f"wrote {args.json}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
