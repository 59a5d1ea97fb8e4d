"""The console's HTTP server: uvicorn in a thread of the daemon, on a socket bound before anything starts.

Binding first (in the daemon's main thread) makes a port in use a startup error with the key to change, not a
log line from a thread. ``stop`` ends open MJPEG streams, closes the photo worker and gives uvicorn a short
grace, within the daemon's shutdown budget.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from edge_depth.config.web import WebConfig
from edge_depth.web.app import create_app
from edge_depth.web.metrics import make_registry
from edge_depth.web.photos import PhotoDepth
from edge_depth.web.source import ConsoleSource
from edge_depth.web.tap import DaemonTap

log = logging.getLogger(__name__)

_GRACE_S = 1  # s, uvicorn's wait for open requests at stop; streams end on their own before it


class WebError(Exception):
    """The console cannot listen (address in use, not an address of this machine). One line naming the key."""


class WebServer:
    """The console for ``source``, listening on ``cfg.host``:``cfg.port`` (``port`` overrides it; 0 = any free
    port, for the bench). ``tap``: the daemon's tap, whose metrics the console exposes."""

    def __init__(self, cfg: WebConfig, source: ConsoleSource, tap: DaemonTap, *, port: int | None = None) -> None:
        self.cfg = cfg
        self._stopping = threading.Event()
        self.photos = PhotoDepth(
            source.infer,
            source.engine().infer_size,
            max_bytes=int(cfg.max_upload_mb * 1_000_000),
            max_pixels=int(cfg.max_image_megapixels * 1_000_000),
            queue=cfg.predict_queue,
            cache=cfg.predict_cache,
        )
        app = create_app(
            source, cfg, registry=make_registry(tap.metrics, source), photos=self.photos, stopping=self._stopping
        )
        self._socket = _listen(cfg.host, cfg.port if port is None else port)
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_config=None,  # the daemon's logging (redacting, JSON when configured) handles uvicorn's records
            access_log=False,
            timeout_graceful_shutdown=_GRACE_S,
            lifespan="off",
            ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="console", daemon=True)

    @property
    def url(self) -> str:
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()
        log.info("web console on %s%s", self.url, " (token required)" if self.cfg.token else "")

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except Exception:
            log.exception("web console stopped unexpectedly")

    def stop(self, timeout: float = 1.5) -> None:
        """End streams and the server within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self.photos.close()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(max(0.1, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(max(0.1, deadline - time.monotonic()))
        self._socket.close()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
        sock.listen(64)
    except OSError as exc:
        raise WebError(
            f"web: cannot listen on {host}:{port} ({exc.strerror or exc}); change web.port or web.host"
        ) from None
    sock.setblocking(False)
    return sock
