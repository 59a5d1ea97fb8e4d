"""The retained status of one camera (``<prefix>/<camera>/status``), made from its capture state, its output
figures and the model, in one place so that what it says can be checked without a daemon.

Rates describe frames that flow: a camera that is not ``online`` (starting, reconnecting, in error, ended,
stopped) reports every rate as 0, whatever its meters last measured.
"""

from __future__ import annotations

from typing import Any

from edge_depth.capture.quality import connection_quality
from edge_depth.capture.reader import CaptureState
from edge_depth.model.engine import ModelInfo
from edge_depth.timestamps import iso_utc

RATES = ("fps", "capture_fps", "delivered_fps")
"""The status fields in frames per second: zero unless the camera is online."""


def camera_status(
    name: str,
    state: CaptureState | None,
    figures: dict[str, Any],
    info: ModelInfo | None,
    *,
    depth_reliable: bool | None = None,
) -> dict[str, Any]:
    """The status payload of camera ``name``: ``state`` from its reader (None before it has one), ``figures``
    from ``CameraOutput.figures``, ``info`` the engine's model (None when unknown), ``depth_reliable`` from its
    depth health (False turns ``online`` into ``depth unreliable``; None: not judged yet)."""
    capture = state.state if state else "starting"
    payload: dict[str, Any] = {
        "camera": name,
        "state": capture,
        "since": iso_utc(state.since) if state else None,
        "source": state.source if state else None,
        "capture_fps": round(state.fps, 2) if state else 0.0,
        "delivered_fps": state.delivered_fps if state else None,
        "expected_fps": _rounded(state.expected_fps) if state else None,
        "frames_read": state.frames_read if state else 0,
        "frames_dropped": state.frames_dropped if state else 0,
        "frames_skipped": state.frames_skipped if state else 0,
        "reconnects": state.reconnects if state else 0,
        "reconnects_last_hour": state.reconnects_last_hour if state else 0,
        "stalls": state.stalls if state else 0,
        "stalls_last_hour": state.stalls_last_hour if state else 0,
        "connection_quality": None
        if state is None
        else connection_quality(
            capture,
            delivered_fps=state.delivered_fps,
            expected_fps=state.expected_fps,
            reconnects_last_hour=state.reconnects_last_hour,
            stalls_last_hour=state.stalls_last_hour,
        ),
        "last_error": state.last_error if state else None,
        "device": ",".join(info.execution_devices) if info else None,
        "device_requested": info.device if info else None,
        "model": info.name if info else None,
        "precision": info.precision if info else None,
        "inference_precision": info.inference_precision or None if info else None,
    }
    payload.update(figures)
    if capture != "online":
        payload.update(dict.fromkeys(RATES, 0.0))
    elif depth_reliable is False:
        payload["state"] = "depth unreliable"  # frames flow, but alerts are suppressed: say so
    return payload


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
