"""The configuration file: the example, every kind of error (key path and line), substitution, secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_depth.config import (
    CameraConfig,
    Config,
    ConfigError,
    check_config,
    load_config,
    resolve_paths,
    schema_reference,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "edge-depth.yaml"
CLIP = Path(__file__).parent / "fixtures" / "video" / "solidWhiteRight.mp4"
SECRET = "Tr0ub4dor-and-3-SECRET"

MINIMAL = "cameras:\n  - name: cam\n    source: 0\n"


def write(directory: Path, text: str, name: str = "edge-depth.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def errors_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env or {})
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def repo_layout(tmp_path: Path, text: str, *, model: bool) -> Path:
    """The example's relative paths need the repository's layout: config/, models/, tests/fixtures/video/."""
    config = tmp_path / "config"
    config.mkdir()
    video = tmp_path / "tests" / "fixtures" / "video"
    video.mkdir(parents=True)
    (video / CLIP.name).symlink_to(CLIP)
    if model:
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / "midas_small_int8.xml").write_text("<net/>")
        (tmp_path / "models" / "midas_small_int8.bin").write_bytes(b"\0")
    return write(config, text)


# ----------------------------------------------------------------------------------------------- the example


def test_example_passes_and_resolves_paths_against_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = repo_layout(tmp_path, EXAMPLE.read_text(), model=True)
    monkeypatch.chdir("/")  # systemd's working directory: the result must not depend on it

    code, summary = check_config(path)

    assert (code, summary) == (
        0,
        f"{path}: ok: 1 camera (sample), model ../models/midas_small_int8.xml on CPU, broker localhost:1883",
    )
    config = load_config(path, env={})
    assert config.model.path == tmp_path / "models" / "midas_small_int8.xml"
    assert config.cameras[0].source == str(tmp_path / "tests" / "fixtures" / "video" / CLIP.name)
    assert config.cameras[0].loop and config.cameras[0].realtime
    assert config.mqtt.password is None


def test_example_without_the_model_names_the_ir_path_and_its_line(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    path = repo_layout(tmp_path, text, model=False)

    code, output = check_config(path)

    assert code == 2
    ir = tmp_path / "models" / "midas_small_int8.xml"
    assert output == (
        f"{path}:{line_of(text, 'path: ../models/')}: model.path: file not found: "
        f"../models/midas_small_int8.xml (resolved to {ir})"
    )


def test_the_examples_commented_settings_are_valid_when_uncommented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `#key: value` lines (no space after #, two or more inside a block) are settings; prose has one space.
    text = re.sub(r"(?m)^(\s*)#(?=\S|  +\S)", r"\1", EXAMPLE.read_text())
    path = repo_layout(tmp_path, text, model=True)
    certs = tmp_path / "config" / "certs"
    certs.mkdir()
    for name in ("ca.crt", "client.crt", "client.key"):
        (certs / name).write_text("PEM")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt_password").write_text(SECRET + "\n")
    env = {"FRONT_CAM_PASSWORD": SECRET, "CREDENTIALS_DIRECTORY": str(credentials)}

    config = load_config(path, env=env)

    assert [(c.name, c.source_kind(), c.enabled) for c in config.cameras] == [
        ("sample", "file", True),
        ("front", "stream", True),
        ("desk", "device", False),
    ]
    assert config.cameras[1].source == f"rtsp://admin:{SECRET}@192.168.1.20:554/stream1"
    assert config.mqtt.username == "edge-depth"
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == SECRET
    assert config.mqtt.tls is not None and config.mqtt.tls.key_file == certs / "client.key"
    assert config.model.cache_dir == Path("/var/cache/edge-depth/openvino")  # systemd's CacheDirectory=
    assert SECRET not in repr(config.mqtt)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert check_config(path) == (
        0,
        f"{path}: ok: 3 cameras (sample, front, desk [disabled]), model ../models/midas_small_int8.xml on CPU, "
        "broker localhost:1883 with TLS",
    )


# ----------------------------------------------------------------------------------------------- each kind of error

ERROR_CASES = {
    "unknown key, close to a valid one": (
        MINIMAL + "    heatmap:\n      rate_hx: 2\n",
        5,
        "cameras[0].heatmap.rate_hx",
        "unknown key (did you mean 'rate_hz'?)",
    ),
    "unknown key, nothing close": (
        "mqtt:\n  colour: red\n" + MINIMAL,
        2,
        "mqtt.colour",
        "unknown key (valid keys: client_id, host, keepalive_s,",
    ),
    "unknown top-level section": (MINIMAL + "cameraz: []\n", 4, "cameraz", "did you mean 'cameras'?"),
    "unknown key in the alerts section": (
        MINIMAL + "    alerts:\n      no_such_alert_setting: 1\n",
        5,
        "cameras[0].alerts.no_such_alert_setting",
        "unknown key",
    ),
    "wrong type": ("mqtt:\n  keepalive_s: often\n" + MINIMAL, 2, "mqtt.keepalive_s", "valid integer"),
    "wrong type of a union": (
        MINIMAL + "  - name: two\n    source: [1, 2]\n",
        5,
        "cameras[1].source",
        "Input should be a valid string or a valid integer",
    ),
    "not one of the choices": ("model:\n  device: TPU\n" + MINIMAL, 2, "model.device", "'CPU', 'GPU', 'NPU' or 'AUTO'"),
    "out of range": (
        MINIMAL + "    heatmap:\n      jpeg_quality: 101\n",
        5,
        "cameras[0].heatmap.jpeg_quality",
        "less than or equal to 100",
    ),
    "missing required key: the parent's line": (
        MINIMAL + "  - source: /dev/video1\n",
        4,
        "cameras[1].name",
        "required key is missing",
    ),
    "missing required section": ("mqtt:\n  host: broker\n", 1, "cameras", "required key is missing"),
    "empty camera list": ("cameras: []\n", 1, "cameras", "at least 1 item"),
    "duplicate camera name": (
        MINIMAL + "  - name: other\n    source: 1\n  - name: cam\n    source: 2\n",
        6,
        "cameras[2].name",
        "camera name 'cam' is already used by cameras[0]",
    ),
    "password without username": (
        "mqtt:\n  host: broker\n  password: ${MQTT_PASSWORD}\n" + MINIMAL,
        3,
        "mqtt.password",
        "password is set but username is not",
    ),
    "TLS certificate without key": (
        "mqtt:\n  tls:\n    cert_file: client.crt\n" + MINIMAL,
        2,
        "mqtt.tls.key_file",
        "cert_file and key_file must be given together",
    ),
    "reconnect cap below the first delay": (
        MINIMAL + "    reconnect:\n      initial_s: 5\n      max_s: 2\n",
        6,
        "cameras[0].reconnect.max_s",
        "must not be smaller than initial_s",
    ),
    "bad input_size": (
        "model:\n  input_size: 250x190\n" + MINIMAL,
        2,
        "model.input_size",
        "multiples of 32",
    ),
    "bad camera name": (
        "cameras:\n  - name: Front Door\n    source: 0\n",
        2,
        "cameras[0].name",
        "should match pattern",
    ),
    "a YAML boolean where a string belongs": (
        "cameras:\n  - name: off\n    source: 0\n",
        2,
        "cameras[0].name",
        "Input should be a valid string (put it in quotes: YAML reads yes/no/on/off as true/false)",
    ),
    "a section left empty": (
        "mqtt:\n" + MINIMAL,
        1,
        "mqtt",
        "should be a section of `key: value` lines, found nothing",
    ),
    "empty source": ("cameras:\n  - name: cam\n    source: ''\n", 3, "cameras[0].source", "must not be empty"),
}


@pytest.mark.parametrize(("text", "line", "key", "message"), ERROR_CASES.values(), ids=list(ERROR_CASES))
def test_each_error_names_key_path_and_line(tmp_path: Path, text: str, line: int, key: str, message: str) -> None:
    path = write(tmp_path, text)

    errors = errors_of(path, env={"MQTT_PASSWORD": SECRET})

    assert [e for e in errors if e.startswith(f"{path}:{line}: {key}: ") and message in e], errors


def test_all_errors_are_reported_at_once_in_line_order(tmp_path: Path) -> None:
    text = "mqtt:\n  port: 0\n  keepalive: 10\ncameras:\n  - name: cam\n    source: 0\n    fps_limit: -1\n"
    path = write(tmp_path, text)

    errors = errors_of(path)

    assert [e.split(": ")[0:2] for e in errors] == [
        [f"{path}:2", "mqtt.port"],
        [f"{path}:3", "mqtt.keepalive"],
        [f"{path}:7", "cameras[0].fps_limit"],
    ]
    assert "did you mean 'keepalive_s'?" in errors[1]
    assert "greater than 0" in errors[2]


FILE_CASES = {
    "YAML syntax error": ("cameras:\n  - name: cam\n    source: [0\n", 4, "YAML syntax error at column 1"),
    "duplicate key": ("cameras:\n  - name: cam\n    source: 0\n    name: again\n", 4, "duplicate key 'name'"),
    "unsafe tag": ("cameras: !!python/object:os.system x\n", 1, "could not determine a constructor"),
    "two documents": (MINIMAL + "---\n" + MINIMAL, 4, "expected a single document"),
    "empty file": ("# nothing but a comment\n", 1, "the file is empty"),
    "not a mapping": ("- name: cam\n  source: 0\n", 1, "must be a YAML mapping"),
    "a single value": ("cameras\n", 1, "must be a YAML mapping"),
    "control character": ("cameras:\n  - name: cam\x01\n", 2, "control character U+0001"),
}


@pytest.mark.parametrize(("text", "line", "message"), FILE_CASES.values(), ids=list(FILE_CASES))
def test_file_level_errors_name_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)

    errors = errors_of(path)

    assert len(errors) == 1
    assert errors[0].startswith(f"{path}:{line}: ") and message in errors[0], errors


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    (tmp_path / "latin1.yaml").write_bytes(b"cameras:\n  - name: caf\xe9\n")

    assert errors_of(missing) == [f"{missing}: cannot read the file: No such file or directory"]
    assert errors_of(tmp_path / "latin1.yaml") == [f"{tmp_path / 'latin1.yaml'}:2: not UTF-8 text (byte 22)"]


def test_anchors_and_merge_keys_work_and_may_override(tmp_path: Path) -> None:
    text = (
        "cameras:\n  - name: a\n    source: 0\n    heatmap: &small\n      height: 120\n      rate_hz: 2\n"
        "  - name: b\n    source: 1\n    heatmap:\n      <<: *small\n      rate_hz: 5\n"
    )

    config = load_config(write(tmp_path, ir_dir(tmp_path) + text), env={})

    assert [(c.heatmap.height, c.heatmap.rate_hz) for c in config.cameras] == [(120, 2.0), (120, 5.0)]


# ----------------------------------------------------------------------------------------------- files that must exist


def test_missing_files_name_the_path_and_key(tmp_path: Path) -> None:
    (tmp_path / "ir.xml").write_text("<net/>")  # no ir.bin beside it
    text = (
        "mqtt:\n  tls:\n    ca_file: /nonexistent/ca.crt\n"
        "model:\n  path: ir.xml\n"
        "cameras:\n  - name: clip\n    source: clips/missing.mp4\n"
        "  - name: spare\n    source: clips/also-missing.mp4\n    enabled: false\n"
        "  - name: net\n    source: rtsp://cam/stream\n  - name: dev\n    source: /dev/video9\n"
    )
    path = write(tmp_path, text)

    assert errors_of(path) == [
        f"{path}:3: mqtt.tls.ca_file: file not found: /nonexistent/ca.crt",
        f"{path}:5: model.path: file not found: {tmp_path / 'ir.bin'} (the IR's weights, beside the .xml)",
        f"{path}:8: cameras[0].source: file not found: clips/missing.mp4 (resolved to {tmp_path / 'clips'}"
        "/missing.mp4)",
    ]


def test_default_model_path_is_beside_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)

    assert errors_of(path) == [f"{path}:1: model.path: file not found: {tmp_path / 'models' / 'midas_small_int8.xml'}"]


# ----------------------------------------------------------------------------------------------- substitution


def ir_dir(tmp_path: Path) -> str:
    (tmp_path / "ir.xml").write_text("<net/>")
    (tmp_path / "ir.bin").write_bytes(b"\0")
    return "model:\n  path: ir.xml\n"


def test_environment_and_credential_substitution(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "mqtt_password").write_text(SECRET + "\n")
    text = ir_dir(tmp_path) + (
        "mqtt:\n  port: ${MQTT_PORT}\n  host: ${MQTT_HOST:-localhost}\n  client_id: ${CLIENT:-}edge$$1\n"
        "  username: ${MQTT_USER}\n  password: ${credential:mqtt_password}\n  keepalive_s: ${KEEPALIVE:-45}\n"
        "cameras:\n  - name: cam\n    source: rtsp://user:${CAM_PASSWORD}@cam/$${stream}\n"
    )
    env = {"MQTT_PORT": "8883", "MQTT_USER": "edge", "CAM_PASSWORD": SECRET, "CREDENTIALS_DIRECTORY": str(credentials)}

    config = load_config(write(tmp_path, text), env=env)

    assert config.mqtt.port == 8883  # a whole-scalar reference is coerced like a written value
    assert config.mqtt.keepalive_s == 45
    assert config.mqtt.host == "localhost"
    assert config.mqtt.client_id == "edge$1"
    assert config.mqtt.username == "edge"
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == SECRET
    assert config.cameras[0].source == f"rtsp://user:{SECRET}@cam/${{stream}}"


def test_environment_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_DEPTH_TEST_PORT", "1884")
    path = write(tmp_path, ir_dir(tmp_path) + "mqtt:\n  port: ${EDGE_DEPTH_TEST_PORT}\n" + MINIMAL)

    assert load_config(path).mqtt.port == 1884
    assert check_config(path)[0] == 0


INVALID = "invalid reference: use ${NAME}, ${NAME:-default} or ${credential:NAME} (write $$ for a literal $)"
SUBSTITUTION_CASES = {
    "unset variable": ("rtsp://a:${CAM_PW}@cam", False, "environment variable CAM_PW is not set"),
    "no credentials directory": (
        "rtsp://a:${credential:cam_pw}@cam",
        False,
        "credential 'cam_pw' needs $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=), which is not set",
    ),
    "missing credential file": (
        "rtsp://a:${credential:cam_pw}@cam",
        True,
        "credential 'cam_pw' not found: no file 'cam_pw' in $CREDENTIALS_DIRECTORY",
    ),
    "invalid reference": ("rtsp://a:${not a name}@cam", False, INVALID),
    "credential outside its directory": ("rtsp://a:${credential:../etc/passwd}@cam", True, INVALID),
    "unclosed reference": ("rtsp://a:pw${@cam", False, "'${' is not closed by '}' (write $$ for a literal $)"),
}


@pytest.mark.parametrize(
    ("source", "credentials", "message"), SUBSTITUTION_CASES.values(), ids=list(SUBSTITUTION_CASES)
)
def test_substitution_errors_name_the_key_and_line(
    tmp_path: Path, source: str, credentials: bool, message: str
) -> None:
    path = write(tmp_path, f"cameras:\n  - name: cam\n    source: {source}\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)} if credentials else {}

    assert errors_of(path, env) == [f"{path}:3: cameras[0].source: {message}"]


# ----------------------------------------------------------------------------------------------- secrets


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "port").write_text(SECRET)
    text = (
        f"mqtt:\n  password: {SECRET}\n  port: ${{credential:port}}\n  keepalive_s: ${{KEEPALIVE}}\n"
        f"  client_id: {SECRET * 10}\n"
        f"cameras:\n  - name: cam\n    source: rtsp://admin:{SECRET}@cam/stream\n    fps_limit: {SECRET}\n"
        f"    hetmap: {SECRET}\n  - name: Bad Name\n    source: [{SECRET}]\n"
        f"  - name: three\n    source: rtsp://admin:{SECRET}${{@cam\n"
    )
    path = write(tmp_path, text)
    env = {"CREDENTIALS_DIRECTORY": str(credentials), "KEEPALIVE": SECRET}

    # The unclosed ${ stops before validation; without it every validation error shows up; the
    # password-needs-username rule only runs once the rest of the mqtt section is valid.
    first = errors_of(path, env)
    second = errors_of(write(tmp_path, text.replace("${@cam", "@cam")), env)
    third = errors_of(write(tmp_path, f"mqtt:\n  password: {SECRET}\n" + MINIMAL, "third.yaml"))
    typo = f"cameras:\n  - name: cam\n    source: rtsp:/admin:{SECRET}@cam/stream\n"
    fourth = errors_of(write(tmp_path, ir_dir(tmp_path) + typo, "fourth.yaml"))
    code, output = check_config(path)

    assert any("'${' is not closed" in e for e in first)
    assert third == [f"{tmp_path / 'third.yaml'}:2: mqtt.password: password is set but username is not"]
    assert {e.split(": ")[1] for e in second} >= {
        "mqtt.port",
        "mqtt.keepalive_s",
        "mqtt.client_id",
        "cameras[0].fps_limit",
        "cameras[0].hetmap",
        "cameras[1].name",
        "cameras[1].source",
    }
    assert code == 2
    assert fourth == [
        f"{tmp_path / 'fourth.yaml'}:5: cameras[0].source: file not found: the value is hidden: it contains '@' "
        "and may be a URL with a password (URLs need '://')"
    ]
    for text_out in (*first, *second, *third, *fourth, output):
        assert SECRET not in text_out
        assert "Tr0ub4dor" not in text_out


# ----------------------------------------------------------------------------------------------- helpers others use


def test_check_config_returns_the_error_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - name: cam\n    source: 0\n    fps: 5\n")

    assert check_config(path) == (2, f"{path}:4: cameras[0].fps: unknown key (did you mean 'fps_limit'?)")


def test_resolve_paths_is_generic_and_leaves_absolute_paths_devices_and_urls(tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "model": {"path": "m/ir.xml", "cache_dir": "/var/cache/ov"},
            "mqtt": {"tls": {"ca_file": "ca.crt"}},
            "cameras": [
                {"name": "f", "source": "clip.mp4"},
                {"name": "d", "source": "/dev/video0"},
                {"name": "i", "source": 2},
                {"name": "u", "source": "rtsp://cam/s"},
            ],
        }
    )

    resolved = resolve_paths(config, tmp_path)

    assert resolved.model.path == tmp_path / "m" / "ir.xml"
    assert resolved.model.cache_dir == Path("/var/cache/ov")
    assert resolved.mqtt.tls is not None and resolved.mqtt.tls.ca_file == tmp_path / "ca.crt"
    assert [c.source for c in resolved.cameras] == [str(tmp_path / "clip.mp4"), "/dev/video0", 2, "rtsp://cam/s"]
    assert config.model.path == Path("m/ir.xml")  # the original is untouched (models are frozen)
    only_camera = resolve_paths(config.cameras[0], tmp_path)
    assert isinstance(only_camera, CameraConfig) and only_camera.source == str(tmp_path / "clip.mp4")


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        (0, "device"),
        ("1", "device"),
        ("/dev/video0", "device"),
        ("rtsp://a:b@c/d", "stream"),
        ("http://c/x", "stream"),
        ("clip.mp4", "file"),
        ("/srv/clips/a.mkv", "file"),
        ("day.npz", "recording"),
        ("/srv/recordings/DAY.NPZ", "recording"),
    ],
)
def test_source_kind(source: str | int, kind: str) -> None:
    assert CameraConfig(name="c", source=source).source_kind() == kind


def test_recordings_are_resolved_and_checked_like_video_files(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "day.npz").write_bytes(b"\0")
    cameras = "cameras:\n  - name: day\n    source: rec/day.npz\n  - name: night\n    source: rec/night.npz\n"
    path = write(tmp_path, ir_dir(tmp_path) + cameras)

    assert errors_of(path) == [
        f"{path}:7: cameras[1].source: file not found: rec/night.npz (resolved to {tmp_path / 'rec' / 'night.npz'})"
    ]
    config = Config.model_validate({"cameras": [{"name": "day", "source": "rec/day.npz"}]})
    assert resolve_paths(config, tmp_path).cameras[0].source == str(tmp_path / "rec" / "day.npz")


def test_schema_reference_lists_every_field_with_type_default_and_bounds() -> None:
    table = schema_reference()

    rows = {line.split(" | ")[0].strip("| `"): line for line in table.splitlines()[2:]}
    assert rows["mqtt.port"] == (
        "| `mqtt.port` | integer | `1883` | >= 1, <= 65535 | Broker port (8883 is usual with TLS). |"
    )
    assert rows["cameras"].startswith("| `cameras` | list of section | required | length >= 1, length <= 32 |")
    assert "`CPU` / `GPU` / `NPU` / `AUTO`" in rows["model.device"]
    assert "\\<prefix>/available" in rows["mqtt.topic_prefix"]  # not swallowed as an HTML tag

    def keys(model: type[Config] | type[CameraConfig], prefix: str) -> set[str]:
        return {prefix + name for name in model.model_fields}

    assert keys(Config, "") | keys(CameraConfig, "cameras[].") <= rows.keys()


def test_the_example_in_place_runs_the_bundled_clip() -> None:
    # The quick start's file: everything it names exists in the repository, except the model until
    # `make model` has converted the official weights.
    code, output = check_config(EXAMPLE)

    if (ROOT / "models" / "midas_small_int8.xml").is_file():
        assert code == 0, output
    else:
        assert (code, output.split(": ")[1:3]) == (2, ["model.path", "file not found"]), output
