"""Hostile configuration files through the real ``edge-depth check-config``: alias bombs, recursive aliases,
files that are not files, and values no broker or filesystem can use. Each is answered within seconds by
exit 2 and one line naming the file (and the key and line where there is one): never a hang, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_depth.config.document import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from edge_depth.config.substitution import MAX_CREDENTIAL_BYTES

REPO = Path(__file__).resolve().parents[1]
CAMERA = "cameras:\n  - name: cam\n    source: 0\n"
BUDGET_S = 5.0  # the command itself; the subprocess timeout above it catches a hang


def check_config(path: Path | str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "edge_depth.cli", "check-config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        errors="strict",  # the answer is UTF-8 text, whatever the file held
        timeout=20,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert time.monotonic() - started < BUDGET_S, f"check-config took {time.monotonic() - started:.1f} s"
    return result


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a refused file."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr[-2000:]
    return lines[0]


def bomb_levels(width: int = 9, depth: int = 7, *, mapping: bool = False, indent: str = "") -> str:
    """A "billion laughs": `depth` anchored levels, each `width` aliases of the one before (width**depth leaves)."""
    lines = [f'{indent}l0: &l0 "lol"']
    for level in range(1, depth + 1):
        if mapping:
            items = ", ".join(f"k{i}: *l{level - 1}" for i in range(width))
            lines.append(f"{indent}l{level}: &l{level} {{{items}}}")
        else:
            lines.append(f"{indent}l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge-depth.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------- the document's shape


def test_a_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERA + "lol:\n" + bomb_levels(indent="  "))

    line = one_line(check_config(path))

    # Named where the expansion first goes over the limit: level 5 (9**5 values), written on line 10.
    assert line == f"{path}:10: lol.l5: aliases expand this to more than {MAX_NODES} values (an alias bomb?)"


def test_a_mapping_bomb_under_mqtt_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n" + bomb_levels(mapping=True, indent="  ") + CAMERA)

    line = one_line(check_config(path))

    assert line.startswith(f"{path}:7: mqtt.l5: aliases expand this to more than {MAX_NODES} values")


def test_a_bomb_inside_a_polygon_is_refused(tmp_path: Path) -> None:
    levels = ", ".join(f"&p{n} [{', '.join([f'*p{n - 1}'] * 9)}]" for n in range(1, 8))
    text = CAMERA + f"    alerts:\n      zones:\n        - name: door\n          polygon: [&p0 [0.1, 0.2], {levels}]\n"
    path = write(tmp_path, text)

    line = one_line(check_config(path))

    assert line.startswith(f"{path}:7: cameras[0].alerts.zones[0].polygon[4]: aliases expand this to more than")


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("cameras: &a [*a]\n", 1, "cameras[0]"),
        ("mqtt: &m\n  host: broker\n  tls: *m\n" + CAMERA, 1, "mqtt.tls"),
        ("mqtt: &m {<<: *m}\n" + CAMERA, 1, "mqtt['<<']"),
        (CAMERA + "    alerts: &x {zones: [{name: a, polygon: [*x]}]}\n", 4, "cameras[0].alerts.zones[0].polygon[0]"),
    ],
    ids=["list in itself", "mapping in itself", "merge of itself", "polygon in its own alerts"],
)
def test_a_recursive_alias_is_refused(tmp_path: Path, text: str, line: int, key: str) -> None:
    path = write(tmp_path, text)

    assert one_line(check_config(path)) == (
        f"{path}:{line}: {key}: an alias refers to a node that contains it (a recursive structure)"
    )


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERA + "deep: " + "[" * 50_000 + "]" * 50_000 + "\n")

    line = one_line(check_config(path))

    assert line.startswith(f"{path}:4: deep[0][0]") and line.endswith(f": nested more than {MAX_DEPTH} levels deep")


def test_complex_keys_nesting_deep_are_refused(tmp_path: Path) -> None:
    # `? ? ? a`: keys of keys nest without a key path to show for it
    path = write(tmp_path, CAMERA + "? " * 3000 + "a\n")

    assert one_line(check_config(path)) == f"{path}:4: nested more than {MAX_DEPTH} levels deep"


def test_a_collection_tag_on_a_scalar_is_a_yaml_error(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERA + "mqtt: !!set 0\n")

    assert (
        one_line(check_config(path))
        == f"{path}:4: YAML error at column 7: expected a mapping for tag:yaml.org,2002:set"
    )


def test_a_chain_of_aliases_nesting_deep_is_refused(tmp_path: Path) -> None:
    chain = "".join(f"a{n}: &a{n} [*a{n - 1}]\n" for n in range(1, 2000))
    path = write(tmp_path, CAMERA + "a0: &a0 [1]\n" + chain)

    assert one_line(check_config(path)).endswith(f": aliases nest this more than {MAX_DEPTH} levels deep")


def test_too_many_values_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERA + "many: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n")

    assert one_line(check_config(path)).endswith(f": the file has more than {MAX_NODES} values")


@pytest.mark.parametrize(
    ("value", "kind"),
    [("2001-13-45", "a date"), ("1" * 5000, "an integer"), ("!!float abc", "a number")],
    ids=["impossible date", "5000-digit integer", "tagged float"],
)
def test_scalars_yaml_cannot_convert_name_their_key(tmp_path: Path, value: str, kind: str) -> None:
    path = write(tmp_path, CAMERA + f"mqtt:\n  port: {value}\n")

    assert one_line(check_config(path)).startswith(f"{path}:5: mqtt.port: cannot read the value as {kind}")


def test_a_key_with_a_newline_stays_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERA + '"evil\\nforged line\\u2028": 1\n')

    assert one_line(check_config(path)).startswith(f"{path}:4: ['evil\\nforged line\\u2028']: unknown key")


# ----------------------------------------------------------------------------------------------- what is not a file


def test_dev_zero_is_refused_without_reading_it() -> None:
    line = one_line(check_config("/dev/zero"))

    assert line == "/dev/zero: cannot read the file: it is a character device, not a regular file"


def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "edge-depth.yaml"
    os.mkfifo(fifo)

    line = one_line(check_config(fifo))

    assert line == f"{fifo}: cannot read the file: it is a named pipe (FIFO), not a regular file"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    line = one_line(check_config(tmp_path))

    assert line == f"{tmp_path}: cannot read the file: it is a directory, not a regular file"


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, CAMERA + ("# padding\n" * (MAX_FILE_BYTES // 10 + 1)))

    assert one_line(check_config(path)) == (
        f"{path}: the file is larger than {MAX_FILE_BYTES} bytes: not a configuration file"
    )


# ----------------------------------------------------------------------------------------------- values MQTT and the
# filesystem cannot use

NUL, NEWLINE = "\\0", "\\n"  # YAML double-quoted escapes: the file itself stays printable
LONG = "a" * 70_000  # over MQTT's 65,535-byte strings
VALUE_CASES = {
    "host with a newline": ("mqtt", "host", f'"broker{NEWLINE}forged"', "control characters"),
    "host with a NUL": ("mqtt", "host", f'"broker{NUL}"', "NUL"),
    "host with a space": ("mqtt", "host", '"my broker"', "must not contain spaces"),
    "host with wildcards": ("mqtt", "host", '"broker/#/+"', "must not contain '/' or '#' or '+'"),
    "host too long": ("mqtt", "host", "b" * 300, "at most 253 characters"),
    "client id with a NUL": ("mqtt", "client_id", f'"edge{NUL}depth"', "NUL"),
    "client id with a newline": ("mqtt", "client_id", f'"edge{NEWLINE}depth"', "control characters"),
    "client id with a wildcard": ("mqtt", "client_id", '"edge+depth"', "'+' (reserved for MQTT topic wildcards)"),
    "client id over MQTT's limit": ("mqtt", "client_id", LONG, "must not be longer than 65535 bytes (UTF-8)"),
    "client id over the sane limit": ("mqtt", "client_id", "c" * 200, "at most 128 characters"),
    "topic prefix with a NUL": ("mqtt", "topic_prefix", f'"edge{NUL}"', "NUL"),
    "topic prefix with a control character": ("mqtt", "topic_prefix", '"edge\\x01depth"', "control characters"),
    "topic prefix with '+'": ("mqtt", "topic_prefix", '"edge/+/depth"', "'+' (reserved for MQTT topic wildcards)"),
    "topic prefix with '#'": ("mqtt", "topic_prefix", '"edge/#"', "'#' (reserved for MQTT topic wildcards)"),
    "username with a NUL": ("mqtt", "username", f'"user{NUL}"', "NUL"),
    "username with a newline": ("mqtt", "username", f'"user{NEWLINE}"', "control characters"),
    "username with a wildcard": ("mqtt", "username", '"user#"', "'#' (reserved for MQTT topic wildcards)"),
    "username over MQTT's limit": ("mqtt", "username", LONG, "must not be longer than 65535 bytes (UTF-8)"),
    "username over the sane limit": ("mqtt", "username", "u" * 2000, "at most 1024 characters"),
    "password over MQTT's limit": ("mqtt", "password", LONG, "must not be longer than 4096 characters"),
    "password with a lone surrogate": ("mqtt", "password", '"pass\\ud800"', "lone surrogate"),
    "model cache_dir with a NUL": ("model", "cache_dir", f'"/var/cache{NUL}/x"', "NUL"),
    "model cache_dir with a newline": ("model", "cache_dir", f'"/var/cache{NEWLINE}x"', "control characters"),
    "model path too long": ("model", "path", "/m" * 3000, "must not be longer than 4096 bytes"),
    "discovery prefix with a wildcard": ("homeassistant", "discovery_prefix", '"ha/#"', "reserved for MQTT"),
}


@pytest.mark.parametrize(("section", "key", "value", "message"), VALUE_CASES.values(), ids=list(VALUE_CASES))
def test_values_no_broker_or_filesystem_can_use_are_errors(
    tmp_path: Path, section: str, key: str, value: str, message: str
) -> None:
    # username comes with the password, so that the password's own rule is the one reported.
    extra = "  username: edge\n" if key == "password" else ""
    path = write(tmp_path, f"{section}:\n{extra}  {key}: {value}\n" + CAMERA)

    line = one_line(check_config(path))

    assert line.startswith(f"{path}:{2 + bool(extra)}: {section}.{key}: ") and message in line, line
    assert "forged" not in line and "pass\\" not in line and "aaaa" not in line  # values are never printed


def test_a_substituted_value_is_checked_like_a_written_one(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt:\n  host: ${EVIL_HOST}\n" + CAMERA)

    line = one_line(check_config(path, env={"EVIL_HOST": "broker\nFAKE ok: 1 camera"}))

    assert line.startswith(f"{path}:2: mqtt.host: must not contain control characters")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (os.mkfifo, "it is a named pipe (FIFO), not a regular file"),
        (lambda path: path.symlink_to("/dev/zero"), "it is a character device, not a regular file"),
        (lambda path: path.write_bytes(b"x" * (MAX_CREDENTIAL_BYTES + 1)), f"larger than {MAX_CREDENTIAL_BYTES} bytes"),
        (lambda path: path.write_bytes(b"\xff\xfe"), "not UTF-8 text"),
    ],
    ids=["fifo", "dev-zero", "huge", "binary"],
)
def test_a_credential_that_is_no_small_text_file_is_refused_at_once(
    tmp_path: Path, make: Callable[[Path], object], reason: str
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    make(credentials / "mqtt_password")
    path = write(tmp_path, "mqtt:\n  password: ${credential:mqtt_password}\n" + CAMERA)

    line = one_line(check_config(path, env={"CREDENTIALS_DIRECTORY": str(credentials)}))

    assert line == f"{path}:2: mqtt.password: cannot read credential 'mqtt_password': {reason}"
