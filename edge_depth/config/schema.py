"""The daemon's configuration schema: one YAML file, validated by these strict models.

Every field has a description and bounds; unknown keys are errors. Reading the file (line numbers,
``${ENV}`` and ``${credential:NAME}`` substitution, error text) is ``loader.py``'s job.

Conventions the models follow for the generic code around them:

- Relative paths (``model.path``, TLS files, a file or recording camera's ``source``, any ``Path`` field)
  are resolved against the directory of the config file by ``paths.resolve_paths``, so ``check-config``
  and the daemon agree whatever their working directory.
- A ``Path`` field with ``json_schema_extra=MUST_EXIST`` must name an existing, readable file.
- A validator can point its error at a sub-key by raising ``PydanticCustomError(type, message, {"key": "name"})``
  (or a tuple such as ``(2, "name")``); ``errors.py`` then reports that key and its line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from edge_depth.config.alerts import CameraAlertsConfig
from edge_depth.config.base import MUST_EXIST, StrictModel
from edge_depth.config.sources import SourceKind, classify_source
from edge_depth.config.web import WebConfig

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_TOPIC_PREFIX = r"^[^#+/\s][^#+\s]*[^#+/\s]$|^[^#+/\s]$"

Seconds = Annotated[float, Field(gt=0, le=3600)]

# Strings that reach the broker or the filesystem: paho sends what it is given (a NUL or newline in a topic or
# client id gets the connection dropped, a lone surrogate or a string over MQTT's 65,535 bytes kills its network
# thread at connect), and a NUL in a path fails every open. Checked before the field's own constraints.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_MQTT_FORBIDDEN = {"host": "/#+", "client_id": "#+", "topic_prefix": "#+", "username": "#+", "discovery_prefix": "#+"}
_MQTT_STRING_BYTES = 65535
_PATH_MAX_BYTES = 4096  # PATH_MAX
_PASSWORD_MAX_CHARS = 4096  # long tokens (JWTs) are used as passwords; far below MQTT's 65,535 bytes


def _text_rules(value: object, field: str | None, *, forbidden: str = "", spaces: bool = True) -> object:
    """`value` unchanged when it is no string or a usable one; ValueError naming the first rule it breaks."""
    if not isinstance(value, str):
        return value
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (newline, NUL, ...) or invalid Unicode")
    if not spaces and any(char.isspace() for char in value):
        raise ValueError("must not contain spaces")
    bad = [char for char in forbidden if char in value]
    if bad:
        shown = " or ".join(repr(char) for char in bad)
        why = "reserved for MQTT topic wildcards" if set(bad) <= {"#", "+"} else "not part of a host name or address"
        raise ValueError(f"must not contain {shown} ({why})")
    limit = _PATH_MAX_BYTES if field is None else _MQTT_STRING_BYTES
    if len(value.encode()) > limit:
        raise ValueError(f"must not be longer than {limit} bytes (UTF-8)")
    return value


_RELATIVE = " Relative to the config file's directory."


def _path_rules(value: object) -> object:
    return _text_rules(value, None)


# model.input_size: MiDaS v2.1 small's encoder stride; the engine checks the IR's own multiple again
_SIDE_MULTIPLE, _MIN_SIDE, _MAX_SIDE = 32, 32, 1024


class TlsConfig(StrictModel):
    ca_file: Path | None = Field(
        None,
        description="PEM file of the CA that signed the broker's certificate; the system CAs when unset." + _RELATIVE,
        json_schema_extra=MUST_EXIST,
    )
    cert_file: Path | None = Field(
        None,
        description="Client certificate (PEM) for brokers that require one." + _RELATIVE,
        json_schema_extra=MUST_EXIST,
    )
    key_file: Path | None = Field(
        None, description="Private key (PEM) of cert_file." + _RELATIVE, json_schema_extra=MUST_EXIST
    )
    insecure: bool = Field(
        False, description="Skip the broker hostname check. For tests with self-signed certificates only."
    )

    _paths = field_validator("ca_file", "cert_file", "key_file", mode="before")(_path_rules)

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "cert_file" if self.cert_file is None else "key_file"
            raise PydanticCustomError("tls_pair", "cert_file and key_file must be given together", {"key": missing})
        return self


class MqttConfig(StrictModel):
    host: str = Field("localhost", min_length=1, max_length=253, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    client_id: str = Field("edge-depth", min_length=1, max_length=128, description="MQTT client id; unique per broker.")
    topic_prefix: str = Field(
        "edge-depth",
        pattern=_TOPIC_PREFIX,
        max_length=128,
        description="Prefix of every topic: <prefix>/available, <prefix>/<camera>/status, ...",
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive interval (s).")
    username: str | None = Field(
        None, min_length=1, max_length=1024, description="User name, when the broker requires one."
    )
    password: SecretStr | None = Field(
        None,
        description="Password: use ${ENV_VAR} or ${credential:NAME} (systemd LoadCredential=), not a literal."
        " At most 4096 characters.",
    )
    tls: TlsConfig | None = Field(None, description="TLS settings; plain TCP when absent.")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First reconnect delay after a lost broker (s).")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="Cap of the exponential reconnect delay (s).")
    max_queued_alerts: int = Field(
        1000, ge=10, le=100_000, description="Alerts (QoS 1) kept while the broker is away; heatmaps are dropped."
    )
    stats_interval_s: float = Field(30.0, ge=1, le=3600, description="Period of <prefix>/stats and status (s).")

    @field_validator("host", "client_id", "topic_prefix", "username", mode="before")
    @classmethod
    def _usable_by_mqtt(cls, value: object, info: ValidationInfo) -> object:
        field = info.field_name or ""
        return _text_rules(value, field, forbidden=_MQTT_FORBIDDEN[field], spaces=field != "host")

    @field_validator("password")
    @classmethod
    def _password_size(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never shows the value. MQTT carries it as binary data: only its size and encoding matter.
        secret = "" if value is None else value.get_secret_value()
        if len(secret) > _PASSWORD_MAX_CHARS:
            raise ValueError(f"must not be longer than {_PASSWORD_MAX_CHARS} characters")
        try:
            secret.encode()
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
        return value

    @model_validator(mode="after")
    def _password_needs_username(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise PydanticCustomError(
                "password_without_username", "password is set but username is not", {"key": "password"}
            )
        if self.reconnect_max_s < self.reconnect_min_s:
            raise PydanticCustomError(
                "backoff_order", "must not be smaller than reconnect_min_s", {"key": "reconnect_max_s"}
            )
        return self


class ModelConfig(StrictModel):
    path: Path = Field(
        Path("models/midas_small_int8.xml"),
        description="OpenVINO IR (.xml, its .bin beside it) from `convert`." + _RELATIVE,
        json_schema_extra=MUST_EXIST,
    )
    device: Literal["CPU", "GPU", "NPU", "AUTO"] = Field("CPU", description="OpenVINO device to compile for.")
    performance_hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] = Field(
        "THROUGHPUT", description="OpenVINO performance hint: THROUGHPUT for several streams, LATENCY for one."
    )
    input_size: str = Field(
        "auto",
        description="Model input 'WxH' (multiples of 32), or 'auto': longer side 256 with the camera's aspect ratio.",
    )
    infer_requests: int = Field(
        0,
        ge=0,
        le=16,
        description="Parallel inference requests; 0 = automatic: OpenVINO's optimal number for LATENCY, twice it "
        "for the THROUGHPUT hints (a stream then never waits for Python to take its last result).",
    )
    inference_precision: Literal["auto", "f32", "bf16", "f16"] = Field(
        "auto",
        description="What float layers compute in: 'auto' is OpenVINO's choice (bf16 on CPUs with AVX-512 BF16 or "
        "AMX, fastest); 'f32' for full FP32 accuracy at about half the speed there.",
    )
    cache_dir: Path | None = Field(
        None, description="OpenVINO compiled-model cache directory (faster restarts); off when unset." + _RELATIVE
    )

    _paths = field_validator("path", "cache_dir", mode="before")(_path_rules)

    @field_validator("input_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if value == "auto":
            return value
        m = re.fullmatch(r"(\d+)x(\d+)", value)
        if not m:
            raise ValueError("must be 'auto' or 'WxH', for example '256x192'")
        w, h = int(m[1]), int(m[2])
        if (
            w % _SIDE_MULTIPLE
            or h % _SIDE_MULTIPLE
            or not (_MIN_SIDE <= w <= _MAX_SIDE and _MIN_SIDE <= h <= _MAX_SIDE)
        ):
            raise ValueError("width and height must be multiples of 32 between 32 and 1024")
        return value

    def fixed_input_size(self) -> tuple[int, int] | None:
        """(width, height) when set explicitly, None for 'auto'."""
        if self.input_size == "auto":
            return None
        w, h = self.input_size.split("x")
        return int(w), int(h)


class HeatmapConfig(StrictModel):
    rate_hz: float = Field(1.0, ge=0, le=30, description="Heatmaps published per second; 0 turns them off.")
    height: int = Field(270, ge=32, le=2160, description="Heatmap height (px); the width keeps the aspect ratio.")
    colormap: Literal["inferno", "magma", "plasma", "viridis", "turbo", "jet", "bone"] = Field(
        "inferno", description="OpenCV colormap; bright = near."
    )
    jpeg_quality: int = Field(70, ge=1, le=100, description="JPEG quality of published heatmaps.")
    range_time_constant_s: float = Field(
        10.0, gt=0, le=3600, description="How fast the colour range follows the scene (s): colours stay comparable."
    )


class ReconnectConfig(StrictModel):
    initial_s: float = Field(1.0, gt=0, le=60, description="First delay before reopening a failed source (s).")
    max_s: float = Field(30.0, gt=0, le=3600, description="Cap of the exponential backoff (s).")

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise PydanticCustomError("backoff_order", "must not be smaller than initial_s", {"key": "max_s"})
        return self


class CameraConfig(StrictModel):
    name: str = Field(..., pattern=_NAME, description="Camera id: lower case, digits, '-', '_'; used in topics.")
    source: str | int = Field(
        ...,
        description="V4L2 device ('/dev/video0' or an index), RTSP/HTTP URL, or a video file path"
        " (relative to the config file's directory). Put passwords in ${ENV} or ${credential:NAME}.",
    )
    enabled: bool = Field(True, description="Set false to keep a camera in the file without running it.")
    loop: bool = Field(False, description="Video files: start again at the end instead of stopping.")
    realtime: bool = Field(
        True, description="Video files: play at the file's frame rate; false = as fast as the model allows."
    )
    fps_limit: float | None = Field(
        None, gt=0, le=240, description="Process at most this many frames per second; unlimited when unset."
    )
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport; TCP survives lossy links.")
    decoder_threads: int = Field(
        1,
        ge=0,
        le=16,
        description="FFmpeg decoding threads for a stream or file. 1 (least CPU per frame, no frame held back "
        "for the other threads) suits cameras that share the cores; 0 lets FFmpeg use one per core, for a "
        "camera one core cannot decode at its frame rate (4K on a low-power CPU).",
    )
    open_timeout_s: Seconds = Field(10.0, description="Give up opening the source after this long (s).")
    read_timeout_s: Seconds = Field(10.0, description="Give up a single blocking read after this long (s).")
    stall_timeout_s: Seconds = Field(
        20.0, description="Reconnect when no frame arrived for this long (s); raise it for sparse cameras."
    )
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="Reconnect backoff.")
    heatmap: HeatmapConfig = Field(default_factory=HeatmapConfig, description="Published heatmaps.")
    alerts: CameraAlertsConfig = Field(
        default_factory=CameraAlertsConfig,
        description="Depth reference, zones, fall detection and depth health.",
    )

    @field_validator("source")
    @classmethod
    def _source_given(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 0:
            raise ValueError("a device index must be 0 or more")
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        _path_rules(value)  # a path or a URL: both reach open()
        return value

    def source_kind(self) -> SourceKind:
        """What `source` names: device, stream, recording or file (``classify_source``, the rule capture uses)."""
        return classify_source(self.source)


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="'json' for log shippers; journald adds times.")


class HomeAssistantConfig(StrictModel):
    enabled: bool = Field(True, description="Publish Home Assistant MQTT discovery configs.")
    discovery_prefix: str = Field(
        "homeassistant", pattern=_TOPIC_PREFIX, max_length=128, description="Home Assistant's discovery prefix."
    )

    @field_validator("discovery_prefix", mode="before")
    @classmethod
    def _usable_by_mqtt(cls, value: object) -> object:
        return _text_rules(value, "discovery_prefix", forbidden=_MQTT_FORBIDDEN["discovery_prefix"])


class Config(StrictModel):
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker connection and topics.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The OpenVINO model.")
    cameras: list[CameraConfig] = Field(..., min_length=1, max_length=32, description="Cameras to process.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    state_dir: Path | None = Field(
        None,
        description="Where learned baselines are kept across restarts; $STATE_DIRECTORY (systemd StateDirectory=) "
        "when unset, else they are not saved.",
    )
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig,
        description="Home Assistant MQTT discovery.",
    )
    web: WebConfig = Field(
        default_factory=WebConfig,
        description="The web console: dashboard, zone editor, photo tryout, JSON API and /metrics.",
    )

    _paths = field_validator("state_dir", mode="before")(_path_rules)

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        first: dict[str, int] = {}
        for index, cam in enumerate(cameras):
            if cam.name in first:
                raise PydanticCustomError(
                    "duplicate_camera",
                    "camera name '{name}' is already used by cameras[{first}]",
                    {"name": cam.name, "first": first[cam.name], "key": (index, "name")},
                )
            first[cam.name] = index
        return cameras
