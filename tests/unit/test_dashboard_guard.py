"""The dashboard's guard, as an attacker meets it: the WSGI application called with
the requests a rebinding page, a cross-site form and a stranger without the token
would send. No engine: every refusal happens before any route runs."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from claude_cage.cli.base import load_all
from claude_cage.dashboard.app import Dashboard
from claude_cage.dashboard.guard import Guard

PORT = 48123


def call(
    app: Dashboard, path: str = "/", method: str = "GET", query: str = "", **headers: str
) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_HOST": f"127.0.0.1:{PORT}",
        "CONTENT_LENGTH": "2",
        "wsgi.input": io.BytesIO(b"{}"),
    }
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    seen: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start))
    return seen["status"], seen["headers"], body


def app() -> tuple[Dashboard, Guard]:
    guard = Guard(PORT)
    return Dashboard(guard), guard


def test_without_the_token_everything_is_refused() -> None:
    dashboard, guard = app()
    for path in ("/api/sessions", "/api/stream/events", "/api/events"):
        status, _, body = call(dashboard, path)
        assert status.startswith("403"), path
        assert "token" in json.loads(body)["error"]
    assert call(dashboard, "/api/sessions", query="token=" + guard.token[:-1] + "x")[0].startswith(
        "403"
    )
    # The right token as a cookie is refused too: a browser sends a 127.0.0.1 cookie to
    # every port there, so another local user's server would have received it.
    for cookie in (f"cage_ui_{PORT}={guard.token}", f"token={guard.token}"):
        assert call(dashboard, "/api/sessions", cookie=cookie)[0].startswith("403")


def test_the_pages_shell_is_served_without_the_token_and_holds_nothing_of_it() -> None:
    dashboard, guard = app()
    for path in ("/", "/static/app.js", "/static/app.css"):
        status, headers, body = call(dashboard, path)
        assert status.startswith("200"), path
        assert "Set-Cookie" not in headers
        assert guard.token.encode() not in body
    _, headers, _ = call(dashboard)
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"


def test_a_rebinding_host_is_refused_even_with_the_token() -> None:
    dashboard, guard = app()
    for host in (f"evil.test:{PORT}", "127.0.0.1", f"127.0.0.1:{PORT + 1}", ""):
        status, _, body = call(dashboard, query=f"token={guard.token}", host=host)
        assert status.startswith("403") and b"Host" in body, host


def test_state_changes_need_this_origin_and_the_csrf_token() -> None:
    dashboard, guard = app()
    auth = {"authorization": f"token {guard.token}"}
    origin = f"http://127.0.0.1:{PORT}"
    attacks = [
        {},  # a form with no Origin
        {"origin": "http://evil.test"},  # a cross-site fetch
        {"origin": "null"},  # a sandboxed frame
        {"origin": origin},  # no CSRF token
        {"origin": origin, "x_csrf_token": guard.token},  # the wrong secret
    ]
    for extra in attacks:
        status, _, body = call(dashboard, "/api/action", "POST", **auth, **extra)
        assert status.startswith("403"), extra
    status, _, body = call(
        dashboard, "/api/action", "POST", **auth, origin=origin, x_csrf_token=guard.csrf
    )
    assert status.startswith("409") and b"no such action" in body  # past the guard


def test_the_browser_is_handed_a_private_page_never_the_token(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser's command line (and xdg-open's) is in `ps` for every local user: `ui`
    hands it the path of a 0600 page that goes on to the URL, not the URL itself."""
    import webbrowser

    from claude_cage.dashboard import server

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    monkeypatch.setattr(server, "serve", lambda http, guard: http.server_close())
    result = CliRunner().invoke(load_all(), ["ui"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    url = result.output.splitlines()[0]
    token = url.split("token=", 1)[1]
    assert len(opened) == 1 and token not in opened[0]
    page = Path(opened[0].removeprefix("file://"))
    assert page == server.launcher_file()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert f"url={url}'" in page.read_text()
