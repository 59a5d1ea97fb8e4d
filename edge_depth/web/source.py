"""What the console reads of the daemon: one small read-only protocol, so the web package never holds the Service.

The daemon provides it (``view.StagesView`` over its stages, its MQTT client and the tap); the console's routes
only call these methods. Every method may be called from any thread; none blocks the cameras: reads are of values
the output worker has already made, and the two commands are queued for the output worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge_depth.alerts.camera import ZoneProbe
from edge_depth.capture.reader import CaptureState
from edge_depth.config.schema import CameraConfig
from edge_depth.mqtt.client import PublishStats
from edge_depth.web.tap import HeatmapFeed


@dataclass(frozen=True, slots=True)
class EngineFacts:
    """The model as the console shows it: ``compiled`` once OpenVINO compiled it for the cameras' input,
    ``infer_size`` the (width, height) photos are inferred at (a size compiled at start: no new compile)."""

    name: str
    precision: str
    devices: tuple[str, ...]
    compiled: bool
    infer_size: tuple[int, int]


class ConsoleSource(Protocol):
    """The daemon, read-only, as the web console sees it."""

    def cameras(self) -> Sequence[CameraConfig]:
        """The enabled cameras' configs, in config order."""
        ...

    def camera_status(self, name: str) -> dict[str, Any]:
        """The camera's status payload, as published on ``<prefix>/<camera>/status`` (sources redacted)."""
        ...

    def capture_state(self, name: str) -> CaptureState | None:
        """The capture counters of the camera's reader."""
        ...

    def stats(self) -> dict[str, Any]:
        """The daemon's ``<prefix>/stats`` payload."""
        ...

    def heatmaps(self, name: str) -> HeatmapFeed:
        """The camera's latest published heatmap JPEG, and a way to wait for the next one."""
        ...

    def camera_image(self, name: str) -> np.ndarray | None:
        """The camera's latest frame as the model saw it, (h, w, 3) uint8 BGR; None before the first frame."""
        ...

    def probe(self, name: str, polygon: Sequence[tuple[float, float]], enter: float | None) -> ZoneProbe | None:
        """A polygon on the camera's latest frame, measured with the camera's current depth reference."""
        ...

    def zone_states(self, name: str) -> dict[str, bool]:
        """Zone (and ``fall``) -> ON?, as last published."""
        ...

    def events(self) -> list[dict[str, Any]]:
        """Recent alert events (the MQTT payloads), oldest first."""
        ...

    def open_alerts(self) -> list[dict[str, Any]]:
        """The latest event of every alert that has not ended, oldest first."""
        ...

    def acknowledge(self, event_id: str, timeout: float) -> bool | None:
        """Acknowledge an open alert on the output worker; True/False as ``CameraAlerts.acknowledge`` answered,
        None when unknown here or not answered within ``timeout`` seconds."""
        ...

    def reset_baseline(self, name: str) -> None:
        """Relearn the camera's empty scene (queued for the output worker)."""
        ...

    def engine(self) -> EngineFacts:
        """The model the daemon runs."""
        ...

    def infer(self, image: np.ndarray) -> np.ndarray:
        """(h, w, 3) uint8 BGR at ``engine().infer_size`` -> (h, w) float32 relative inverse depth."""
        ...

    def mqtt(self) -> PublishStats | None:
        """The MQTT client's counters; None when the daemon has none."""
        ...
