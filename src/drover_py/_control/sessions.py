"""Browser sessions of the status page: a cookie that stands for the access key.

A browser signs in once (``POST /login`` with the key) and gets a random session token
in an HttpOnly, SameSite=Strict cookie; the server keeps the tokens (hashed) in memory
with an expiry, a bounded number of them. Requests authorized by that cookie that change
state must also carry the ``X-Drover-CSRF`` header, which a cross-site form cannot send
and a cross-origin script cannot send without a CORS preflight that is never granted.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs, urlsplit

import attrs

#: Seconds a session lasts after sign-in.
SESSION_TTL = 12 * 3600.0
#: Sessions kept at most; signing in beyond it ends the one closest to expiring.
MAX_SESSIONS = 64
#: The cookie's name; ``-PORT`` follows when the request's Host names a port, so that
#: two control servers on one host (cookies ignore ports) do not sign each other out.
COOKIE = "drover-py-session"
#: The header a cookie-authorized request that changes state must carry (any value).
CSRF_HEADER = b"x-drover-csrf"
#: Methods that change nothing: a session cookie alone authorizes them.
SAFE_METHODS = ("GET", "HEAD")

Headers = Sequence[tuple[bytes, bytes]]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


@attrs.define
class Sessions:
    """Session tokens with their expiry; ``clock`` gives the time (monotonic seconds)."""

    ttl: float = SESSION_TTL
    limit: int = MAX_SESSIONS
    clock: Callable[[], float] = time.monotonic
    _expiry: dict[bytes, float] = attrs.field(factory=dict, init=False)

    def create(self) -> str:
        """Return a new session token, valid for ``ttl`` seconds."""
        now = self.clock()
        self._expiry = {digest: at for digest, at in self._expiry.items() if at > now}
        while len(self._expiry) >= self.limit:
            del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
        token = secrets.token_urlsafe(32)
        self._expiry[_digest(token)] = now + self.ttl
        return token

    def valid(self, token: str) -> bool:
        """Return whether ``token`` is a session that has not expired."""
        at = self._expiry.get(_digest(token))
        if at is None:
            return False
        if at <= self.clock():
            del self._expiry[_digest(token)]
            return False
        return True

    def drop(self, token: str) -> None:
        """End the session ``token`` (sign out)."""
        self._expiry.pop(_digest(token), None)

    def find(self, headers: Headers) -> str | None:
        """Return the valid session token among the request's cookies, if any."""
        return next((token for token in session_cookies(headers) if self.valid(token)), None)


def header(headers: Headers, name: bytes) -> bytes | None:
    """Return the value of header ``name`` (lower case), or None."""
    return next((value for key, value in headers if key == name), None)


def session_cookies(headers: Headers) -> list[str]:
    """Return the values of the request's session cookies (of any port)."""
    found = []
    for key, value in headers:
        if key != b"cookie":
            continue
        for pair in value.decode("latin-1").split(";"):
            name, _, token = pair.strip().partition("=")
            if name == COOKIE or name.startswith(COOKIE + "-"):
                found.append(token)
    return found


def cookie_name(headers: Headers) -> str:
    """Return the session cookie's name for the address the request was sent to."""
    host = (header(headers, b"host") or b"").decode("latin-1")
    try:
        port = urlsplit("//" + host).port
    except ValueError:
        port = None
    return COOKIE if port is None else f"{COOKIE}-{port}"


def set_cookie(headers: Headers, token: str, max_age: float) -> tuple[str, str]:
    """Return the Set-Cookie header that stores ``token`` (an empty one with 0 deletes it).

    Not ``Secure``: the control server speaks plain HTTP, on loopback.
    """
    return (
        "set-cookie",
        f"{cookie_name(headers)}={token}; Path=/; Max-Age={int(max_age)}; HttpOnly; SameSite=Strict",
    )


def has_csrf_header(headers: Headers) -> bool:
    """Return whether the request carries the ``X-Drover-CSRF`` header."""
    return header(headers, CSRF_HEADER) is not None


class BadLogin(ValueError):
    """The body of ``POST /login`` holds no key."""


def login_key(headers: Headers, body: bytes) -> str:
    """Return the key of a ``POST /login`` body: a form (``key=...``) or JSON ``{"key": ...}``.

    Raise `BadLogin` with a one-line reason when there is none.
    """
    kind = (header(headers, b"content-type") or b"").decode("latin-1").partition(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        keys = parse_qs(body.decode("utf-8", "replace")).get("key")
        if not keys:
            raise BadLogin("the form has no field 'key'")
        return keys[-1]
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadLogin('expected a JSON body {"key": "..."} or a form with a field key') from None
    if not isinstance(fields, dict) or not isinstance(fields.get("key"), str):
        raise BadLogin('expected a JSON body {"key": "..."}')
    key: str = fields["key"]
    return key
