"""Who may ask the dashboard anything, decided before any route runs.

- Host: only `127.0.0.1:PORT` and `localhost:PORT`. A DNS-rebinding page reaches our
  port under its own name, so its requests carry its Host and are refused.
- Token: a random 256-bit token in the URL the command prints (as Jupyter's). The first
  visit with `?token=` gets it as a cookie (HttpOnly, SameSite=Strict, scoped to the
  port) and is sent on without it, so it leaves the address bar and the history; every
  request needs the cookie, the `?token=` or an `Authorization: token ...` header.
- State changes are POSTs with an `Origin` of this server and the CSRF token the page
  carries (`X-CSRF-Token`), compared in constant time. A cross-site form or fetch has
  neither.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

SAFE_METHODS = ("GET", "HEAD")


@dataclass
class Verdict:
    status: int  # 0: allowed
    reason: str = ""
    set_cookie: bool = False  # authenticated by ?token=: give the cookie, drop the query


@dataclass
class Guard:
    port: int
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def hosts(self) -> tuple[str, ...]:
        return (f"127.0.0.1:{self.port}", f"localhost:{self.port}")

    @property
    def origins(self) -> tuple[str, ...]:
        return tuple(f"http://{h}" for h in self.hosts)

    @property
    def cookie_name(self) -> str:
        return f"cage_ui_{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def cookie(self) -> str:
        return f"{self.cookie_name}={self.token}; HttpOnly; SameSite=Strict; Path=/"

    def _same(self, given: str | None, secret: str) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), secret.encode())

    def _cookie_token(self, environ: dict[str, Any]) -> str | None:
        try:
            jar = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        except CookieError:
            return None
        morsel = jar.get(self.cookie_name)
        return morsel.value if morsel else None

    def check(self, environ: dict[str, Any]) -> Verdict:
        if environ.get("HTTP_HOST", "") not in self.hosts:
            return Verdict(403, "wrong Host header")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        by_query = self._same((query.get("token") or [None])[0], self.token)
        header = environ.get("HTTP_AUTHORIZATION", "")
        by_header = header.startswith("token ") and self._same(header[6:], self.token)
        if not (by_query or by_header or self._same(self._cookie_token(environ), self.token)):
            return Verdict(403, "no valid token: open the URL 'claude-cage ui' printed")
        if environ.get("REQUEST_METHOD", "GET") not in SAFE_METHODS:
            if environ.get("HTTP_ORIGIN") not in self.origins:
                return Verdict(403, "cross-origin request refused")
            if not self._same(environ.get("HTTP_X_CSRF_TOKEN"), self.csrf):
                return Verdict(403, "missing or wrong CSRF token")
        return Verdict(0, set_cookie=by_query and environ.get("REQUEST_METHOD") == "GET")
