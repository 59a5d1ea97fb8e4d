"""What the jobs measure, as frozen dataclasses: they cross from the child processes (pickled) to the report.

Units: frames per second; latencies in ms (p50, p95); CPU in % of all cores; memory in MB.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q`` th percentile, NaN for no values (shown as ``-``)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


@dataclass(frozen=True, slots=True)
class Window:
    """One measuring window: completed frames per second, their latencies, the process's CPU use."""

    fps: float
    p50_ms: float
    p95_ms: float
    cpu_pct: float

    @staticmethod
    def median(windows: Sequence[Window]) -> Window:
        """Each figure's median over the windows."""
        return Window(
            fps=statistics.median(w.fps for w in windows),
            p50_ms=statistics.median(w.p50_ms for w in windows),
            p95_ms=statistics.median(w.p95_ms for w in windows),
            cpu_pct=statistics.median(w.cpu_pct for w in windows),
        )


@dataclass(frozen=True, slots=True)
class RawResult:
    """OpenVINO alone with one hint: medians of ``runs``. ``requests``/``streams``: what the hint chose;
    ``inference_precision``: what float layers ran in. ``rounds``: when measured in rounds alternating with the
    pipeline, each round's own result (this one is then their combination, see ``combine_raw``)."""

    fps: float
    p50_ms: float
    p95_ms: float
    cpu_pct: float
    runs: tuple[Window, ...]
    requests: int
    streams: int
    inference_precision: str
    peak_rss_mb: float
    rounds: tuple[RawResult, ...] = ()

    @property
    def note(self) -> str:
        return f"{self.requests} req, {self.streams} streams, float layers in {self.inference_precision}"


@dataclass(frozen=True, slots=True)
class TorchResult:
    """PyTorch eager, one frame at a time on ``threads`` threads: medians of ``runs``."""

    fps: float
    p50_ms: float
    p95_ms: float
    cpu_pct: float
    runs: tuple[Window, ...]
    threads: int
    peak_rss_mb: float


@dataclass(frozen=True, slots=True)
class PipelineWindow:
    """One measuring window of the pipeline. ``fairness``: the slowest camera's FPS over the mean camera's;
    latency: from a frame's decoding to its messages handed to the MQTT client. ``thread_ms``: CPU ms per
    processed frame of each stage's threads (``procfs.stage_of``), OpenVINO's and the decoder's included."""

    fps: float
    per_camera_fps: Mapping[str, float]
    fairness: float
    p50_ms: float
    p95_ms: float
    cpu_pct: float
    wall_s: float
    thread_ms: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Memory:
    """The process from the end of the warm-up (start) to the end of the run: RSS, threads, open files."""

    rss_start_mb: float
    rss_end_mb: float
    rss_growth_pct: float
    threads_start: int
    threads_end: int
    fds_start: int
    fds_end: int
    samples: int


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """The daemon's stages on looping clips: medians of ``runs``, the median run's per-camera FPS.

    ``frames``: processed in the whole job, warm-up included; ``frames_per_heatmap``: frames per published
    heatmap (None when none was). ``vs_raw``: FPS over raw OpenVINO THROUGHPUT of the same round;
    ``vs_single_inference``: p50 over raw LATENCY p50. ``rounds``: as in ``RawResult``. ``thread_ms``: the
    median window's CPU ms per frame by stage. Over the measuring windows, all cameras: ``dropped``: frames
    replaced in the hub by a newer one before inference took them; ``stale``: frames published more than one
    frame interval (``1 / fps_limit``) after their capture, so that a newer view already existed; ``skipped``:
    frames left out to honour ``fps_limit``. ``own_ms``: CPU ms per frame beyond the model's (raw THROUGHPUT)
    and the decoder's (decoding alone) of the same round; ``vs_peers``: FPS over the peers' loop of the round.
    ``infer_p50_ms``: the first camera's median inference (request submitted to completed) over its last frames.
    """

    fps: float
    p50_ms: float
    p95_ms: float
    cpu_pct: float
    fairness: float
    per_camera_fps: Mapping[str, float]
    runs: tuple[PipelineWindow, ...]
    requests: int
    frames: int
    frames_per_heatmap: float | None
    peak_rss_mb: float
    memory: Memory
    vs_raw: float | None = None
    vs_single_inference: float | None = None
    rounds: tuple[PipelineResult, ...] = ()
    own_ms: float | None = None
    vs_peers: float | None = None
    infer_p50_ms: float | None = None
    thread_ms: Mapping[str, float] = field(default_factory=dict)
    dropped: int = 0
    stale: int = 0
    skipped: int = 0


_R = TypeVar("_R", RawResult, PipelineResult)


def _middle(rounds: Sequence[_R]) -> _R:
    """The round of median FPS, whose details (requests, per-camera FPS, ...) stand for all."""
    return sorted(rounds, key=lambda r: r.fps)[len(rounds) // 2]


def combine_raw(rounds: Sequence[RawResult]) -> RawResult:
    """Rounds of one raw measurement as one: medians of the figures, the highest peak RSS, the median round's
    other details, and the rounds themselves."""
    m = Window.median([Window(r.fps, r.p50_ms, r.p95_ms, r.cpu_pct) for r in rounds])
    return replace(
        _middle(rounds),
        fps=m.fps,
        p50_ms=m.p50_ms,
        p95_ms=m.p95_ms,
        cpu_pct=m.cpu_pct,
        peak_rss_mb=max(r.peak_rss_mb for r in rounds),
        rounds=tuple(rounds),
    )


def combine_pipeline(rounds: Sequence[PipelineResult]) -> PipelineResult:
    """As ``combine_raw``, with the medians of fairness and of the per-round ``vs_raw`` too."""
    m = Window.median([Window(r.fps, r.p50_ms, r.p95_ms, r.cpu_pct) for r in rounds])
    ratios = [r.vs_raw for r in rounds if r.vs_raw is not None]
    own = [r.own_ms for r in rounds if r.own_ms is not None]
    peers = [r.vs_peers for r in rounds if r.vs_peers is not None]
    return replace(
        _middle(rounds),
        fps=m.fps,
        p50_ms=m.p50_ms,
        p95_ms=m.p95_ms,
        cpu_pct=m.cpu_pct,
        fairness=statistics.median(r.fairness for r in rounds),
        vs_raw=statistics.median(ratios) if ratios else None,
        own_ms=statistics.median(own) if own else None,
        vs_peers=statistics.median(peers) if peers else None,
        peak_rss_mb=max(r.peak_rss_mb for r in rounds),
        rounds=tuple(rounds),
    )


@dataclass(frozen=True, slots=True)
class LoopResult:
    """A single-threaded loop over the clip (decoding alone, or the peers' loop): medians of ``runs``; latency
    is each iteration's; ``rounds``: as in ``RawResult``."""

    fps: float
    p50_ms: float
    p95_ms: float
    cpu_pct: float
    runs: tuple[Window, ...]
    peak_rss_mb: float
    rounds: tuple[LoopResult, ...] = ()


def combine_loop(rounds: Sequence[LoopResult]) -> LoopResult:
    """As ``combine_raw``, for loops."""
    m = Window.median([Window(r.fps, r.p50_ms, r.p95_ms, r.cpu_pct) for r in rounds])
    middle = sorted(rounds, key=lambda r: r.fps)[len(rounds) // 2]
    return replace(
        middle,
        fps=m.fps,
        p50_ms=m.p50_ms,
        p95_ms=m.p95_ms,
        cpu_pct=m.cpu_pct,
        peak_rss_mb=max(r.peak_rss_mb for r in rounds),
        rounds=tuple(rounds),
    )


@dataclass(frozen=True, slots=True)
class StartupRun:
    """One start of the daemon: seconds from its process's start to READY (model compiled, sd_notify) and to
    its first heatmap on the broker (None when none came in time)."""

    ready_s: float
    first_heatmap_s: float | None


@dataclass(frozen=True, slots=True)
class StartupResult:
    """Starts of the daemon with one way of caching compiled models: ``cache`` is ``none`` (no ``cache_dir``),
    ``cold`` (an empty one: this start compiles and fills it) or ``warm`` (filled by an earlier start).
    ``ready_s``/``first_heatmap_s``: medians of ``runs``."""

    cache: str
    ready_s: float
    first_heatmap_s: float | None
    runs: tuple[StartupRun, ...]
