"""Figures of the running process from /proc: CPU use, resident memory, threads, open files."""

from __future__ import annotations

import os
import re
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


_CAMERA_PART = re.compile(r"-cam\d+|\d+$|-io\d+")


def stage_of(thread_name: str) -> str:
    """A thread's stage: its name without camera and session numbers (``capture-cam3-io2`` -> ``capture-io``),
    so that the threads of every camera add up."""
    return _CAMERA_PART.sub(lambda m: "-io" if m.group(0).startswith("-io") else "", thread_name) or thread_name


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds used so far by each stage's threads (``stage_of`` their Python names); threads that Python did
    not start (OpenVINO's, the decoder's) by their kernel name, prefixed ``native:``. Threads that ended are
    gone from /proc: take figures while the stages run. Empty off Linux."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[str, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime and stime: fields 14 and 15 of stat(5), the 12th and 13th after the command's closing parenthesis
        seconds = (int(fields[11]) + int(fields[12])) / tick
        python_name = names.get(int(tid))
        key = stage_of(python_name) if python_name else f"native:{stage_of(comm)}"
        out[key] = out.get(key, 0.0) + seconds
    return out
