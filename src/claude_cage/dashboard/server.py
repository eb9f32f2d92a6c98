"""Serving the dashboard: wsgiref's server with a thread per request (the live views
hold theirs open), on 127.0.0.1 only, and the state file (`$CAGE_DATA_DIR/ui.json`,
0600: it holds the token) through which `ui` finds a dashboard already running and
`ui --stop` ends it."""

from __future__ import annotations

import contextlib
import html
import json
import os
import secrets
import signal
import socketserver
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from claude_cage import detach as detach_mod
from claude_cage import paths
from claude_cage.dashboard.app import CONNECTION, Dashboard
from claude_cage.dashboard.guard import Guard
from claude_cage.errors import CageError

HOST = "127.0.0.1"
TOKEN_ENV = "CAGE_UI_TOKEN"


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line would carry the token

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[CONNECTION] = self.connection  # an event stream looks whether the page left
        return environ


@dataclass
class Running:
    pid: int
    port: int
    url: str


def state_file() -> Path:
    return paths.data_dir() / "ui.json"


def launcher_file() -> Path:
    return paths.data_dir() / "ui.html"


def launcher(url: str) -> Path:
    """A page readable by the user alone (0600) that sends the browser on to `url`. The
    browser is handed this file's path, never the URL: a browser's command line (and
    xdg-open's) is visible to every local user in `ps`, and the token in it would
    open the dashboard to any of them. The server removes the page when it ends."""
    path = launcher_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    quoted = html.escape(url, quote=True)
    page = (
        "<!doctype html>\n<meta charset='utf-8'>\n<title>claude-cage</title>\n"
        "<meta name='referrer' content='no-referrer'>\n"
        f"<meta http-equiv='refresh' content='0;url={quoted}'>\n"
        f"<a href='{quoted}'>the dashboard</a>\n"
    )
    temp = path.with_suffix(".html.tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(page)
    os.replace(temp, path)
    return path


def running() -> Running | None:
    """The dashboard of this data directory that runs, if one does."""
    try:
        data = json.loads(state_file().read_text())
        found = Running(int(data["pid"]), int(data["port"]), str(data["url"]))
        os.kill(found.pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found


def bind(port: int, token: str | None = None) -> tuple[WSGIServer, Guard]:
    """The server, listening (port 0: one the system picks)."""
    try:
        server = make_server(HOST, port, lambda e, s: [], _Server, _Quiet)
    except OSError as exc:
        raise CageError(
            f"cannot listen on {HOST}:{port}: {exc.strerror or exc}",
            "pick another port with --port, or leave it out for a free one",
        ) from None
    guard = Guard(server.server_port, **({"token": token} if token else {}))
    server.set_app(Dashboard(guard))
    return server, guard


def _write_state(guard: Guard) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"pid": os.getpid(), "port": guard.port, "url": guard.url()}, out)
    os.replace(temp, path)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(server: WSGIServer, guard: Guard) -> None:
    """Serve until SIGTERM or Ctrl-C; the state file says where meanwhile."""
    _write_state(guard)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        with contextlib.suppress(OSError, ValueError, KeyError):
            if json.loads(state_file().read_text())["pid"] == os.getpid():
                state_file().unlink()
                launcher_file().unlink(missing_ok=True)


def run_detached(args: list[str]) -> None:
    """The detached dashboard's entry point: `--port N`."""
    port = int(args[args.index("--port") + 1]) if "--port" in args else 0
    server, guard = bind(port, os.environ.pop(TOKEN_ENV, None))
    serve(server, guard)


def detach(port: int) -> Running:
    """Start the dashboard in the background; where it runs once it answers."""
    token = secrets.token_urlsafe(32)
    child = detach_mod.spawn("claude_cage.dashboard", ["--port", str(port)], {TOKEN_ENV: token})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = running()
        if found is not None and found.pid == child.pid:
            return found
        if child.poll() is not None:
            break
        time.sleep(0.05)
    raise CageError(
        "the dashboard did not start",
        f"run 'claude-cage ui{f' --port {port}' if port else ''}' to see why",
    )


def stop() -> Running | None:
    """End the running dashboard; the one it was, or None."""
    found = running()
    if found is None:
        return None
    os.kill(found.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and running() is not None:
        time.sleep(0.05)
    return found
