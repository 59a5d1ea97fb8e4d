"""The daemon soaked under injected faults: a real Mosquitto killed and restarted every minute and a real RTSP
server every 90 s, two RTSP cameras (a box with two IP cameras), for ``EDGE_DEPTH_SOAK_S`` seconds (600 by
default; ``make soak`` runs an hour).

After every fault the test waits until heatmaps of both cameras arrive again, then samples the daemon's resident
memory, threads and open file descriptors from /proc. What one fault leaves behind (a socket, a capture, a
thread blocked in an abandoned open) is small, but it adds up over a box's weeks of flaky Wi-Fi and camera
reboots: the samples after the warm-up must stay flat. The daemon runs with the systemd unit's ``Environment=``
settings, as a box runs it. The table of samples is printed (``pytest -s``) and written to ``soak.txt`` in the
test's temporary directory; its recovery times count from the restarted service accepting connections.

``EDGE_DEPTH_SOAK_BROKER_EVERY_S`` and ``EDGE_DEPTH_SOAK_RTSP_EVERY_S`` shorten the intervals while investigating.
Keep the broker's above 30 s: three lost connections within a minute, each after a reconnect that succeeded at
once, are what another client taking the session over looks like, and the daemon then backs off for minutes.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import BrokerFactory, Mosquitto, MqttRecorder, Received
from tests.support.daemon import REPO, Daemon, daemon_config
from tests.support.rtsp import RtspServer

pytestmark = pytest.mark.slow

SOAK_S = float(os.environ.get("EDGE_DEPTH_SOAK_S", "600"))
BROKER_EVERY_S = float(os.environ.get("EDGE_DEPTH_SOAK_BROKER_EVERY_S", "60"))
RTSP_EVERY_S = float(os.environ.get("EDGE_DEPTH_SOAK_RTSP_EVERY_S", "90"))
CAMERAS = ("front", "back")
SERVICE_UNIT = REPO / "systemd" / "edge-depth.service"
# Generous: two cores shared with other work; a camera's reconnect backoff alone may reach tens of seconds.
START_TIMEOUT_S = 180.0
RECOVERY_TIMEOUT_S = 180.0
# The first faults allocate what every later one reuses (paho's buffers, FFmpeg's RTSP and decoder state,
# malloc's arenas): the plateau is taken after them, from the next few samples.
WARMUP_FAULTS = 2
PLATEAU_SAMPLES = 3
END_SAMPLES = 3
# Measured over this test's ten minutes: with glibc's default malloc arenas, every camera reconnect left a few MB
# resident, 355 -> 390 MB (+10 %) over the run and +3.5 % from the plateau to the end; with two arenas (which
# ``edge-depth run`` sets) the plateau and the end differ by under 0.5 %. 2 % fails the first, passes the second.
RSS_GROWTH_MAX = 0.02
# Threads and descriptors are counts: a leak adds at least one per fault. The median of the last samples may
# exceed the plateau by at most one, a session's I/O thread or socket caught between its end and its exit.
COUNT_SLACK = 1


@dataclass(frozen=True)
class Sample:
    """The daemon's resources right after it recovered from a fault."""

    fault: str
    at_s: float
    recovery_s: float
    rss_mb: float
    threads: int
    fds: int
    thread_names: tuple[str, ...]
    fd_targets: tuple[str, ...]


def sample(pid: int, fault: str, at_s: float, recovery_s: float) -> Sample:
    proc = Path(f"/proc/{pid}")
    status = (proc / "status").read_text().splitlines()
    rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    names: list[str] = []
    for task in sorted(proc.joinpath("task").iterdir()):
        try:
            names.append((task / "comm").read_text().strip())
        except FileNotFoundError:  # the thread ended between the listing and the read
            continue
    targets: list[str] = []
    for fd in sorted(proc.joinpath("fd").iterdir()):
        try:
            targets.append(os.readlink(fd))
        except FileNotFoundError:
            continue
    return Sample(fault, at_s, recovery_s, rss_kb / 1024, len(names), len(targets), tuple(names), tuple(targets))


def table(samples: list[Sample]) -> str:
    lines = [f"{'#':>3} {'fault':<12} {'at s':>7} {'recover s':>9} {'RSS MB':>8} {'threads':>7} {'fds':>4}"]
    for i, s in enumerate(samples):
        lines.append(
            f"{i:>3} {s.fault:<12} {s.at_s:>7.0f} {s.recovery_s:>9.1f} {s.rss_mb:>8.1f} {s.threads:>7} {s.fds:>4}"
        )
    recoveries = [s.recovery_s for s in samples if s.fault != "start"]
    if recoveries:
        lines.append(
            f"{len(recoveries)} faults; recovery s min {min(recoveries):.1f} median "
            f"{statistics.median(recoveries):.1f} max {max(recoveries):.1f}"
        )
    return "\n".join(lines)


def difference(before: tuple[str, ...], after: tuple[str, ...]) -> dict[str, int]:
    """What ``after`` has more (positive) or fewer (negative) of than ``before``: which threads or files leaked."""
    a, b = Counter(before), Counter(after)
    return {k: b[k] - a[k] for k in sorted(a.keys() | b.keys()) if b[k] != a[k]}


class HeatmapRecorder(MqttRecorder):
    """A recorder that keeps heatmaps' topics but not their JPEGs: an hour of them weighs over a hundred MB."""

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic.endswith("/heatmap"):
            message.payload = b""
        super()._on_message(client, userdata, message)


def status_of(message: Received) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(message.payload)
    return value


Find = Callable[[list[Received]], int | None]
"""A condition for ``MqttRecorder.wait_for``: the index just after the message it looked for, None until it came."""


def index_of_status(camera: str, start: int, accept: Callable[[dict[str, Any]], bool]) -> Find:
    """Finds the first status of ``camera`` from index ``start`` on that ``accept`` takes."""

    def find(messages: list[Received]) -> int | None:
        for i in range(start, len(messages)):
            m = messages[i]
            if m.topic == f"ed/{camera}/status" and m.payload and accept(status_of(m)):
                return i + 1
        return None

    return find


def index_of(topic: str, payload: bytes, start: int) -> Find:
    """Finds the first message on ``topic`` with ``payload`` from index ``start`` on."""

    def find(messages: list[Received]) -> int | None:
        for i in range(start, len(messages)):
            if messages[i].topic == topic and messages[i].payload == payload:
                return i + 1
        return None

    return find


def more_reconnects_than(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda status: int(status["reconnects"]) > count


def reconnects(rec: MqttRecorder, camera: str) -> int:
    statuses = [status_of(m) for m in rec.on(f"ed/{camera}/status") if m.payload]
    return int(statuses[-1]["reconnects"]) if statuses else 0


def wait_for_heatmaps(rec: MqttRecorder, after: dict[str, int], timeout: float = RECOVERY_TIMEOUT_S) -> None:
    """Until a heatmap of every camera came after its index in ``after``."""

    def arrived(messages: list[Received]) -> bool:
        return all(any(m.topic == f"ed/{camera}/heatmap" for m in messages[start:]) for camera, start in after.items())

    rec.wait_for(arrived, timeout=timeout)


def service_environment() -> dict[str, str]:
    """The ``Environment=`` settings of the systemd unit: the daemon is soaked as the service runs it."""
    env: dict[str, str] = {}
    for line in SERVICE_UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            for assignment in shlex.split(line.removeprefix("Environment=")):
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


def rtsp_camera(name: str, url: str) -> dict[str, Any]:
    # Defaults otherwise (timeouts, backoff, heatmap): what a box runs with. A frame rate cap keeps two 25 FPS
    # streams from taking both cores of the machine.
    return {"name": name, "source": url, "fps_limit": 5}


class FaultInjector:
    """Restarts the broker and the RTSP server and waits until the daemon's heatmaps flow again."""

    def __init__(self, broker: Mosquitto, rtsp: RtspServer, rec: MqttRecorder) -> None:
        self.broker = broker
        self.rtsp = rtsp
        self.rec = rec

    def inject(self, broker: bool, rtsp: bool) -> float:
        """Seconds from the services being back to heatmaps of both cameras."""
        before = {camera: reconnects(self.rec, camera) for camera in CAMERAS}
        if broker:
            self.broker.kill()
        if rtsp:
            self.rtsp.stop()
            self.rtsp.start()
        if broker:
            self.broker.start()
        back = time.monotonic()
        start = len(self.rec.messages)
        after = dict.fromkeys(CAMERAS, start)
        if broker:
            # The recorder re-subscribes by itself; ``online`` proves the daemon reconnected to the new broker.
            online = self.rec.wait_for(index_of("ed/available", b"online", start), timeout=RECOVERY_TIMEOUT_S)
            after = dict.fromkeys(CAMERAS, online)
        if rtsp:
            # A status counting one more reconnect shows the camera lost the old stream: heatmaps after it come
            # from a new session.
            for camera in CAMERAS:
                lost = index_of_status(camera, start, more_reconnects_than(before[camera]))
                after[camera] = max(after[camera], self.rec.wait_for(lost, timeout=RECOVERY_TIMEOUT_S))
        wait_for_heatmaps(self.rec, after)
        return time.monotonic() - back


def schedule(duration_s: float) -> list[tuple[float, bool, bool]]:
    """(seconds after the start, restart the broker, restart the RTSP server), in order; both at once when due
    together."""
    times: dict[float, tuple[bool, bool]] = {}
    t = BROKER_EVERY_S
    while t < duration_s:
        times[t] = (True, False)
        t += BROKER_EVERY_S
    t = RTSP_EVERY_S
    while t < duration_s:
        times[t] = (times.get(t, (False, False))[0], True)
        t += RTSP_EVERY_S
    return [(t, *times[t]) for t in sorted(times)]


def check_flat(samples: list[Sample]) -> list[str]:
    """What grew between the plateau after the warm-up faults and the end of the run."""
    plateau = samples[1 + WARMUP_FAULTS : 1 + WARMUP_FAULTS + PLATEAU_SAMPLES]
    end = samples[-END_SAMPLES:]
    problems: list[str] = []
    rss_start = statistics.median(s.rss_mb for s in plateau)
    rss_end = statistics.median(s.rss_mb for s in end)
    if rss_end > rss_start * (1 + RSS_GROWTH_MAX):
        problems.append(f"RSS grew {rss_start:.1f} -> {rss_end:.1f} MB (+{100 * (rss_end / rss_start - 1):.1f} %)")
    counts = {
        "threads": ([s.threads for s in plateau], [s.threads for s in end]),
        "open files": ([s.fds for s in plateau], [s.fds for s in end]),
    }
    for what, (at_plateau, at_end) in counts.items():
        first, last = statistics.median(at_plateau), statistics.median(at_end)
        if last > first + COUNT_SLACK:
            problems.append(f"{what} grew {first:g} -> {last:g}")
    if problems:
        problems.append(f"threads: {difference(plateau[0].thread_names, end[-1].thread_names)}")
        problems.append(f"open files: {difference(plateau[0].fd_targets, end[-1].fd_targets)}")
    return problems


def test_memory_threads_and_files_stay_flat_under_broker_and_camera_restarts(
    make_broker: BrokerFactory,
    rtsp_clip: Path,
    int8_ir: Path,
    run_daemon: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    faults = schedule(SOAK_S)
    assert len(faults) >= WARMUP_FAULTS + PLATEAU_SAMPLES + END_SAMPLES, (
        f"EDGE_DEPTH_SOAK_S={SOAK_S:g} gives {len(faults)} faults: too few to tell a plateau from the end"
    )
    broker = make_broker()
    rtsp = RtspServer(rtsp_clip)
    rtsp.start()
    report = tmp_path / "soak.txt"
    samples: list[Sample] = []
    try:
        with HeatmapRecorder(broker.host, broker.port, "ed/#") as rec:
            cameras = [rtsp_camera(name, rtsp.url) for name in CAMERAS]
            daemon = run_daemon(daemon_config(broker, int8_ir, cameras), env=service_environment())
            started = time.monotonic()
            wait_for_heatmaps(rec, dict.fromkeys(CAMERAS, 0), START_TIMEOUT_S)
            t0 = time.monotonic()
            samples.append(sample(daemon.proc.pid, "start", 0.0, t0 - started))
            injector = FaultInjector(broker, rtsp, rec)
            pace = threading.Event()  # never set: its wait paces the schedule
            for due, restart_broker, restart_rtsp in faults:
                pace.wait(max(0.0, t0 + due - time.monotonic()))
                name = "+".join(n for n, on in (("broker", restart_broker), ("rtsp", restart_rtsp)) if on)
                at = time.monotonic() - t0
                recovery = injector.inject(restart_broker, restart_rtsp)
                assert daemon.proc.poll() is None, f"the daemon exited after the {name} fault:\n{daemon.log[-3000:]}"
                samples.append(sample(daemon.proc.pid, name, at, recovery))
                report.write_text(table(samples) + "\n")
            code, _ = daemon.terminate(timeout=30)
            assert code == 0, daemon.log[-3000:]
    finally:
        rtsp.stop()
        shown = table(samples)
        report.write_text(shown + "\n")
        print(f"\nsoak under faults, {SOAK_S:g} s ({report}):\n{shown}")
    problems = check_flat(samples)
    assert not problems, "\n".join([*problems, table(samples)])
