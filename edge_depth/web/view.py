"""The daemon's read-only view for the console (:class:`~edge_depth.web.source.ConsoleSource`), made of its stages,
its MQTT client and the tap; the daemon and ``edge-depth bench`` both build one."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge_depth.alerts.camera import ZoneProbe
from edge_depth.capture.reader import CaptureState
from edge_depth.config.schema import CameraConfig
from edge_depth.mqtt.client import PublishStats
from edge_depth.stages import Stages
from edge_depth.web.source import EngineFacts
from edge_depth.web.tap import DaemonTap, HeatmapFeed


class StagesView:
    """:class:`~edge_depth.web.source.ConsoleSource` over running stages.

    ``camera_status(name)`` and ``stats()``: the daemon's own payload builders (the bench passes simpler ones);
    ``mqtt``: the client's counters, None without a client. Commands go through ``stages.pipeline.call_soon``, so
    alert state changes only on the output worker, between frames, as MQTT commands do.
    """

    def __init__(
        self,
        stages: Stages,
        tap: DaemonTap,
        cameras: Sequence[CameraConfig],
        *,
        camera_status: Callable[[str], dict[str, Any]],
        stats: Callable[[], dict[str, Any]],
        mqtt: Callable[[], PublishStats | None],
        infer_size: tuple[int, int],
    ) -> None:
        self._stages = stages
        self._tap = tap
        self._cameras = tuple(cam for cam in cameras if cam.name in stages.outputs)
        self._camera_status = camera_status
        self._stats = stats
        self._mqtt = mqtt
        self._infer_size = infer_size

    def cameras(self) -> Sequence[CameraConfig]:
        return self._cameras

    def camera_status(self, name: str) -> dict[str, Any]:
        return self._camera_status(name)

    def capture_state(self, name: str) -> CaptureState | None:
        reader = self._stages.readers.get(name)
        return None if reader is None else reader.state()

    def stats(self) -> dict[str, Any]:
        return self._stats()

    def heatmaps(self, name: str) -> HeatmapFeed:
        return self._tap.feeds[name]

    def camera_image(self, name: str) -> np.ndarray | None:
        frame = self._tap.latest_frame(name)
        return None if frame is None else frame.image

    def probe(self, name: str, polygon: Sequence[tuple[float, float]], enter: float | None) -> ZoneProbe | None:
        return self._stages.outputs[name].alerts.probe(polygon, enter)

    def zone_states(self, name: str) -> dict[str, bool]:
        return self._tap.zone_states(name)

    def events(self) -> list[dict[str, Any]]:
        return self._tap.events()

    def open_alerts(self) -> list[dict[str, Any]]:
        return self._tap.open_alerts()

    def acknowledge(self, event_id: str, timeout: float) -> bool | None:
        camera = self._tap.camera_of(event_id)
        output = self._stages.outputs.get(camera) if camera is not None else None
        if output is None:
            return None
        done = threading.Event()
        answer: list[bool] = []

        def run() -> None:
            answer.append(output.alerts.acknowledge(event_id))
            done.set()

        self._stages.pipeline.call_soon(run)
        return answer[0] if done.wait(timeout) else None

    def reset_baseline(self, name: str) -> None:
        self._stages.pipeline.call_soon(self._stages.outputs[name].alerts.reset_baseline)

    def engine(self) -> EngineFacts:
        info = self._stages.engine.info
        return EngineFacts(
            name=info.name,
            precision=info.precision,
            devices=info.execution_devices,
            compiled=bool(info.execution_devices),
            infer_size=self._infer_size,
        )

    def infer(self, image: np.ndarray) -> np.ndarray:
        return self._stages.engine.infer(image)

    def mqtt(self) -> PublishStats | None:
        return self._mqtt()
