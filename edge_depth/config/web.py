"""The ``web`` section: the console the daemon serves (dashboard, zone editor, photo tryout, JSON API, metrics).

Loopback only by default. Binding any other address exposes heatmaps and alert commands to the network, so it
needs a token (``${credential:web_token}`` or ``${WEB_TOKEN}``): the schema rejects a non-loopback ``host``
without one, at the ``token`` key.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from edge_depth.config.base import StrictModel

DEFAULT_PORT = 8088
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 512


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only ever means this machine: ``localhost`` or 127.0.0.0/8, ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebConfig(StrictModel):
    enabled: bool = Field(True, description="Serve the web console and its API from the daemon.")
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        max_length=253,
        description="Address to listen on. Anything but loopback (127.0.0.1, ::1, localhost) needs a token.",
    )
    port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="TCP port of the console.")
    token: SecretStr | None = Field(
        None,
        description="Access token (at least 16 characters): use ${credential:NAME} or ${ENV_VAR}, not a literal. "
        "When set, every page and API call except /healthz and /readyz needs it.",
    )
    max_upload_mb: float = Field(
        10.0, gt=0, le=200, description="Largest photo accepted by 'Try a photo' (MB); larger ones get 413."
    )
    max_image_megapixels: float = Field(
        40.0, gt=0, le=400, description="Largest photo accepted by 'Try a photo' (megapixels); larger ones get 413."
    )
    predict_queue: int = Field(
        2, ge=0, le=32, description="Photos that may wait while one is inferred; more at once get 503."
    )
    predict_cache: int = Field(
        32, ge=0, le=1000, description="Photo results kept by content hash, so a repeat needs no inference."
    )
    max_stream_clients: int = Field(8, ge=1, le=256, description="MJPEG viewers at once per camera; more get 503.")
    recent_events: int = Field(200, ge=10, le=100_000, description="Alert events kept for /api/events.")
    show_camera_image: bool = Field(
        False,
        description="Let the zone editor show the camera's own picture; off by default for privacy (heatmap only).",
    )

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not MIN_TOKEN_CHARS <= len(value.get_secret_value()) <= MAX_TOKEN_CHARS:
            raise ValueError(f"must be {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} characters long")
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebConfig:
        if self.enabled and self.token is None and not is_loopback(self.host):
            raise PydanticCustomError(
                "web_token_required",
                "web.host is not a loopback address: set a token (${credential:web_token} or ${WEB_TOKEN})",
                {"key": "token"},
            )
        return self
