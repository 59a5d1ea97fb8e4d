"""Keep secrets out of logs, status payloads and error messages, and keep every log record one line.

Camera URLs carry passwords (``rtsp://admin:s3cret@10.0.0.5/stream``) and OpenCV, FFmpeg and our own
messages quote URLs freely; everything that leaves the process as text goes through ``redact_url``.

Log messages also carry text from outside (MQTT payloads, topics, file names): a newline in it would forge a
journal line, a lone surrogate would make the handler fail. ``RedactingFilter`` escapes every character that
is not printable in the formatted message (``escape``), bounds its length, and never fails on a record;
``quoted`` is the bounded, escaped form of one untrusted value for a message; ``Throttle`` keeps what anyone
can trigger (a bad command on a public topic) to one line a minute.
"""

from __future__ import annotations

import logging
import re
import reprlib
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import quote

MASK = "***"

# scheme://user:password@host. The password runs to the LAST '@' of the authority, so an unencoded
# '@' inside it is still hidden; the authority ends at '/', '?', '#' or whitespace.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*):(?P<password>[^/?#\s]*)@(?=[^@/?#\s]*(?:[/?#\s]|$))"
)
_SECRET_QUERY = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pass|pwd|token|access_token|secret|api_key|apikey|key|auth)=)[^&#\s]*",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URL and the value of secret-looking
    query parameters (password, pass, pwd, token, secret, key, ...) replaced by ``***``.

    >>> redact_url("rtsp://admin:s3cret@10.0.0.5:554/stream?token=abc&ch=1")
    'rtsp://admin:***@10.0.0.5:554/stream?token=***&ch=1'
    """
    text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    return _SECRET_QUERY.sub(rf"\g<head>{MASK}", text)


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each known secret value (and its URL-encoded form) replaced by ``***``.

    Longer secrets are replaced first so that a secret containing another is hidden whole; empty strings
    are ignored.
    """
    forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


MAX_MESSAGE_CHARS = 4000
"""A log message is cut to this many characters (its middle goes): one record stays one journal line."""
MAX_TRACEBACK_CHARS = 8000
"""Exception text is cut to this many characters, keeping its end, where the exception is."""


def escape(text: str, *, keep_newlines: bool = False) -> str:
    r"""``text`` with every character that is not printable written as Python writes it in a string literal:
    newline, carriage return, other control characters, line separators, lone surrogates, bidi overrides.

    >>> escape("ack\nFORGED INFO line\x00\ud800")
    'ack\\nFORGED INFO line\\x00\\ud800'
    """
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() or (keep_newlines and char == "\n") else repr(char)[1:-1] for char in text
    )


def bounded(text: str, limit: int, *, keep: str = "middle") -> str:
    """``text`` cut to at most about ``limit`` characters, saying how much was cut; ``keep`` "end" keeps the end."""
    if len(text) <= limit:
        return text
    cut = f"[{len(text) - limit} characters cut]"
    if keep == "end":
        return cut + text[-limit:]
    return f"{text[: limit // 2]}{cut}{text[-(limit - limit // 2) :]}"


_QUOTED = reprlib.Repr()
_QUOTED.maxstring = 80
_QUOTED.maxother = 80


def quoted(value: object) -> str:
    r"""An untrusted value for a log message: repr-quoted and escaped, at most about 80 characters.

    >>> quoted("kitchen\nFAKE LINE")
    "'kitchen\\nFAKE LINE'"
    """
    return _QUOTED.repr(value)


class RedactingFilter(logging.Filter):
    r"""A handler filter that redacts URL passwords (and given secret values) in every record it passes, and
    makes the message one bounded line: characters that are not printable are escaped (``escape``).

    The record's message is formatted once, redacted, escaped and stored without arguments; exception text is
    redacted and escaped too, its line breaks kept for the formatter to render (the text formatter writes them
    as ``\n``). A record whose arguments do not fit its message is still logged, never raised to the caller.
    Install it on handlers (not loggers) so that records propagated from any logger pass it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def _clean(self, text: str) -> str:
        return redact_secrets(redact_url(text), self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = escape(bounded(self._clean(_message(record)), MAX_MESSAGE_CHARS))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = escape(
                bounded(self._clean(record.exc_text), MAX_TRACEBACK_CHARS, keep="end"), keep_newlines=True
            )
        if record.stack_info:
            record.stack_info = escape(
                bounded(self._clean(record.stack_info), MAX_TRACEBACK_CHARS, keep="end"), keep_newlines=True
            )
        return True


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception as error:  # a wrong argument count or a __str__ that raises: log what there is
        return f"{quoted(record.msg)} with arguments {quoted(record.args)} (unformattable: {type(error).__name__})"


class OneLineFormatter(logging.Formatter):
    r"""logging.Formatter whose output is always one line: the exception text and stack that the base class
    appends on lines of their own are joined with a literal ``\n`` instead (journald makes each line an entry)."""

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


class Throttle:
    """At most one log line per key (a topic, say) per ``interval_s``; the lines in between are counted, and the
    next line for the key, or ``flush`` once the interval is over, says how many there were.

    For messages that anyone can trigger: a flood costs the journal one line a minute per key. Thread-safe.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 60.0,
        *,
        max_keys: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_s
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, int]] = {}  # key -> (time of its last line, lines held back since)

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` had a line within the interval; whether it was logged."""
        now = self._clock()
        with self._lock:
            last, held = self._state.get(key, (None, 0))
            if last is not None and now - last < self._interval:
                self._state[key] = (last, held + 1)
                return False
            self._state.pop(key, None)
            if len(self._state) >= self._max_keys:  # memory stays flat whatever the keys
                oldest = min(self._state, key=lambda k: self._state[k][0])
                del self._state[oldest]
            self._state[key] = (now, 0)
        self._logger.log(level, msg + "%s", *args, _held_back(held, self._interval))
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def flush(self, level: int = logging.WARNING) -> None:
        """One summary line per key whose interval is over with lines still held back."""
        now = self._clock()
        with self._lock:
            due = [(k, held) for k, (last, held) in self._state.items() if held and now - last >= self._interval]
            for key, _ in due:
                del self._state[key]
        for key, held in due:
            self._logger.log(level, "%s: %d more like the last line%s", quoted(key), held, _since(self._interval))


def _held_back(count: int, interval_s: float) -> str:
    return f" ({count} more like it held back{_since(interval_s)})" if count else ""


def _since(interval_s: float) -> str:
    return f" in the last {interval_s:g} s"
