"""Passwords in camera URLs and known secrets never reach a log line."""

from __future__ import annotations

import doctest
import logging

import pytest

from edge_depth import redact
from edge_depth.redact import RedactingFilter, redact_secrets, redact_url


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
