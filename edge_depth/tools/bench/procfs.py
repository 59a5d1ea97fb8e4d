"""Figures of the running process from /proc: CPU use, resident memory, threads, open files."""

from __future__ import annotations

import os
import resource
import threading
from dataclasses import dataclass, field
from pathlib import Path


def proc_count(what: str) -> int:
    """Entries of /proc/self/<what> (``task``: threads, ``fd``: open files); off Linux, Python's thread count
    or -1."""
    try:
        return len(os.listdir(f"/proc/self/{what}"))
    except OSError:
        return threading.active_count() if what == "task" else -1


def status_mb(key: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MB, from /proc/self/status; off Linux, the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_pct(cpu_s: float, wall_s: float) -> float:
    """Process CPU time over wall time, as a percentage of all cores."""
    return 100.0 * cpu_s / max(wall_s, 1e-9) / (os.cpu_count() or 1)


def cpu_ms_per_frame(cpu_percent: float, fps: float) -> float:
    """Process CPU time per frame (ms) from ``cpu_pct`` and frames per second: unlike FPS, other load on the
    machine barely moves it."""
    return cpu_percent / 100.0 * (os.cpu_count() or 1) * 1000.0 / fps


@dataclass(slots=True)
class Samples:
    """RSS (MB), threads and open files of the process, sampled while it runs."""

    rss_mb: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def take(self) -> None:
        self.rss_mb.append(status_mb("VmRSS"))
        self.threads.append(proc_count("task"))
        self.fds.append(proc_count("fd"))
