"""Passwords in camera URLs and known secrets never reach a log line."""

from __future__ import annotations

import doctest
import io
import json
import logging
from collections.abc import Callable

import pytest

from edge_depth import redact
from edge_depth.cli import _setup_logging
from edge_depth.redact import MAX_MESSAGE_CHARS, RedactingFilter, Throttle, escape, quoted, redact_secrets, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:s3cret@10.0.0.5:554/stream", "rtsp://admin:***@10.0.0.5:554/stream"),
        ("rtsps://admin:s3cret@cam.local", "rtsps://admin:***@cam.local"),
        ("http://u:p%40ss@cam/video.mjpg", "http://u:***@cam/video.mjpg"),
        # an unencoded '@' or ':' in the password is still hidden whole
        ("rtsp://admin:p@ss:w0rd@10.0.0.5/ch1", "rtsp://admin:***@10.0.0.5/ch1"),
        ("rtsp://:only-password@cam/x", "rtsp://:***@cam/x"),
        ("cannot open 'rtsp://a:b@h/x' and rtsp://c:d@k/y", "cannot open 'rtsp://a:***@h/x' and rtsp://c:***@k/y"),
        ("http://cam/snap.cgi?user=admin&pwd=hunter2&ch=1", "http://cam/snap.cgi?user=admin&pwd=***&ch=1"),
        ("rtsp://cam/live?Token=abc.def", "rtsp://cam/live?Token=***"),
    ],
)
def test_redact_url_hides_passwords(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "rtsp://10.0.0.5:554/stream",
        "rtsp://viewer@10.0.0.5/stream",
        "http://cam:8080/a@b",
        "/dev/video0",
        "camera front: no frame for 20.0 s",
        "mailto-like user@example.com is not a URL with a password",
    ],
)
def test_redact_url_leaves_text_without_secrets_alone(text: str) -> None:
    assert redact_url(text) == text


def test_docstring_example() -> None:
    assert doctest.testmod(redact).failed == 0


def test_redact_secrets_hides_known_values_and_their_url_encoding() -> None:
    text = "password p@ss/1 sent as p%40ss%2F1; token abc"
    assert redact_secrets(text, ["p@ss/1", "", "abc"]) == "password *** sent as ***; token ***"
    # the longer secret is hidden whole, not partly by the shorter one it contains
    assert redact_secrets("key=abcdef", ["abc", "abcdef"]) == "key=***"


def test_filter_redacts_arguments_and_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test_redact")
    caplog.handler.addFilter(RedactingFilter(secrets=["mqtt-pw"]))
    with caplog.at_level(logging.INFO, logger="test_redact"):
        logger.info("opening %s with %s", "rtsp://admin:s3cret@10.0.0.5/x", "mqtt-pw")
        try:
            raise ValueError("bad url rtsp://root:toor@cam/y")
        except ValueError:
            logger.exception("capture failed")

    assert "s3cret" not in caplog.text
    assert "mqtt-pw" not in caplog.text
    assert "toor" not in caplog.text
    assert "opening rtsp://admin:***@10.0.0.5/x with ***" in caplog.text
    assert "rtsp://root:***@cam/y" in caplog.text  # the traceback is still there, redacted


# ----------------------------------------------------------------------------------------------- one record, one line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text, unicode é ✓", "plain text, unicode é ✓"),
        ("a\nb\r\nc", "a\\nb\\r\\nc"),
        ("nul\x00 esc\x1b[31m del\x7f", "nul\\x00 esc\\x1b[31m del\\x7f"),
        ("sep\u2028\u2029 nel\x85 bidi\u202e", "sep\\u2028\\u2029 nel\\x85 bidi\\u202e"),
        ("lone\ud800", "lone\\ud800"),
    ],
)
def test_escape_leaves_one_printable_line(text: str, expected: str) -> None:
    assert escape(text) == expected
    assert escape(text).isprintable()


def test_quoted_is_bounded_and_escaped() -> None:
    assert quoted("a\nb") == "'a\\nb'"
    assert len(quoted("x" * 10_000)) <= 90
    assert quoted(b"\x00\n" * 1000).startswith("b'\\x00\\n")


def _handler_output(fmt: str, emit: Callable[[logging.Logger], None]) -> str:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    _setup_logging("INFO", fmt, stream)
    try:
        emit(logging.getLogger("test_redact.lines"))
    finally:
        root.handlers[:], root.level = saved
    return stream.getvalue()


def _forged(log: logging.Logger) -> None:
    log.warning("ignored message on %s: %s", "t/ack", "x\n2026-12-03 10:00:00,000 INFO edge_depth: forged\r\ud800")


def _failed(log: logging.Logger) -> None:
    try:
        raise ValueError("bad payload\nforged line")
    except ValueError:
        log.exception("MQTT handler for %s failed", "t/ack")


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("emit", [_forged, _failed], ids=["newline in an argument", "traceback"])
def test_a_record_is_one_line_in_both_formats(fmt: str, emit: Callable[[logging.Logger], None]) -> None:
    output = _handler_output(fmt, emit)

    assert output.count("\n") == 1 and output.endswith("\n"), output
    assert output[:-1].isprintable()
    if fmt == "json":
        entry = json.loads(output)
        assert "\n" not in entry["message"]
    else:
        assert "forged" not in output or "\\n" in output


def test_a_traceback_keeps_its_lines_for_the_json_field() -> None:
    entry = json.loads(_handler_output("json", _failed))
    assert entry["message"] == "MQTT handler for t/ack failed"
    assert entry["exception"].startswith("Traceback (most recent call last):\n")


def test_a_record_whose_arguments_do_not_fit_is_still_logged() -> None:
    template = "%s and %d"  # as if it came from outside: too few arguments for it
    output = _handler_output("text", lambda log: log.warning(template, "only one"))

    assert "'%s and %d' with arguments ('only one',) (unformattable: TypeError)" in output


def test_a_huge_message_is_cut_in_the_middle() -> None:
    output = _handler_output("text", lambda log: log.warning("start %s end", "x" * 100_000))

    assert output.count("\n") == 1 and "start " in output and " end" in output
    assert len(output) < MAX_MESSAGE_CHARS + 200 and "characters cut]" in output


def test_throttle_logs_one_line_per_key_per_interval_with_the_count() -> None:
    now = [0.0]
    logger = logging.getLogger("test_redact.throttle")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        throttle = Throttle(logger, 60.0, max_keys=2, clock=lambda: now[0])
        for _ in range(100):
            throttle.warning("a", "bad on %s", "a")
        throttle.warning("b", "bad on %s", "b")
        now[0] = 30.0
        throttle.flush()  # a's minute is not over: nothing yet
        now[0] = 61.0
        throttle.warning("a", "bad on %s", "a")
        throttle.warning("b", "bad on %s", "b")
        throttle.warning("b", "bad on %s", "b")
        now[0] = 122.0
        throttle.flush()
        for key in "cdefgh":  # more keys than it keeps: memory stays flat
            throttle.warning(key, "bad on %s", key)
        assert len(throttle._state) <= 2
    finally:
        logger.removeHandler(handler)

    assert records[:4] == [
        "bad on a",
        "bad on b",
        "bad on a (99 more like it held back in the last 60 s)",
        "bad on b",
    ]
    assert records[4] == "'b': 1 more like the last line in the last 60 s"
