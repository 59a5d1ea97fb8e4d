"""Per-camera alert configuration (depth reference, zones, falls, depth health). Filled in by the alerts work."""

from __future__ import annotations

from edge_depth.config_base import StrictModel


class CameraAlertsConfig(StrictModel):
    """Alerts of one camera. Empty until the alerts issue lands."""
