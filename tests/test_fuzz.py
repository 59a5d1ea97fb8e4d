"""Property-based fuzzing of everything that reads untrusted input: the config loader (random YAML documents,
random text, mutations of the example config), the MQTT command parsers, and the log escaping.

Sized for CI (the whole module runs in well under two minutes); the fixed hostile cases it grew from are in
test_hostile_config.py, test_alerts_commands.py and test_redact.py.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_depth.alerts.commands import parse_ack, parse_baseline_reset
from edge_depth.cli import _setup_logging
from edge_depth.config import check_config

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "edge-depth.yaml"

# EDGE_DEPTH_FUZZ_SCALE=50 runs fifty times the examples, for a long search outside CI.
SCALE = int(os.environ.get("EDGE_DEPTH_FUZZ_SCALE", "1"))
# No example database: the working tree is shared, and CI starts clean anyway. The deadline is the hang check:
# a configuration is answered within a few seconds whatever it holds (on a busy two-core runner).
FUZZ = settings(
    database=None,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# Characters that have broken parsers and log lines before: controls, line separators, lone surrogates, a BOM,
# bidi overrides, YAML and MQTT syntax.
HOSTILE_CHARS = list("\n\r\t\x00\x1b\x7f\x85\u2028\u2029\ud800\udfff\ufeff\u202e\"'\\%#+/:&*!|>[]{}$@,?-")
TEXT = st.text(st.one_of(st.characters(), st.sampled_from(HOSTILE_CHARS)), max_size=40)
CONFIG_KEYS = [
    "mqtt", "host", "port", "client_id", "topic_prefix", "username", "password", "tls", "ca_file", "model", "path",
    "cache_dir", "device", "input_size", "cameras", "name", "source", "enabled", "alerts", "zones", "polygon",
    "heatmap", "rate_hz", "logging", "level", "format", "state_dir", "homeassistant", "discovery_prefix", "web", "<<",
]  # fmt: skip
KEYS = st.one_of(st.sampled_from(CONFIG_KEYS), TEXT)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT, st.sampled_from(["0", "cam", "${X}"])
)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=40,
)
YAML_TOKENS = [
    "&a ", "*a", "&b [*b]", "<<: *a\n", "[", "]", "{", "}", ": ", "- ", "\t", '"', "'", "\\", "\n", "\n  ", "\n    - ",
    "!!python/object:os.system ", "!!int ", "!!float ", "!!timestamp ", "!!binary ", "!!set ", "!foo ", "? ", "|", ">",
    "%YAML 1.1\n", "---\n", "...\n", "#", "2001-13-45", "1e999", "1" * 5000, "${X}", "${credential:x}", "$${", "${",
    '"\\0"', '"\\ud800"', '"\\n"', "\x00", "\ufeff", "\u2028", "~", "null", "yes", "0x1F", "0o17", ".inf",
]  # fmt: skip


def assert_answer(path: Path, code: int, text: str) -> None:
    """check-config's answer: a one-line summary, or error lines `<file>:<line>: ...`, each printable."""
    lines = text.split("\n")
    assert all(line.isprintable() for line in lines), text
    if code == 0:
        assert len(lines) == 1 and lines[0].startswith(f"{path}: ok: "), text
        return
    assert code == 2
    where = re.compile(re.escape(str(path)) + r":\d+: ")
    assert lines and all(where.match(line) for line in lines), text


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Module-scoped: Hypothesis reruns the test body, not function-scoped fixtures; each example rewrites it.
    return tmp_path_factory.mktemp("fuzz") / "edge-depth.yaml"


def answer(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    code, text = check_config(path)
    assert_answer(path, code, text)


# ----------------------------------------------------------------------------------------------- the config loader


@settings(FUZZ, max_examples=400 * SCALE)
@given(data=DATA, flow=st.booleans(), unicode=st.booleans())
def test_random_yaml_documents_get_an_answer(config_path: Path, data: Any, flow: bool, unicode: bool) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=unicode)
    answer(config_path, text.encode("utf-8", "surrogatepass"))


@settings(FUZZ, max_examples=400 * SCALE)
@given(text=st.lists(st.one_of(st.characters(), st.sampled_from(HOSTILE_CHARS + YAML_TOKENS))).map("".join))
def test_random_text_gets_an_answer(config_path: Path, text: str) -> None:
    answer(config_path, text.encode("utf-8", "surrogatepass"))


@st.composite
def mutated_example(draw: st.DrawFn) -> bytes:
    content = bytearray(EXAMPLE.read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(content)))
        operation = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "byte"]))
        if operation == "insert":
            content[at:at] = draw(st.sampled_from(YAML_TOKENS)).encode("utf-8", "surrogatepass")
        elif operation == "delete":
            del content[at : at + draw(st.integers(1, 200))]
        elif operation == "replace":
            content[at : at + draw(st.integers(1, 20))] = draw(TEXT).encode("utf-8", "surrogatepass")
        elif operation == "duplicate":
            size = draw(st.integers(1, 400))
            content[at:at] = content[at : at + size] * draw(st.integers(1, 8))
        else:
            content[at:at] = bytes([draw(st.integers(0, 255))])
    return bytes(content)


@settings(FUZZ, max_examples=800 * SCALE)
@given(content=mutated_example())
def test_mutations_of_the_example_get_an_answer(config_path: Path, content: bytes) -> None:
    answer(config_path, content)


@st.composite
def example_with_a_value_replaced(draw: st.DrawFn) -> str:
    """The example's data with one key's value swapped for a random one: values reach the schema itself."""
    data = yaml.safe_load(EXAMPLE.read_text())
    node = data
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        if isinstance(node[key], dict | list) and node[key] and draw(st.booleans()):
            node = node[key]
            continue
        node[key] = draw(DATA)
        return yaml.safe_dump(data, allow_unicode=True)


@settings(FUZZ, max_examples=600 * SCALE)
@given(text=example_with_a_value_replaced())
def test_random_values_in_the_example_get_an_answer(config_path: Path, text: str) -> None:
    answer(config_path, text.encode("utf-8", "surrogatepass"))


# ----------------------------------------------------------------------------------------------- MQTT commands

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.just("id"), TEXT), inner)),
    max_leaves=20,
)


def nested(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "0" + closer * depth).encode()


PAYLOADS = st.one_of(
    st.binary(max_size=5000),
    JSON.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.builds(lambda event_id: json.dumps({"id": event_id}).encode(), TEXT),
    st.builds(nested, st.integers(0, 2100), st.sampled_from(["[", '{"a":'])),
)


@settings(FUZZ, max_examples=1500 * SCALE)
@given(payload=PAYLOADS)
def test_command_parsers_answer_a_value_or_one_line(payload: bytes) -> None:
    for parse, what in ((parse_ack, "ack: "), (parse_baseline_reset, "baseline reset: ")):
        try:
            value = parse(payload)
        except ValueError as error:
            reason = str(error)
            assert reason.startswith(what) and reason.isprintable() and len(reason) < 500, reason
        else:
            assert value is None or (isinstance(value, str) and value.isprintable() and "\n" not in value)


# ----------------------------------------------------------------------------------------------- log lines


@contextmanager
def daemon_logging(fmt: str) -> Iterator[io.StringIO]:
    """The daemon's own log handler (cli._setup_logging) writing to a buffer; the root logger restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    _setup_logging("DEBUG", fmt, stream)
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


@settings(FUZZ, max_examples=600 * SCALE)
@given(fmt=st.sampled_from(["text", "json"]), text=TEXT, template=TEXT, kind=st.integers(0, 4))
def test_every_record_is_one_line(fmt: str, text: str, template: str, kind: int) -> None:
    log = logging.getLogger("edge_depth.fuzz")
    with daemon_logging(fmt) as stream:
        if kind == 0:
            log.warning("ignored message on %s: %s", "edge-depth/cam/alert/ack", text)
        elif kind == 1:
            log.warning(template, text)  # the template itself untrusted: stray %s and %d
        elif kind == 2:
            log.error("%s %s", text, _Unprintable())
        elif kind == 3:
            try:
                raise ValueError(text)
            except ValueError:
                log.exception("handler for %s failed", text)
        else:
            log.info(text, stack_info=True)
    output = stream.getvalue()

    assert output.endswith("\n") and output.count("\n") == 1, output
    line = output[:-1]
    line.encode("utf-8")  # strict: no lone surrogate reaches the journal
    assert line.isprintable(), line
    if fmt == "json":
        entry = json.loads(line)
        assert isinstance(entry["message"], str)
