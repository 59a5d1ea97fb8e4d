"""A Mosquitto broker of our own: started on a free loopback port with a config written for it, stopped at the end.

``edge-depth bench`` runs one for its measurements (``private_broker``) and the tests build their brokers on
``Mosquitto`` (plain, with passwords, with TLS, persistent, bridged to another; paused, killed and restarted on
the same port). ``SilentServer`` is the other kind of fault: a port that accepts connections and never answers.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_DEADLINE_S = 10.0
_STOP_GRACE_S = 5.0  # after SIGTERM, before SIGKILL
_POLL_S = 0.02  # while waiting for the port to accept connections


class MosquittoError(RuntimeError):
    """The broker cannot be started; the message is one line and names the cause."""


@dataclass(frozen=True, slots=True)
class ServerTls:
    """PEM files of the broker's TLS listener; ``require_certificate``: clients must present one signed by ``ca``."""

    ca: Path
    cert: Path
    key: Path
    require_certificate: bool = False


def find_mosquitto() -> Path | None:
    """The broker executable: on ``PATH``, or Debian's ``/usr/sbin/mosquitto`` (not on a user's ``PATH``)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    return Path(found) if found else None


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on now (the kernel's choice); the broker binds it moments later."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class Mosquitto:
    """One mosquitto process on ``host:port`` with its config in ``workdir``; ``stop()`` then ``start()`` keeps
    the port.

    ``users``: name -> password, and anonymous clients refused; ``tls``: a TLS listener instead of plain TCP.
    ``persistent``: sessions and retained messages survive a restart (saved on a clean stop); without it a
    restart forgets everything, like a broker that lost its disk. ``log``: every packet logged to
    ``workdir/mosquitto.log`` (for tests that look at what the broker saw; off for benchmarks, where it costs CPU).
    ``extra_config``: lines appended to the generated config, e.g. a bridge section (``bridge_config``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str] | None = None,
        tls: ServerTls | None = None,
        persistent: bool = False,
        log: bool = False,
        host: str = LOOPBACK,
        extra_config: Sequence[str] = (),
    ) -> None:
        executable = find_mosquitto()
        if executable is None:
            raise MosquittoError("mosquitto not found (on PATH or in /usr/sbin): install it")
        self.executable = executable
        self.host = host
        self.port = free_port(host)
        self.users = dict(users or {})
        self.server_tls = tls
        self.workdir = workdir
        self.log_file = workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.extra_config = tuple(extra_config)
        workdir.mkdir(parents=True, exist_ok=True)
        self._conf = self._write_config(persistent, log)

    def _write_config(self, persistent: bool, log: bool) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            # Started as root (CI), mosquitto would switch to its own user, who cannot read our files.
            f"user {getpass.getuser()}",
            f"persistence {'true' if persistent else 'false'}",
            f"persistence_location {self.workdir}/",
            *([f"log_dest file {self.log_file}", "log_type all"] if log else ["log_dest none"]),
        ]
        if self.users:
            passwords = self.workdir / "passwords"
            for i, (user, password) in enumerate(self.users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(["mosquitto_passwd", "-b", *create, str(passwords), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.server_tls is not None:
            tls = self.server_tls
            lines += [
                f"cafile {tls.ca}",
                f"certfile {tls.cert}",
                f"keyfile {tls.key}",
                f"require_certificate {'true' if tls.require_certificate else 'false'}",
            ]
        # Last: a bridge section ("connection ...") takes every line after it as its own.
        lines += self.extra_config
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        """Starts the broker and returns once its port accepts connections; ``MosquittoError`` if it does not."""
        if self._proc is not None:
            raise MosquittoError(f"mosquitto on {self.host}:{self.port} is already running")
        proc = subprocess.Popen(
            [str(self.executable), "-c", str(self._conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._proc = proc
        deadline = time.monotonic() + START_DEADLINE_S
        pause = threading.Event()  # never set: a sleep between polls of the port
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                raise MosquittoError(f"mosquitto exited at start: {self._why(proc)}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                pause.wait(_POLL_S)
        self.stop()
        raise MosquittoError(f"mosquitto did not listen on {self.host}:{self.port} within {START_DEADLINE_S:g} s")

    def _why(self, proc: subprocess.Popen[bytes]) -> str:
        """The last line mosquitto wrote (stderr, else its log), or its exit code."""
        err = ""
        if proc.stderr is not None:
            err = proc.stderr.read().decode(errors="replace").strip()
            proc.stderr.close()
        text = err or self.log_text().strip()
        return text.splitlines()[-1] if text else f"exit code {proc.returncode}"

    def stop(self) -> None:
        """Stops the broker (SIGTERM, SIGKILL after 5 s); clients see the connection drop. No-op when stopped."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def pause(self) -> None:
        """Freezes the broker (SIGSTOP): connections stay open but nothing is answered."""
        if self._proc is None:
            raise MosquittoError(f"mosquitto on {self.host}:{self.port} is not running")
        self._proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """Crashes the broker (SIGKILL, works on a paused one too): nothing is saved, sockets are reset."""
        proc, self._proc = self._proc, None
        if proc is None:
            raise MosquittoError(f"mosquitto on {self.host}:{self.port} is not running")
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """What the broker logged so far (empty without ``log=True``)."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


@contextmanager
def private_broker() -> Iterator[tuple[str, int]]:
    """An anonymous Mosquitto on a free loopback port, in a temporary directory: yields (host, port), then stops."""
    with tempfile.TemporaryDirectory(prefix="edge-depth-mosquitto-") as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        try:
            yield broker.host, broker.port
        finally:
            broker.stop()


def bridge_config(
    template: str, *, address: str, replace: Mapping[str, str] | None = None, drop: Sequence[str] = ()
) -> list[str]:
    """The directives of a bridge config file (``config/mosquitto-bridge.conf``), ready for ``extra_config``.

    Comments and blank lines go; ``address`` replaces the remote's; ``replace``: directive -> new value;
    ``drop``: directives left out (those the launcher writes itself, such as ``listener`` or ``persistence``).
    """
    values = {"address": address, **(replace or {})}
    lines = []
    for raw in template.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        directive = line.split(maxsplit=1)[0]
        if directive in drop:
            continue
        lines.append(f"{directive} {values[directive]}" if directive in values else line)
    return lines


class SilentServer:
    """A TCP port on loopback that accepts every connection and never sends a byte (a hung broker, or some other
    server behind the MQTT port); ``accepted`` holds the ``time.monotonic()`` of each accepted connection."""

    def __init__(self, host: str = LOOPBACK) -> None:
        self.host = host
        self._sock = socket.create_server((host, 0))
        self.port: int = self._sock.getsockname()[1]
        self.accepted: list[float] = []
        self._cond = threading.Condition()
        self._clients: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"silent-server-{self.port}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:  # closed
                return
            with self._cond:
                if self._closed:
                    client.close()
                    return
                self._clients.append(client)  # kept open, never read: the peer waits for an answer
                self.accepted.append(time.monotonic())
                self._cond.notify_all()

    def wait_for_connections(self, count: int, timeout: float) -> bool:
        """True once ``count`` connections were accepted, False after ``timeout`` s."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.accepted) >= count, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            clients, self._clients = self._clients, []
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(), which close() alone does not
        self._sock.close()
        for client in clients:
            client.close()
        self._thread.join(5)

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
