"""The bench's output: the table's rows, the targets checked against the results, the table, and the JSON."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_depth.tools.bench.common import LIVE_CAMERAS, LIVE_FPS_LIMIT, OFFERED_FPS, Plan
from edge_depth.tools.bench.procfs import cpu_ms_per_frame
from edge_depth.tools.bench.results import LoopResult, PipelineResult, RawResult, StartupResult, TorchResult

# What the daemon should achieve on the reference machine; MISS lines say where it does not.
TARGET_PIPELINE_VS_RAW = 0.85  # end to end, at least 85 % of what OpenVINO does alone
TARGET_OWN_MS = 1.0  # CPU ms per frame the daemon adds to the model's and the decoder's
TARGET_VS_PEERS = 1.5  # over the plain loop of the OpenVINO notebook / Open Model Zoo demo
TARGET_LIVE_FPS = 9.5  # every live camera limited to 10 FPS gets at least this many
TARGET_READY_WARM_S = 2.0  # process start to READY with a warm compiled-model cache
TARGET_INT8_VS_FP32 = 2.5
TARGET_INT8_VS_TORCH = 6.0
TARGET_FAIRNESS = 0.8  # no camera below 80 % of the mean camera's FPS
TARGET_LATENCY_VS_SINGLE = 1.5  # at a camera's rate, p50 within 1.5 x one inference alone
TARGET_PEAK_RSS_MB = 400.0
TARGET_RSS_GROWTH_PCT = 5.0


class Figures(Protocol):
    """What a row shows of any result."""

    @property
    def fps(self) -> float: ...

    @property
    def p50_ms(self) -> float: ...

    @property
    def p95_ms(self) -> float: ...

    @property
    def cpu_pct(self) -> float: ...

    @property
    def peak_rss_mb(self) -> float: ...


def fmt(value: float | None, digits: int = 1) -> str:
    """A figure of the table; ``-`` for none."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


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
    own_ms: float | None = None  # pipeline CPU ms/frame - raw model's - decoder's (same round)

    @staticmethod
    def of(
        precision: str,
        input_size: str,
        run: str,
        r: Figures,
        *,
        vs_raw: float | None = None,
        own_ms: float | None = None,
        note: str = "",
    ) -> Row:
        return Row(
            precision=precision,
            input_size=input_size,
            run=run,
            fps=r.fps,
            p50_ms=r.p50_ms,
            p95_ms=r.p95_ms,
            cpu_pct=r.cpu_pct,
            peak_rss_mb=r.peak_rss_mb,
            cpu_ms_per_frame=cpu_ms_per_frame(r.cpu_pct, r.fps) if r.fps else None,
            vs_raw=vs_raw,
            note=note,
            own_ms=own_ms,
        )

    @staticmethod
    def missing(precision: str, input_size: str, run: str, note: str) -> Row:
        """A row without frame figures: a run that measures something else (start-up), or could not run."""
        return Row(precision, input_size, run, math.nan, None, None, None, None, note=note)

    def cells(self) -> list[str]:
        numbers = [self.fps, self.p50_ms, self.p95_ms, self.cpu_pct, self.cpu_ms_per_frame, self.own_ms]
        figures = [fmt(n) for n in numbers] + [fmt(self.peak_rss_mb, 0), fmt(self.vs_raw, 2)]
        return [self.precision, self.input_size, self.run, *figures, self.note]


@dataclass(frozen=True, slots=True)
class Target:
    """One target: what it asks, the figure measured, and whether it is met."""

    name: str
    figure: str
    passed: bool


@dataclass(frozen=True, slots=True)
class RawSet:
    """OpenVINO alone for one IR: LATENCY, THROUGHPUT (in rounds), and THROUGHPUT in real f32 when the plugin
    runs the FP32 IR in a lower precision."""

    latency: RawResult
    throughput: RawResult
    throughput_f32: RawResult | None = None
    paced: RawResult | None = None
    """LATENCY with one request every 1 / OFFERED_FPS s: a single inference on cores that idle in between."""

    def to_json(self) -> dict[str, Any]:
        out = {"LATENCY": asdict(self.latency), "THROUGHPUT": asdict(self.throughput)}
        if self.paced is not None:
            out["LATENCY_PACED"] = asdict(self.paced)
        if self.throughput_f32 is not None:
            out["THROUGHPUT_F32"] = asdict(self.throughput_f32)
        return out


@dataclass(frozen=True, slots=True)
class LongRun:
    """The memory run, on the IR of ``precision``."""

    precision: str
    result: PipelineResult


@dataclass(frozen=True, slots=True)
class LiveRun:
    """Live cameras: the result, or why there is none."""

    result: PipelineResult | None
    problem: str | None


@dataclass(slots=True)
class Details:
    """Every result behind the table, by precision (and camera count for the max-speed pipeline runs)."""

    raw: dict[str, RawSet] = field(default_factory=dict)
    pipeline: dict[str, dict[int, PipelineResult]] = field(default_factory=dict)
    latency: dict[str, PipelineResult] = field(default_factory=dict)
    long_run: LongRun | None = None
    torch: TorchResult | None = None
    decode: dict[str, LoopResult] = field(default_factory=dict)
    peers: dict[str, LoopResult] = field(default_factory=dict)
    live: dict[int, LiveRun] = field(default_factory=dict)
    startup: list[StartupResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "raw": {p: raw.to_json() for p, raw in self.raw.items()},
            "pipeline": {p: {str(n): asdict(r) for n, r in runs.items()} for p, runs in self.pipeline.items()},
            "latency": {p: asdict(r) for p, r in self.latency.items()},
        }
        if self.long_run is not None:
            out["long_run"] = {"precision": self.long_run.precision, **asdict(self.long_run.result)}
        if self.torch is not None:
            out["torch"] = asdict(self.torch)
        out["decode"] = {p: asdict(r) for p, r in self.decode.items()}
        out["peers"] = {p: asdict(r) for p, r in self.peers.items()}
        out["live"] = {str(n): asdict(run) for n, run in self.live.items()}
        out["startup"] = [asdict(r) for r in self.startup]
        return out


@dataclass(slots=True)
class Results:
    """What a bench run produced, in table order."""

    input_size: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    details: Details = field(default_factory=Details)


@dataclass(frozen=True, slots=True)
class Machine:
    """Where the bench ran: CPU model, logical cores, versions of Python and the libraries that matter."""

    cpu: str
    cores: int | None
    versions: dict[str, str]


def machine_info() -> Machine:
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
    return Machine(cpu=cpu, cores=os.cpu_count(), versions=versions)


def evaluate_targets(details: Details, plan: Plan, precisions: list[str]) -> list[Target]:
    """Every target that the results allow to check, in a fixed order."""
    targets: list[Target] = []

    def check(name: str, figure: str, passed: bool) -> None:
        targets.append(Target(name, figure, passed))

    def ratio(a: float, b: float) -> str:
        return f"{a:.1f} / {b:.1f} = {a / b:.2f}"

    for precision in precisions:
        raw = details.raw[precision]
        ceiling = _decode_ceiling(raw.throughput, details.decode.get(precision))
        for n in plan.cameras:
            pipe = details.pipeline[precision][n]
            name = f"{precision}: {n} camera{'s' if n > 1 else ''} >= {TARGET_PIPELINE_VS_RAW} x raw THROUGHPUT"
            figure = ratio(pipe.fps, raw.throughput.fps) + ceiling
            check(name, figure, pipe.fps >= TARGET_PIPELINE_VS_RAW * raw.throughput.fps)
            if n > 1:
                check(
                    f"{precision}: {n} cameras, none below {TARGET_FAIRNESS} x mean",
                    f"min/mean {pipe.fairness:.2f}",
                    pipe.fairness >= TARGET_FAIRNESS,
                )
        one = details.pipeline[precision].get(1)
        if one is not None and one.own_ms is not None:
            check(
                f"{precision}: own overhead <= {TARGET_OWN_MS:g} ms CPU per frame",
                f"{one.own_ms:.2f} ms ({_stage_figures(one)})",
                one.own_ms <= TARGET_OWN_MS,
            )
        if one is not None and precision in details.peers:
            check(
                f"{precision}: 1 camera >= {TARGET_VS_PEERS} x the peers' loop",
                ratio(one.fps, details.peers[precision].fps),
                one.fps >= TARGET_VS_PEERS * details.peers[precision].fps,
            )
        p50, single = details.latency[precision].p50_ms, raw.latency.p50_ms
        name = f"{precision}: p50 at {OFFERED_FPS:g} FPS <= {TARGET_LATENCY_VS_SINGLE} x single inference"
        check(name, ratio(p50, single) + " (ms)" + _idle_floor(raw), p50 <= TARGET_LATENCY_VS_SINGLE * single)
    if 1 in plan.cameras and "int8" in precisions:
        int8 = details.pipeline["int8"][1].fps
        if "fp32" in precisions:
            fp32, runs_in = details.pipeline["fp32"][1].fps, details.raw["fp32"].throughput.inference_precision
            check(
                f"int8 end to end >= {TARGET_INT8_VS_FP32} x fp32 end to end",
                f"{ratio(int8, fp32)} (the fp32 IR runs in {runs_in})",
                int8 >= TARGET_INT8_VS_FP32 * fp32,
            )
        if details.torch is not None and details.torch.fps:
            torch_fps = details.torch.fps
            check(
                f"int8 end to end >= {TARGET_INT8_VS_TORCH} x PyTorch eager",
                ratio(int8, torch_fps),
                int8 >= TARGET_INT8_VS_TORCH * torch_fps,
            )
    targets.extend(_more_targets(details))
    if details.long_run is not None:
        precision, m = details.long_run.precision, details.long_run.result.memory
        peak = details.long_run.result.peak_rss_mb
        check(
            f"{precision}: peak RSS of 1 camera <= {TARGET_PEAK_RSS_MB:.0f} MB",
            f"{peak:.0f} MB",
            peak <= TARGET_PEAK_RSS_MB,
        )
        check(
            f"{precision}: RSS growth < {TARGET_RSS_GROWTH_PCT:g} % over {plan.long_frames} frames",
            f"{m.rss_growth_pct:+.1f} %",
            m.rss_growth_pct < TARGET_RSS_GROWTH_PCT,
        )
        check(
            f"{precision}: no growth in threads or open files",
            f"threads {m.threads_start} -> {m.threads_end}, files {m.fds_start} -> {m.fds_end}",
            m.threads_end <= m.threads_start and m.fds_end <= m.fds_start,
        )
    return targets


def _idle_floor(raw: RawSet) -> str:
    """What the latency ratio is at least with no work of the daemon's own: OpenVINO alone, one request at the
    camera's pace, over the same back to back."""
    if raw.paced is None or not raw.latency.p50_ms:
        return ""
    return f" (OpenVINO alone at this pace: {raw.paced.p50_ms / raw.latency.p50_ms:.2f})"


def _decode_ceiling(raw: RawResult, decode: LoopResult | None) -> str:
    """What the pipeline / raw ratio can reach at most when decoding shares the cores with the model: the
    model's CPU per frame over the model's and the decoder's, with no work of the daemon's own at all."""
    if decode is None or not raw.fps or not decode.fps:
        return ""
    model_ms, decode_ms = cpu_ms_per_frame(raw.cpu_pct, raw.fps), cpu_ms_per_frame(decode.cpu_pct, decode.fps)
    return f" (at most {model_ms / (model_ms + decode_ms):.2f} with decoding on these cores)"


def format_table(results: Results, machine: Machine) -> str:
    """The table and the targets, as printed."""
    head = ["precision", "input", "run", "FPS", "p50 ms", "p95 ms", "CPU %", "CPU ms/frame", "own ms/frame"]
    head += ["peak RSS MB", "/raw", "notes"]
    body = [r.cells() for r in results.rows]
    widths = [max(len(cells[i]) for cells in [head, *body]) for i in range(len(head))]
    numeric = range(3, 11)

    def line(cells: list[str]) -> str:
        padded = (
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    lines = [
        f"edge-depth bench on {machine.cpu} ({machine.cores} cores), "
        + ", ".join(f"{k} {v}" for k, v in machine.versions.items()),
        line(head),
        line(["-" * w for w in widths]),
        *(line(cells) for cells in body),
        "",
        "targets:",
    ]
    name_w = max((len(t.name) for t in results.targets), default=0)
    lines += [f"  {'PASS' if t.passed else 'MISS'}  {t.name.ljust(name_w)}  {t.figure}" for t in results.targets]
    return "\n".join(lines)


def payload(
    results: Results,
    *,
    machine: Machine,
    plan: Plan,
    clip: Path,
    models: dict[str, Path],
    duration_s: float,
    table: str,
) -> dict[str, Any]:
    """The JSON written by ``--json``: everything printed, and every result behind it."""
    return {
        "machine": asdict(machine),
        "plan": asdict(plan),
        "clip": str(clip),
        "models": {p: str(path) for p, path in models.items()},
        "input_size": results.input_size,
        "duration_s": round(duration_s, 1),
        "rows": [asdict(r) for r in results.rows],
        "targets": [asdict(t) for t in results.targets],
        "details": results.details.to_json(),
        "table": table,
    }


def json_default(value: Any) -> Any:
    """NumPy scalars as plain numbers; anything else is a bug."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _stage_figures(p: PipelineResult, top: int = 4) -> str:
    """The busiest stages' CPU ms per frame: where the overhead goes."""
    return ", ".join(f"{name.removeprefix('native:')} {ms:.2f}" for name, ms in list(p.thread_ms.items())[:top])


def _more_targets(details: Details) -> list[Target]:
    """The targets of live cameras and of start-up."""
    targets: list[Target] = []

    def check(name: str, figure: str, passed: bool) -> None:
        targets.append(Target(name, figure, passed))

    for n in LIVE_CAMERAS[:1]:
        live = details.live.get(n)
        name = f"{n} RTSP cameras at {LIVE_FPS_LIMIT:g} FPS each all delivered at >= {TARGET_LIVE_FPS} FPS"
        if live is not None and live.result is not None:
            slowest = min(live.result.per_camera_fps.values())
            check(name, f"slowest camera {slowest:.2f} FPS", slowest >= TARGET_LIVE_FPS)
        elif live is not None:
            check(name, f"not measured: {live.problem}", False)
    for start in details.startup:
        if start.cache == "warm":
            check(
                f"start to READY <= {TARGET_READY_WARM_S:g} s with a warm cache",
                f"{start.ready_s:.2f} s",
                start.ready_s <= TARGET_READY_WARM_S,
            )
    return targets
