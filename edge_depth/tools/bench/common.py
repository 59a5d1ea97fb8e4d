"""What every part of the bench shares: its error, its plan, its constants and its progress output."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "int8")
REPO = Path(__file__).resolve().parents[3]
DEFAULT_CLIP = REPO / "tests" / "fixtures" / "video" / "solidWhiteRight.mp4"
DEFAULT_JSON = Path("bench-results") / "bench.json"
TOPIC_PREFIX = "edge-depth-bench"
HEATMAP_EVERY = 5  # a heatmap for every 5th frame: a busy but plausible dashboard
OFFERED_FPS = 15.0  # a typical camera's rate, for the latency run
TORCH_THREADS = 2
LIVE_CAMERAS = (4, 8)  # RTSP cameras at once: a typical install, and twice that to find where it saturates
LIVE_FPS_LIMIT = 10.0  # each live camera's fps_limit: what a depth alarm needs, well under the cameras' 25


class BenchError(Exception):
    """A benchmark that cannot run; the message is one line and names the culprit."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure: frames per pipeline repetition (all cameras together), seconds per raw/torch
    repetition, repetitions after warm-up, warm-up frames per camera, frames of the memory run and of the
    latency run, and the camera counts run at maximum speed."""

    frames: int
    seconds: float
    repeat: int
    warmup_frames: int
    long_frames: int
    latency_frames: int
    cameras: tuple[int, ...]

    @staticmethod
    def make(
        *,
        short: bool,
        cameras: tuple[int, ...],
        frames: int | None = None,
        seconds: float | None = None,
        repeat: int | None = None,
        long_frames: int | None = None,
    ) -> Plan:
        """The full plan, or ``short`` (a smoke test of a few hundred frames); given figures win."""
        return Plan(
            frames=frames or (150 if short else 1000),
            seconds=seconds or (1.0 if short else 5.0),
            repeat=repeat or (2 if short else 3),
            warmup_frames=30 if short else 100,
            long_frames=long_frames or (300 if short else 20_000),
            latency_frames=40 if short else 250,
            cameras=cameras,
        )


def say(text: str) -> None:
    """Progress, on stderr: stdout carries the table only."""
    print(text, file=sys.stderr, flush=True)
