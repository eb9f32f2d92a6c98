"""Desktop mode: the noVNC port, the session's two secrets, and readiness.

A desktop session's companion serves noVNC (websockify) and publishes it on
`desktop_bind` (127.0.0.1 by default) at `desktop_port` (6080), or at the next free
port. websockify reaches the session's x11vnc through a unix socket on the shared
socket volume; nothing else leads into the session.

Two random secrets guard the way in. Both are kept 0600 in the session's data
directory and handed over on `docker exec` stdin at every start, so they never
appear in argv, the environment, `docker inspect`, metadata or logs:

- The websocket token (128 bits). websockify opens a connection to the VNC socket
  only for a websocket whose URL carries it (`/websockify?token=...`). Without it,
  nothing reaches x11vnc at all: not a web page the user happens to visit (browsers
  let any page open a websocket to 127.0.0.1), nor another local user.
- The VNC password. VNC authentication (RFB security type 2) uses only the first
  8 characters of a password as a DES key, so the password is 8 characters (48
  bits), and the exchange is a challenge-response that can be attacked offline by
  anyone who records it. noVNC's HTTP and websocket traffic is not encrypted
  either. That is why noVNC is published on loopback only by default: a
  non-loopback `desktop_bind` sends the desktop and both secrets in clear over
  that network, and `start` warns about it.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from claude_cage import config as config_mod
from claude_cage import labels, metadata, names
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError, EngineError, SessionNotFound
from claude_cage.kinds import Mode
from claude_cage.operations.owned import running_container
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context

PASSWORD_SECRET = "vnc_password"
TOKEN_SECRET = "vnc_token"
LAUNCHER = "open.html"
PASSWORD_LENGTH = 8  # VNC authentication ignores everything after the 8th character
PORT_RANGE = 100  # ports tried from desktop_port upwards
READY_TIMEOUT = 30.0


@dataclass
class DesktopPlan:
    """What a desktop session's start needs besides the session request."""

    bind: str
    port: int
    password: str
    token: str
    warnings: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return url_for(self.bind, self.port)


# --- addresses and URLs ---------------------------------------------------------------


def is_loopback(bind: str) -> bool:
    return ipaddress.ip_address(bind).is_loopback


def _host(bind: str, for_client: bool = False) -> str:
    """The host part of a URL for a bind address (a wildcard bind is reached locally)."""
    address = ipaddress.ip_address(bind)
    if for_client and address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    return f"[{address}]" if address.version == 6 else str(address)


def url_for(bind: str, port: int) -> str:
    """The noVNC page, without any secret, as a browser on this machine opens it (a
    wildcard bind is reached on loopback: browsers refuse 0.0.0.0)."""
    return f"http://{_host(bind, for_client=True)}:{port}/vnc.html"


def connect_url(bind: str, port: int, token: str, password: str | None = None) -> str:
    """The noVNC page with its settings in the URL fragment.

    A fragment never leaves the browser: not in the request line, not in a log, not
    in a Referer. noVNC 1.3 reads its settings from the fragment before the query.
    """
    params = {"autoconnect": "1", "resize": "scale", "path": f"websockify?token={token}"}
    if password is not None:
        params["password"] = password
    return url_for(bind, port) + "#" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


# --- ports ----------------------------------------------------------------------------


def _bindable(bind: str, port: int) -> bool:
    """Nothing listens there. (SO_REUSEADDR: closed connections in TIME_WAIT do not
    count, and the engine's own listener would not mind them either.)"""
    family = socket.AF_INET6 if ipaddress.ip_address(bind).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError:
            return False
    return True


def _taken_ports(engine: EngineAPI, store: metadata.SessionStore, name: str) -> set[int]:
    """Ports recorded by this data directory's other sessions (running or stopped), and
    ports published by any claude-cage container of another session."""
    taken = set()
    for other, session in store.load_all().items():
        if other != name and session.desktop_port is not None:
            taken.add(session.desktop_port)
    for container in engine.list_containers():
        if labels.session_of(container.labels) == name:
            continue
        taken |= set(container.public_ports)
    return taken


def pick_port(
    engine: EngineAPI,
    cfg: config_mod.Config,
    store: metadata.SessionStore,
    name: str,
    recorded: int | None = None,
) -> int:
    """The recorded port when it is still free, else desktop_port or the next free one."""
    bind, first = cfg["desktop_bind"], int(cfg["desktop_port"])
    taken = _taken_ports(engine, store, name)
    candidates = [recorded] if recorded else []
    candidates += [p for p in range(first, min(first + PORT_RANGE, 65536)) if p != recorded]
    for port in candidates:
        if port not in taken and _bindable(bind, port):
            return port
    raise CageError(
        f"no free port for noVNC on {bind} in {first}-{first + PORT_RANGE - 1}",
        "stop or destroy a desktop session, or set desktop_port in the config",
    )


# --- start ----------------------------------------------------------------------------


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_LENGTH)[:PASSWORD_LENGTH]


def prepare(
    engine: EngineAPI,
    cfg: config_mod.Config,
    store: metadata.SessionStore,
    name: str,
    recorded_port: int | None,
) -> DesktopPlan:
    """Pick the port and make the secrets, new at every start: a tab left open on a
    stopped session's desktop holds secrets (in its URL and its page's local storage)
    that a local user who takes over the old port could read, and they then open
    nothing. Nothing is stored yet."""
    bind = cfg["desktop_bind"]
    plan = DesktopPlan(
        bind=bind,
        port=pick_port(engine, cfg, store, name, recorded_port),
        password=new_password(),
        token=secrets.token_urlsafe(16),
    )
    if not is_loopback(bind):
        plan.warnings.append(
            f"desktop_bind {bind}: noVNC is reachable beyond this machine, unencrypted; "
            "VNC passwords are only 8 characters. Prefer 127.0.0.1 and an SSH tunnel"
        )
    if recorded_port and plan.port != recorded_port:
        plan.warnings.append(f"port {recorded_port} was taken; noVNC moved to {plan.port}")
    return plan


def _hand_over(engine: EngineAPI, container: str, cmd: list[str], secret: str, what: str) -> None:
    code, _output = engine.exec_run(container, cmd, stdin=(secret + "\n").encode())
    if code != 0:
        raise EngineError(f"could not hand the {what} to {container} (exit {code})")


def _novnc_answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def finish(engine: EngineAPI, store: metadata.SessionStore, name: str, plan: DesktopPlan) -> None:
    """Hand the secrets over, wait until the desktop and noVNC answer, keep the secrets."""
    session, companion = names.container_name(name), names.companion_name(name)
    _hand_over(engine, companion, ["companion-entrypoint", "set-vnc-token"], plan.token, "token")
    _hand_over(engine, session, ["desktop-session", "set-password"], plan.password, "VNC password")
    code, output = engine.exec_run(session, ["desktop-session", "wait-ready"])
    if code != 0:
        # No `logs NAME` in the hint: a new session that fails here is removed again.
        said = output.decode(errors="replace").strip().splitlines()
        raise EngineError(
            f"the desktop did not start: {said[-1] if said else f'exit {code}'}",
            "rebuild the images if they are older than claude-cage "
            "('claude-cage build all'), then start it again",
        )
    page = f"http://{_host(plan.bind, for_client=True)}:{plan.port}/vnc.html"
    deadline = time.monotonic() + READY_TIMEOUT
    while not _novnc_answers(page):
        if time.monotonic() > deadline:
            raise EngineError(
                f"noVNC did not answer on {page} within {READY_TIMEOUT:g} s",
                f"see 'docker logs {companion}'",
            )
        time.sleep(0.1)
    store.write_secret(name, PASSWORD_SECRET, plan.password)
    store.write_secret(name, TOKEN_SECRET, plan.token)


# --- open and show --------------------------------------------------------------------


@dataclass
class OpenInfo:
    name: str
    url: str  # no secret in it
    token_url: str  # the token, not the password
    launcher: Path  # a 0600 page that opens the desktop, password included


def _desktop_meta(name: str, store: metadata.SessionStore) -> SessionRecord:
    meta = store.load(name)
    if meta is None:
        raise SessionNotFound(name)
    if meta.mode != Mode.DESKTOP or not meta.desktop_port:
        raise BadInput(
            f"session {name} is not a desktop session",
            "start one with 'claude-cage start --mode desktop'",
        )
    return meta


def credentials(ctx: Context, name: str) -> dict[str, str]:
    """The session's VNC password and websocket token, for scripts that ask."""
    store = ctx.store
    _desktop_meta(name, store)
    values = {
        "password": store.read_secret(name, PASSWORD_SECRET),
        "token": store.read_secret(name, TOKEN_SECRET),
    }
    return {k: v.strip() for k, v in values.items() if v}


def session_url(ctx: Context, name: str) -> str:
    """The noVNC page of desktop session `name`, logged in: at its own bind and port,
    with both secrets in the fragment."""
    bind, port, found = _where(ctx, name)
    return connect_url(bind, port, found["token"], found["password"])


def _where(ctx: Context, name: str) -> tuple[str, int, dict[str, str]]:
    """A desktop session's bind address, port and secrets."""
    meta = _desktop_meta(name, ctx.store)
    assert meta.desktop_port is not None  # _desktop_meta checked it
    found = credentials(ctx, name)
    if len(found) < 2:
        raise CageError(
            f"the desktop secrets of {name} are missing",
            f"restart it: claude-cage stop {name} && claude-cage start --name {name}",
        )
    return meta.desktop_bind or "127.0.0.1", meta.desktop_port, found


def open_info(ctx: Context, name: str) -> OpenInfo:
    """Write the launcher page for a running desktop session and say where it is."""
    store = ctx.store
    _desktop_meta(name, store)
    running_container(name, ctx.engine_for(name), store)
    bind, port, found = _where(ctx, name)
    target = connect_url(bind, port, found["token"], found["password"])
    page = (
        "<!doctype html>\n<meta charset='utf-8'>\n"
        f"<title>claude-cage {name}</title>\n"
        "<meta name='referrer' content='no-referrer'>\n"
        f"<script>location.replace({_js_string(target)});</script>\n"
    )
    launcher = store.write_secret(name, LAUNCHER, page)
    return OpenInfo(
        name=name,
        url=url_for(bind, port),
        token_url=connect_url(bind, port, found["token"]),
        launcher=launcher,
    )


def _js_string(text: str) -> str:
    return json.dumps(text).replace("<", "\\u003c")
