"""Who may use the console: the token, the session cookie, cross-site POSTs and the Host header.

- With a token (``web.token``), every page and API call except ``/healthz``, ``/readyz``, ``/login`` and the static
  assets needs either ``Authorization: Bearer <token>`` (scripts, Prometheus) or the session cookie that
  ``POST /login`` sets (browsers). The cookie holds an HMAC of the token, never the token; it is HttpOnly and
  SameSite=Strict.
- Every unsafe request (POST, ...) from a browser must be same-origin: a ``Sec-Fetch-Site`` other than
  ``same-origin``/``none``, or an ``Origin`` whose host is not the request's, is refused (403), token or not. A
  page elsewhere can thus never acknowledge an alert or reset a baseline through a visitor's browser.
- Without a token (loopback only, the schema insists) the ``Host`` header must name this machine, so that a
  DNS-rebinding page cannot read the console as if it were its own origin.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from edge_depth.config.web import is_loopback

COOKIE = "edge_depth_session"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """``status`` 0 lets the request through; otherwise the HTTP status and a one-line reason."""

    status: int
    reason: str = ""


ALLOW = Verdict(0)


class Guard:
    """The checks above for one token (None: no token configured)."""

    def __init__(self, token: str | None) -> None:
        self._token = token
        self._session = None if token is None else hmac.new(token.encode(), b"edge-depth session", "sha256").hexdigest()

    @property
    def enabled(self) -> bool:
        return self._token is not None

    @property
    def session_value(self) -> str:
        """The cookie value a correct login sets."""
        assert self._session is not None
        return self._session

    def token_ok(self, candidate: str) -> bool:
        if self._token is None:
            return True
        # Compare digests: equal lengths, constant time, whatever was sent.
        return hmac.compare_digest(_digest(candidate), _digest(self._token))

    def check(self, method: str, path: str, headers: dict[str, str]) -> Verdict:
        """The verdict for a request; ``headers`` with lower-case names."""
        if method not in SAFE_METHODS:
            cross = _cross_site(headers)
            if cross:
                return Verdict(403, cross)
        if self._token is None:
            host = urlsplit("//" + headers.get("host", "")).hostname or ""
            if not is_loopback(host):
                return Verdict(403, "the console is bound to loopback without a token: open it as 127.0.0.1")
            return ALLOW
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return ALLOW
        if self.authorized(headers):
            return ALLOW
        return Verdict(401, "a token is needed: log in at /login, or send 'Authorization: Bearer <token>'")

    def authorized(self, headers: dict[str, str]) -> bool:
        if self._token is None:
            return True
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value and self.token_ok(value.strip()):
            return True
        cookie = _cookie(headers.get("cookie", ""), COOKIE)
        return cookie is not None and hmac.compare_digest(cookie, self.session_value)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _cross_site(headers: dict[str, str]) -> str:
    """Why an unsafe request is cross-site, or '' when it is not (scripts without these headers pass)."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    origin = headers.get("origin")
    if origin is not None and origin != "null":
        if urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
            return "cross-site request refused (Origin does not match Host)"
    elif origin == "null":
        return "cross-site request refused (Origin: null)"
    return ""


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def safe_next(target: str) -> str:
    """A post-login redirect target: a path on this site, never another site (``//host`` or a scheme)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
