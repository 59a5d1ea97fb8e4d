"""The web console the daemon serves: dashboard, zone editor, photo tryout, JSON API, /metrics, /healthz, /readyz.

- ``source``: :class:`ConsoleSource`, the read-only protocol through which the console sees the daemon;
- ``tap``: :class:`DaemonTap`, which keeps what the outputs publish (heatmap JPEGs, alert events, zone states);
- ``view``: :class:`StagesView`, the daemon's implementation of the protocol over its stages;
- ``app``: the FastAPI routes and pages (``static/``); ``auth``: token, session cookie, cross-site and Host checks;
  ``photos``: uploads on the daemon's engine; ``configcheck``: YAML through the schema; ``metrics``: Prometheus;
- ``server``: :class:`WebServer`, uvicorn in a daemon thread.
"""

from edge_depth.web.server import WebError, WebServer
from edge_depth.web.source import ConsoleSource, EngineFacts
from edge_depth.web.tap import DaemonTap
from edge_depth.web.view import StagesView

__all__ = ["ConsoleSource", "DaemonTap", "EngineFacts", "StagesView", "WebError", "WebServer"]
