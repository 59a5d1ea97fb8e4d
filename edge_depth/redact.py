"""Keep secrets out of logs, status payloads and error messages.

Camera URLs carry passwords (``rtsp://admin:s3cret@10.0.0.5/stream``) and OpenCV, FFmpeg and our own
messages quote URLs freely; everything that leaves the process as text goes through ``redact_url``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
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


class RedactingFilter(logging.Filter):
    """A handler filter that redacts URL passwords (and given secret values) in every record it passes.

    The record's message is formatted once, redacted, and stored without arguments; exception text is
    redacted too. Install it on handlers (not loggers) so that records propagated from any logger pass it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def _clean(self, text: str) -> str:
        return redact_secrets(redact_url(text), self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self._clean(record.stack_info)
        return True
