"""The real daemon as a subprocess (``python -m edge_depth.cli run``), with its log kept for assertions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.broker import Mosquitto

REPO = Path(__file__).resolve().parents[2]


def daemon_config(
    broker: Mosquitto | None,
    model: Path,
    cameras: list[dict[str, Any]],
    **sections: Any,
) -> dict[str, Any]:
    """A config dict: ``broker`` gives host and port; ``sections`` override or add whole sections.

    The web console is off unless a test asks for it: its default port is fixed, and daemons of tests that run
    side by side (or a developer's own daemon) would compete for it.
    """
    mqtt: dict[str, Any] = {"topic_prefix": "ed", "reconnect_min_s": 0.5, "reconnect_max_s": 2, "stats_interval_s": 2}
    if broker is not None:
        mqtt |= {"host": broker.host, "port": broker.port}
    mqtt |= sections.pop("mqtt", {})
    web = sections.pop("web", {"enabled": False})
    return {"mqtt": mqtt, "model": {"path": str(model)}, "cameras": cameras, "web": web, **sections}


class Daemon:
    """``edge-depth run`` in a subprocess. Its stderr is collected line by line, so tests can wait on a log line."""

    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = workdir / "edge-depth.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.lines: list[str] = []
        self._cond = threading.Condition()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_depth.cli", "run", "--config", str(self.config_path)],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_log(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        """The first log line for which ``predicate`` is true; fails with the log tail otherwise."""
        with self._cond:
            found: list[str] = []

            def check() -> bool:
                found[:] = [line for line in self.lines if predicate(line)][:1]
                return bool(found) or self.proc.poll() is not None

            self._cond.wait_for(check, timeout)
            if not found:
                pytest.fail(f"no such log line within {timeout} s (exit {self.proc.poll()}); log:\n{self.log[-3000:]}")
            return found[0]

    def terminate(self, timeout: float = 10) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def run_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``run_daemon(config, env=None)`` starts a daemon; every one started is killed after the test."""
    daemons: list[Daemon] = []

    def start(config: dict[str, Any], env: dict[str, str] | None = None) -> Daemon:
        workdir = tmp_path / f"daemon{len(daemons)}"
        workdir.mkdir()
        daemons.append(Daemon(config, workdir, env))
        return daemons[-1]

    yield start
    for daemon in daemons:
        daemon.kill()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition that has no event to wait on (another process's log file) until a deadline."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        pause.wait(0.1)


def status_of(payload: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(payload)
    return value


@pytest.fixture(scope="session")
def int8_ir(synthetic_ir_dir: Path) -> Path:
    """The INT8 IR converted from the synthetic weights by the real CLI (tests only: its output is not depth)."""
    return synthetic_ir_dir / "midas_small_int8.xml"
