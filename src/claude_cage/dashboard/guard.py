"""Who may ask the dashboard anything, decided before any route runs.

- Host: only `127.0.0.1:PORT` and `localhost:PORT`. A DNS-rebinding page reaches our
  port under its own name, so its requests carry its Host and are refused.
- Token: a random 256-bit token in the URL the command prints (as Jupyter's). The page
  keeps it in the tab's sessionStorage and takes it out of the address bar; every API
  request carries it in an `Authorization: token ...` header (a live view's EventSource,
  which cannot, in `?token=`). Never a cookie: a browser sends a 127.0.0.1 cookie to
  every port there, so any other local user's server on another port would get it.
  Only the page's shell (`/`, its script and style: no session's data, nothing secret
  but the CSRF token, which is worth nothing without the token) is served without it.
- State changes are POSTs with an `Origin` of this server and the CSRF token the page
  carries (`X-CSRF-Token`), compared in constant time. A cross-site form or fetch has
  neither.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

SAFE_METHODS = ("GET", "HEAD")


PUBLIC = ("/", "/static/app.js", "/static/app.css")  # the page's shell


@dataclass
class Verdict:
    status: int  # 0: allowed
    reason: str = ""


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

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def _same(self, given: str | None, secret: str) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), secret.encode())

    def check(self, environ: dict[str, Any]) -> Verdict:
        if environ.get("HTTP_HOST", "") not in self.hosts:
            return Verdict(403, "wrong Host header")
        method = environ.get("REQUEST_METHOD", "GET")
        if method in SAFE_METHODS and environ.get("PATH_INFO", "/") in PUBLIC:
            return Verdict(0)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        by_query = self._same((query.get("token") or [None])[0], self.token)
        header = environ.get("HTTP_AUTHORIZATION", "")
        by_header = header.startswith("token ") and self._same(header[6:], self.token)
        if not (by_query or by_header):
            return Verdict(403, "no valid token: open the URL 'claude-cage ui' printed")
        if method not in SAFE_METHODS:
            if environ.get("HTTP_ORIGIN") not in self.origins:
                return Verdict(403, "cross-origin request refused")
            if not self._same(environ.get("HTTP_X_CSRF_TOKEN"), self.csrf):
                return Verdict(403, "missing or wrong CSRF token")
        return Verdict(0)
