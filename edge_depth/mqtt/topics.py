"""MQTT topic names: every topic edge-depth publishes to or listens on, in one place.

Layout (Frigate-like): ``<prefix>/available`` and ``<prefix>/stats`` for the daemon, ``<prefix>/<camera>/...``
for each camera, and Home Assistant's ``<discovery_prefix>/...``. Camera and zone names are validated by the
config schema (no ``/``, ``+`` or ``#``). No other module spells a topic: a new topic is a method here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Topic names under one prefix, e.g. ``Topics("edge-depth").status("porch")`` is ``edge-depth/porch/status``."""

    prefix: str
    discovery_prefix: str = "homeassistant"

    @property
    def available(self) -> str:
        """Retained ``online``/``offline``; ``offline`` is also the last will."""
        return f"{self.prefix}/available"

    @property
    def stats(self) -> str:
        """Periodic JSON with the daemon's counters."""
        return f"{self.prefix}/stats"

    def _camera(self, camera: str, leaf: str) -> str:
        return f"{self.prefix}/{camera}/{leaf}"

    def status(self, camera: str) -> str:
        """Retained JSON status of one camera."""
        return self._camera(camera, "status")

    def heatmap(self, camera: str) -> str:
        """Raw JPEG bytes, QoS 0."""
        return self._camera(camera, "heatmap")

    def alert(self, camera: str) -> str:
        """Alert lifecycle JSON (new/update/end), QoS 1."""
        return self._camera(camera, "alert")

    def alert_snapshot(self, camera: str) -> str:
        """JPEG of the frame that raised the latest alert."""
        return self._camera(camera, "alert/snapshot")

    def alert_ack(self, camera: str) -> str:
        """Incoming: acknowledges (clears) a latched alert."""
        return self._camera(camera, "alert/ack")

    def zone_state(self, camera: str, zone: str) -> str:
        """Retained state of one zone of one camera."""
        return self._camera(camera, f"{zone}/state")

    def nearest(self, camera: str) -> str:
        """Retained JSON with the nearest distance in the camera's view (the nearest-distance sensor's state)."""
        return self._camera(camera, "nearest")

    def baseline_reset(self, camera: str) -> str:
        """Incoming: relearn the camera's empty scene."""
        return self._camera(camera, "baseline/reset")

    @property
    def homeassistant_status(self) -> str:
        """Incoming: Home Assistant's birth message (``online`` after it restarts: discovery is due again)."""
        return f"{self.discovery_prefix}/status"

    def discovery(self, component: str, node_id: str, object_id: str) -> str:
        """Retained Home Assistant discovery config of one entity."""
        return f"{self.discovery_prefix}/{component}/{node_id}/{object_id}/config"
