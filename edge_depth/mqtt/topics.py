"""MQTT topic names: every topic edge-depth publishes to or listens on, in one place.

Layout (Frigate-like): ``<prefix>/available`` and ``<prefix>/stats`` for the daemon, ``<prefix>/<camera>/...``
for each camera. Camera and zone names are validated by the config schema (no ``/``, ``+`` or ``#``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Topic names under one prefix, e.g. ``Topics("edge-depth").status("porch")`` is ``edge-depth/porch/status``."""

    prefix: str

    @property
    def available(self) -> str:
        """Retained ``online``/``offline``; ``offline`` is also the last will."""
        return f"{self.prefix}/available"

    @property
    def stats(self) -> str:
        """Periodic JSON with the daemon's counters."""
        return f"{self.prefix}/stats"

    def for_camera(self, camera: str, leaf: str) -> str:
        """``<prefix>/<camera>/<leaf>``; ``leaf`` may have several levels (``baseline/reset``)."""
        return f"{self.prefix}/{camera}/{leaf}"

    def status(self, camera: str) -> str:
        """Retained JSON status of one camera."""
        return self.for_camera(camera, "status")

    def heatmap(self, camera: str) -> str:
        """Raw JPEG bytes, QoS 0."""
        return self.for_camera(camera, "heatmap")

    def alert(self, camera: str) -> str:
        """Alert lifecycle JSON (new/update/end), QoS 1."""
        return self.for_camera(camera, "alert")

    def alert_snapshot(self, camera: str) -> str:
        """JPEG of the frame that raised the latest alert."""
        return self.for_camera(camera, "alert/snapshot")

    def alert_ack(self, camera: str) -> str:
        """Incoming: acknowledges (clears) a latched alert."""
        return self.for_camera(camera, "alert/ack")

    def zone_state(self, camera: str, zone: str) -> str:
        """Retained state of one zone of one camera."""
        return self.for_camera(camera, f"{zone}/state")

    def command(self, camera: str, name: str) -> str:
        """Incoming command for one camera, e.g. ``command("porch", "baseline/reset")``."""
        return self.for_camera(camera, name)
