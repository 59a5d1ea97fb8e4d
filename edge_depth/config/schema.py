"""The daemon's configuration: one YAML file, validated by a strict schema.

Every field has a description and bounds; unknown keys are errors. Loading (YAML with line numbers,
``${ENV}`` and ``${credential:NAME}`` substitution, error messages naming key path and line) lives
below the schema.

Relative paths in the file (``model.path``, TLS files, a file camera's ``source``, any ``Path`` field)
are resolved against the directory of the config file, so ``check-config`` and the daemon agree
whatever their working directory. A field marked ``json_schema_extra={"must_exist": True}`` must name
an existing, readable file. A validator can point its error at a sub-key by raising
``PydanticCustomError(type, message, {"key": "name"})`` (or a tuple such as ``(2, "name")``).
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from edge_depth.config.alerts import CameraAlertsConfig
from edge_depth.config.base import StrictModel

_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_TOPIC_PREFIX = r"^[^#+/\s][^#+\s]*[^#+/\s]$|^[^#+/\s]$"

Seconds = Annotated[float, Field(gt=0, le=3600)]

# Marks a Path field whose file must exist when the configuration is loaded.
_MUST_EXIST: dict[str, Any] = {"must_exist": True}
_RELATIVE = " Relative to the config file's directory."


class TlsConfig(StrictModel):
    ca_file: Path | None = Field(
        None,
        description="PEM file of the CA that signed the broker's certificate; the system CAs when unset." + _RELATIVE,
        json_schema_extra=_MUST_EXIST,
    )
    cert_file: Path | None = Field(
        None,
        description="Client certificate (PEM) for brokers that require one." + _RELATIVE,
        json_schema_extra=_MUST_EXIST,
    )
    key_file: Path | None = Field(
        None, description="Private key (PEM) of cert_file." + _RELATIVE, json_schema_extra=_MUST_EXIST
    )
    insecure: bool = Field(
        False, description="Skip the broker hostname check. For tests with self-signed certificates only."
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            missing = "cert_file" if self.cert_file is None else "key_file"
            raise PydanticCustomError("tls_pair", "cert_file and key_file must be given together", {"key": missing})
        return self


class MqttConfig(StrictModel):
    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual with TLS).")
    client_id: str = Field("edge-depth", min_length=1, max_length=128, description="MQTT client id; unique per broker.")
    topic_prefix: str = Field(
        "edge-depth",
        pattern=_TOPIC_PREFIX,
        max_length=128,
        description="Prefix of every topic: <prefix>/available, <prefix>/<camera>/status, ...",
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive interval (s).")
    username: str | None = Field(None, min_length=1, description="User name, when the broker requires one.")
    password: SecretStr | None = Field(
        None,
        description="Password: use ${ENV_VAR} or ${credential:NAME} (systemd LoadCredential=), not a literal.",
    )
    tls: TlsConfig | None = Field(None, description="TLS settings; plain TCP when absent.")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First reconnect delay after a lost broker (s).")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="Cap of the exponential reconnect delay (s).")
    max_queued_alerts: int = Field(
        1000, ge=10, le=100_000, description="Alerts (QoS 1) kept while the broker is away; heatmaps are dropped."
    )
    stats_interval_s: float = Field(30.0, ge=1, le=3600, description="Period of <prefix>/stats and status (s).")

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
        json_schema_extra=_MUST_EXIST,
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
        0, ge=0, le=16, description="Parallel inference requests; 0 = OpenVINO's optimal number for the hint."
    )
    inference_precision: Literal["auto", "f32", "bf16", "f16"] = Field(
        "auto",
        description="What float layers compute in: 'auto' is OpenVINO's choice (bf16 on CPUs with AVX-512 BF16 or "
        "AMX, fastest); 'f32' for full FP32 accuracy at about half the speed there.",
    )
    cache_dir: Path | None = Field(
        None, description="OpenVINO compiled-model cache directory (faster restarts); off when unset." + _RELATIVE
    )

    @field_validator("input_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if value == "auto":
            return value
        m = re.fullmatch(r"(\d+)x(\d+)", value)
        if not m:
            raise ValueError("must be 'auto' or 'WxH', for example '256x192'")
        w, h = int(m[1]), int(m[2])
        if w % 32 or h % 32 or not (32 <= w <= 1024 and 32 <= h <= 1024):
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
        return value

    def source_kind(self) -> Literal["device", "url", "file"]:
        """How `source` is opened: a V4L2 device (an index or /dev/...), a URL (scheme://...), or a file.

        The same rule as capture.Source.parse.
        """
        if isinstance(self.source, int) or self.source.strip().isdigit():
            return "device"
        if "://" in self.source:
            return "url"
        return "device" if self.source.startswith("/dev/") else "file"


class LoggingConfig(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="'json' for log shippers; journald adds times.")


class HomeAssistantConfig(StrictModel):
    enabled: bool = Field(True, description="Publish Home Assistant MQTT discovery configs.")
    discovery_prefix: str = Field(
        "homeassistant", pattern=_TOPIC_PREFIX, description="Home Assistant's discovery prefix."
    )


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


# ----------------------------------------------------------------------------------------------- loading

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """The configuration cannot be used. `errors`: one line each, `<file>:<line>: <key.path>: <message>`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(self.errors)


def load_config(path: Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute, validate and check the YAML file at `path`; raise ConfigError with every problem.

    `env` (default os.environ) provides ${NAME} values and CREDENTIALS_DIRECTORY for ${credential:NAME}.
    Relative paths of the result are already resolved against the file's directory (see resolve_paths),
    and every file the daemon will open (IR, TLS files, file cameras that are enabled) exists.
    """
    config, _ = _load(path, os.environ if env is None else env)
    return config


def check_config(path: Path) -> tuple[int, str]:
    """`edge-depth check-config FILE`: (0, a one-line summary) or (2, the error lines)."""
    try:
        config, doc = _load(path, os.environ)
    except ConfigError as error:
        return 2, str(error)
    return 0, _summary(config, doc)


def resolve_paths(config: M, base_dir: Path) -> M:
    """A copy of `config` (any model of this schema) whose relative paths are joined to `base_dir`.

    Covers every Path field, nested models and lists included, and a file camera's `source`.
    """
    resolved = _resolve(config, base_dir)
    assert isinstance(resolved, type(config))
    return resolved


@dataclass(frozen=True)
class _Document:
    """The parsed file: data as plain dicts/lists/scalars, and the (line, column) of every key and item."""

    path: Path
    data: dict[str, Any]
    positions: dict[Loc, tuple[int, int]]

    def line(self, loc: Loc) -> int:
        """Line of `loc`, or of its nearest ancestor in the file (a missing key: its parent's line)."""
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.positions:
                return self.positions[loc[:end]][0]
        return 1

    def error(self, loc: Loc, message: str) -> str:
        where = f"{_dotted(loc)}: " if loc else ""
        return f"{self.path}:{self.line(loc)}: {where}{message}"

    def value(self, loc: Loc) -> Any:
        """The value at `loc` as written (after substitution), None when the file does not have it."""
        node: Any = self.data
        for part in loc:
            node = _child(node, part)
            if node is _ABSENT:
                return None
        return node


_ABSENT = object()


def _child(node: Any, part: str | int) -> Any:
    """node[part] for a mapping key or list index present in the data, else _ABSENT."""
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _ABSENT


def _load(path: Path, env: Mapping[str, str]) -> tuple[Config, _Document]:
    doc = _parse(path)
    data = _substitute(doc, env)
    doc = _Document(doc.path, data, doc.positions)
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_validation_errors(doc, error)) from None
    config = resolve_paths(config, Path(os.path.abspath(path)).parent)
    problems = _missing_files(config, doc)
    if problems:
        raise ConfigError(problems)
    return config, doc


# ----------------------------------------------------------------------------------------------- YAML


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records the (line, column) of every mapping key and sequence item.

    Keys are kept as the text written (`on:` stays "on", not True), and a key given twice in one mapping is
    an error: PyYAML would silently keep the last one, hiding a mistake.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain name", key_node.start_mark)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key_node.value}'", key_node.start_mark
                )
            seen.add(key_node.value)
        self.flatten_mapping(node)  # resolves `<<: *anchor` merges into node.value
        return {key.value: self.construct_object(value, deep=deep) for key, value in node.value}

    def load_with_positions(self) -> tuple[Any, dict[Loc, tuple[int, int]]]:
        """The single document (None when empty) and the 1-based (line, column) of each key and item."""
        node = self.get_single_node()
        if node is None:
            return None, {}
        data = self.construct_document(node)
        positions: dict[Loc, tuple[int, int]] = {}
        _record_positions(node, (), positions, set())
        return data, positions


def _record_positions(node: yaml.Node, loc: Loc, out: dict[Loc, tuple[int, int]], active: set[int]) -> None:
    if id(node) in active:  # an alias to an enclosing node: the structure is recursive
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        # Merged pairs come first in node.value, so keys written in this mapping win, as in the data.
        children = [((key.value,), key, value) for key, value in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = [((index,), item, item) for index, item in enumerate(node.value)]
    else:
        children = []
    for part, mark_node, child in children:
        out[loc + part] = (mark_node.start_mark.line + 1, mark_node.start_mark.column + 1)
        _record_positions(child, loc + part, out, active)
    active.discard(id(node))


def _parse(path: Path) -> _Document:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read the file: {error.strerror or error}"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text (byte {error.start})"]) from None
    try:
        loader = _LineLoader(text)  # checks for unprintable characters already
        try:
            data, positions = loader.load_with_positions()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        raise ConfigError([_yaml_error(path, error)]) from None
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise ConfigError([f"{path}:{line}: YAML error: control character U+{code:04X} is not allowed"]) from None
    if data is None:
        raise ConfigError([f"{path}:1: the file is empty; it needs at least a `cameras:` list"])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        raise ConfigError(
            [f"{path}:1: the file must be a YAML mapping of sections (mqtt, model, cameras...), not {kind}"]
        )
    return _Document(path, data, positions)


def _yaml_error(path: Path, error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = error.problem or error.context or "invalid YAML"
    if error.context and error.problem and error.context_mark:
        problem += f" ({error.context} at line {error.context_mark.line + 1})"
    syntax = isinstance(error, yaml.scanner.ScannerError | yaml.parser.ParserError)
    return f"{path}:{line}: YAML {'syntax ' if syntax else ''}error at column {column}: {problem}"


# ----------------------------------------------------------------------------------------------- ${...}

_REFERENCE = re.compile(r"\$(\$|\{(?P<body>[^}]*)\}|\{)")
_ENV_NAME = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_CREDENTIAL_NAME = re.compile(r"credential:(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)")


class _SubstitutionError(Exception):
    pass


def _substitute(doc: _Document, env: Mapping[str, str]) -> dict[str, Any]:
    """`doc.data` with ${NAME}, ${NAME:-default}, ${credential:NAME} and $$ replaced in every string value.

    A value that is only a reference stays a string: pydantic then coerces it as if it had been written
    (port: ${MQTT_PORT} validates as an int).
    """
    errors: list[str] = []

    def walk(value: Any, loc: Loc) -> Any:
        if isinstance(value, dict):
            return {key: walk(item, (*loc, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item, (*loc, index)) for index, item in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            try:
                return _REFERENCE.sub(lambda match: _expand(match, env), value)
            except _SubstitutionError as error:
                errors.append(doc.error(loc, str(error)))
        return value

    data = walk(doc.data, ())
    if errors:
        raise ConfigError(errors)
    assert isinstance(data, dict)
    return data


def _expand(match: re.Match[str], env: Mapping[str, str]) -> str:
    # Messages name the reference, never the text around it: that text may be part of a password.
    if match[1] == "$":
        return "$"
    body = match["body"]
    if body is None:
        raise _SubstitutionError("'${' is not closed by '}' (write $$ for a literal $)")
    if credential := _CREDENTIAL_NAME.fullmatch(body):
        return _read_credential(credential["name"], env)
    reference = _ENV_NAME.fullmatch(body)
    if reference is None:
        raise _SubstitutionError(
            "invalid reference: use ${NAME}, ${NAME:-default} or ${credential:NAME} (write $$ for a literal $)"
        )
    value = env.get(reference["name"])
    if reference["default"] is not None and not value:
        return reference["default"]
    if value is None:
        raise _SubstitutionError(f"environment variable {reference['name']} is not set")
    return value


def _read_credential(name: str, env: Mapping[str, str]) -> str:
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise _SubstitutionError(
            f"credential '{name}' needs $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=), which is not set"
        )
    try:
        return (Path(directory) / name).read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        raise _SubstitutionError(f"credential '{name}' not found: no file '{name}' in $CREDENTIALS_DIRECTORY") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise _SubstitutionError(f"cannot read credential '{name}': {reason}") from None


# ----------------------------------------------------------------------------------------------- validation errors


def _validation_errors(doc: _Document, error: ValidationError) -> list[str]:
    """One line per problem, sorted by line; union members' messages about one key are merged."""
    merged: dict[Loc, list[str]] = {}
    # Inputs are only looked at, never printed: they may be passwords.
    for details in error.errors(include_url=False):
        loc, message = _explain(doc, details)
        if message not in merged.setdefault(loc, []):
            merged[loc].append(message)
    lines = [(doc.line(loc), doc.error(loc, _join(messages))) for loc, messages in merged.items()]
    return [text for _, text in sorted(lines, key=lambda item: item[0])]


def _explain(doc: _Document, details: ErrorDetails) -> tuple[Loc, str]:
    loc = _data_loc(doc.data, details["loc"], details["type"] == "missing")
    context = details.get("ctx") or {}
    key = context.get("key")
    if key is not None:
        loc = (*loc, *(key if isinstance(key, tuple) else (key,)))
    kind, message = details["type"], details["msg"]
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "extra_forbidden":
        return loc, _unknown_key(loc)
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind == "model_type":  # pydantic names the class; the user wrote a section
        found = "nothing" if details["input"] is None else type(details["input"]).__name__
        return loc, f"should be a section of `key: value` lines, found {found}"
    if kind == "string_type" and isinstance(details["input"], bool):
        message += " (put it in quotes: YAML reads yes/no/on/off as true/false)"
    return loc, message


def _data_loc(data: Any, loc: tuple[int | str, ...], missing: bool) -> Loc:
    """The part of pydantic's `loc` that is a path in the data: drops the member tags that unions add
    ('str', 'int', a model's name), keeps a missing key."""
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        child = _child(node, part)
        if child is not _ABSENT:
            node = child
        elif not (missing and index == len(loc) - 1):
            continue
        path.append(part)
    return tuple(path)


def _unknown_key(loc: Loc) -> str:
    valid = sorted(_keys_at(loc[:-1]))
    key = str(loc[-1])
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    close = close or [name for name in valid if len(key) >= 3 and name.startswith(key)][:1]  # fps -> fps_limit
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (valid keys: {', '.join(valid)})" if valid else "unknown key"


def _keys_at(loc: Loc) -> set[str]:
    """Field names of the model(s) found at `loc`, walking the schema from Config."""
    types_here: list[Any] = [Config]
    for part in loc:
        following: list[Any] = []
        for annotation in types_here:
            for member in _members(annotation):
                if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
                    field = member.model_fields.get(part)
                    following += [field.annotation] if field else []
                elif get_origin(member) in (list, tuple) and isinstance(part, int):
                    following += list(get_args(member)[:1])
                elif get_origin(member) is dict:
                    following += list(get_args(member)[1:2])
        types_here = following
    return {
        name
        for annotation in types_here
        for member in _members(annotation)
        if isinstance(member, type) and issubclass(member, BaseModel)
        for name in member.model_fields
    }


def _members(annotation: Any) -> list[Any]:
    """The types of a union (None dropped), or [annotation]."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) if arg is not type(None) for m in _members(arg)]
    return [annotation]


def _join(messages: list[str]) -> str:
    # A union's members each say "Input should be a valid X": one sentence reads better.
    if len(messages) > 1 and all(m.startswith("Input should be ") for m in messages):
        return "Input should be " + " or ".join(m.removeprefix("Input should be ") for m in messages)
    return "; ".join(messages)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


# ----------------------------------------------------------------------------------------------- paths


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        return value if value.is_absolute() else Path(os.path.normpath(base / value))
    if isinstance(value, list | tuple):
        return type(value)(_resolve(item, base) for item in value)
    if isinstance(value, dict):
        return {key: _resolve(item, base) for key, item in value.items()}
    if not isinstance(value, BaseModel):
        return value
    updates = {}
    for name in type(value).model_fields:
        old = getattr(value, name)
        new = _resolve(old, base)
        if new is not old:
            updates[name] = new
    if isinstance(value, CameraConfig) and value.source_kind() == "file" and not Path(str(value.source)).is_absolute():
        updates["source"] = os.path.normpath(base / str(value.source))
    return value.model_copy(update=updates) if updates else value


def _fields(value: Any, loc: Loc) -> Iterator[tuple[Loc, FieldInfo, Any]]:
    """Every (location, field, value) of a validated model tree, depth first."""
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            child = getattr(value, name)
            yield (*loc, name), field, child
            yield from _fields(child, (*loc, name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _fields(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _fields(item, (*loc, key))


def _missing_files(config: Config, doc: _Document) -> list[str]:
    """Errors for files the daemon would fail to open: must_exist fields, the IR's .bin, file cameras."""
    errors: list[str] = []
    for loc, field, value in _fields(config, ()):
        extra = field.json_schema_extra
        if isinstance(value, Path) and isinstance(extra, dict) and extra.get("must_exist"):
            problems = _file_problem(doc, loc, value, _shown(doc.value(loc), value))
            if not problems and loc == ("model", "path") and value.suffix == ".xml":
                weights = value.with_suffix(".bin")
                problems = _file_problem(doc, loc, weights, f"{weights} (the IR's weights, beside the .xml)")
            errors += problems
    for index, camera in enumerate(config.cameras):
        if camera.enabled and camera.source_kind() == "file":
            loc, resolved = ("cameras", index, "source"), Path(str(camera.source))
            shown = _shown(doc.value(loc), resolved)
            if "@" in shown:  # a mistyped URL (rtsp:/user:password@host): its password must not be printed
                shown = "the value is hidden: it contains '@' and may be a URL with a password (URLs need '://')"
            errors += _file_problem(doc, loc, resolved, shown)
    return errors


def _shown(written: Any, resolved: Path) -> str:
    """A path as the user wrote it, with where it was looked for when that differs."""
    if isinstance(written, str) and written != str(resolved):
        return f"{written} (resolved to {resolved})"
    return str(resolved)


def _file_problem(doc: _Document, loc: Loc, resolved: Path, shown: str) -> list[str]:
    return [doc.error(loc, f"{problem}: {shown}") for problem in _problem(resolved)]


def _problem(path: Path) -> list[str]:
    """[] when `path` is a readable file, else the one problem with it (without the path)."""
    if not path.exists():
        return ["file not found"]
    if not path.is_file():
        return ["not a file"]
    if not os.access(path, os.R_OK):
        return ["file not readable by this user"]
    return []


def _summary(config: Config, doc: _Document) -> str:
    cameras = [f"{c.name}" if c.enabled else f"{c.name} [disabled]" for c in config.cameras]
    count = f"{len(cameras)} camera{'s' if len(cameras) != 1 else ''}"
    model = doc.value(("model", "path")) or config.model.path
    tls = " with TLS" if config.mqtt.tls else ""
    return (
        f"{doc.path}: ok: {count} ({', '.join(cameras)}), model {model} on {config.model.device}, "
        f"broker {config.mqtt.host}:{config.mqtt.port}{tls}"
    )


# ----------------------------------------------------------------------------------------------- reference


def schema_reference() -> str:
    """Every key of the file as a Markdown table (key, type, default, bounds, description), from the models."""
    rows = ["| Key | Type | Default | Bounds | Description |", "|---|---|---|---|---|"]
    for key, field in _schema_rows(Config, ""):
        cells = (f"`{key}`", _type_name(field.annotation), _default(field), _bounds(field), field.description or "")
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def _schema_rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        key = prefix + name
        yield key, field
        for member in _members(field.annotation):
            item_key, item = key, member
            if get_origin(member) in (list, tuple):
                item_key, item = key + "[]", get_args(member)[0]
            elif get_origin(member) is dict:
                item_key, item = key + ".<name>", get_args(member)[1]
            if isinstance(item, type) and issubclass(item, BaseModel):
                yield from _schema_rows(item, item_key + ".")


def _type_name(annotation: Any) -> str:
    names = []
    for member in _members(annotation):
        origin = get_origin(member)
        if origin is Literal:
            names.append(" / ".join(f"`{value}`" for value in get_args(member)))
        elif origin in (list, tuple):
            names.append(f"list of {_type_name(get_args(member)[0])}")
        elif origin is dict:
            names.append(f"mapping of {_type_name(get_args(member)[1])}")
        elif isinstance(member, type) and issubclass(member, BaseModel):
            names.append("section")
        else:
            names.append(_SCALAR_NAMES.get(member, getattr(member, "__name__", str(member))))
    return " or ".join(names)


_SCALAR_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret string",
}


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is list:
        return "`[]`"
    if field.default_factory is not None:
        return ""
    if field.default is None:
        return "unset"
    value = field.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _bounds(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            parts.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.MinLen):
            parts.append(f"length >= {item.min_length}")
        elif isinstance(item, annotated_types.MaxLen):
            parts.append(f"length <= {item.max_length}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    # `<prefix>` would vanish as an HTML tag in rendered Markdown; `|` would end the cell.
    return _TAG_START.sub(r"\\<", text.replace("|", "\\|"))


_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")
