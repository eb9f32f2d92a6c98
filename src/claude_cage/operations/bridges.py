"""The bridges between a session and its companion, checked by using them, and repaired.

A bridge that an agent killed stays in the session's process table as `[socat]
<defunct>`, so looking for the process proves nothing. Each bridge is used instead,
from inside the session, in one exec:

* out bridges (the egress proxy, 127.0.0.1:3128): a request for
  `http://cage-bridge-check.invalid/` sent through the bridge must come back as an HTTP
  answer from squid at the companion's end (squid refuses that name at once, asks no
  DNS, and keeps it out of the audit, so a health check is not the agent's traffic);
* in bridges (`--port`): the unix socket the companion connects to must accept;
* desktop: x11vnc's unix socket must greet with `RFB`.

`repair()` starts a dead out/in bridge again inside the session, as the session's own
entrypoint would.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from claude_cage import names
from claude_cage.engine.answers import Container
from claude_cage.engine.api import EngineAPI
from claude_cage.operations import answer

SOCK_DIR = "/sock"
VNC_SOCKET = f"{SOCK_DIR}/in/vnc.sock"
PROBE_HOST = "cage-bridge-check.invalid"  # squid.conf: cage_probe
PROBE_TIME = 5  # seconds each bridge's probe may take (its `timeout 5`)


@dataclass(frozen=True)
class Bridge:
    kind: str  # proxy | api | port | desktop
    direction: str  # out | in | vnc
    port: int
    socket: str

    @property
    def label(self) -> str:
        return {"proxy": "egress proxy bridge", "api": "API proxy bridge"}.get(
            self.kind, "desktop bridge" if self.kind == "desktop" else f"port {self.port} bridge"
        )

    def probe(self) -> str:
        """Shell that prints `ok` when the bridge carries traffic."""
        if self.direction == "out":
            send = (
                f"printf 'GET http://{PROBE_HOST}/ HTTP/1.1\\r\\nHost: {PROBE_HOST}\\r\\n"
                "Connection: close\\r\\n\\r\\n' | "
                f"timeout 5 socat -t 3 - TCP:127.0.0.1:{self.port}"
            )
            return f'case "$({send} 2>/dev/null | head -c 5)" in HTTP/) echo ok;; esac'
        if self.direction == "in":
            return (
                f"timeout 5 socat -u /dev/null UNIX-CONNECT:{SOCK_DIR}/in/{self.socket} "
                "2>/dev/null && echo ok"
            )
        return (
            f'case "$(timeout 5 socat -u UNIX-CONNECT:{VNC_SOCKET} - 2>/dev/null | head -c 3)"'
            " in RFB) echo ok;; esac"
        )

    def restart(self) -> tuple[str, str] | None:
        """Shell that stops what is left of the bridge, and shell that starts it again
        (as cage-entrypoint does); None if it cannot be restarted from here."""
        if self.direction == "out":
            listen = f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr,nodelay"
            target = f"UNIX-CONNECT:{SOCK_DIR}/out/{self.socket}"
        elif self.direction == "in":
            listen = f"UNIX-LISTEN:{SOCK_DIR}/in/{self.socket},fork,unlink-early,mode=666"
            target = f"TCP:127.0.0.1:{self.port},nodelay"
        else:
            return None  # x11vnc restarts itself; if it does not, the session must restart
        # A half-dead listener (alive, not serving) would keep the port. The pattern's
        # first letter in brackets keeps pkill from matching its own shell; the start
        # runs in a second exec, whose command line would match.
        pattern = f"[{listen[0]}]{listen[1:].split(',')[0]},"
        return (
            f"pkill -f {shlex.quote(pattern)}",
            f"setsid socat {listen} {target} </dev/null >/dev/null 2>&1 &",
        )


def bridges_of(info: Container) -> list[Bridge]:
    """The session's bridges, from its container's CAGE_BRIDGES and mode."""
    env = info.env
    found = []
    for spec in env.get("CAGE_BRIDGES", "").split():
        direction, port, socket = [*spec.split(":", 2), "", ""][:3]
        if not port.isdigit():
            continue
        kind = {"proxy.sock": "proxy", "api.sock": "api"}.get(socket, "port")
        found.append(Bridge(kind, direction, int(port), socket))
    if env.get("CAGE_MODE") == "desktop":
        found.append(Bridge("desktop", "vnc", 0, "vnc.sock"))
    return found


def check(engine: EngineAPI, info: Container) -> dict[Bridge, bool]:
    """Use each bridge from inside the running session: bridge -> carries traffic."""
    found = bridges_of(info)
    if not found:
        return {}
    script = "; ".join(f"echo b{i}=$({b.probe()})" for i, b in enumerate(found))
    limit = answer.PROBE_TIME + PROBE_TIME * len(found)
    try:
        _code, output = answer.probe(engine, info.name, ["sh", "-c", script], limit=limit)
    except answer.NoAnswer:  # too much, or too slow: none is known to carry traffic
        return dict.fromkeys(found, False)
    answers = dict(
        line.partition("=")[::2] for line in output.decode(errors="replace").splitlines()
    )
    return {b: answers.get(f"b{i}", "").strip() == "ok" for i, b in enumerate(found)}


def fix_hint(name: str, bridge: Bridge) -> str:
    if bridge.direction == "vnc":
        return f"restart the session: claude-cage stop {name} && claude-cage start --name {name}"
    return f"repair it: claude-cage start --name {name}"


def as_checks(name: str, results: dict[Bridge, bool]) -> list[dict[str, Any]]:
    """The bridges as `status` sandbox checks; a dead one is a FAIL with its fix."""
    checks = []
    for bridge, ok in results.items():
        where = (
            f"127.0.0.1:{bridge.port} -> companion"
            if bridge.direction == "out"
            else "x11vnc socket"
            if bridge.direction == "vnc"
            else f"companion -> 127.0.0.1:{bridge.port}"
        )
        detail = f"{where}: carries traffic" if ok else f"{where}: dead; {fix_hint(name, bridge)}"
        checks.append({"check": bridge.label, "ok": ok, "detail": detail})
    return checks


def repair(engine: EngineAPI, name: str, info: Container) -> tuple[list[str], list[str]]:
    """Bring every dead bridge of a running session back: (repaired, still dead). The
    companion's end must run (see operations/companion.py)."""
    dead = [b for b, ok in check(engine, info).items() if not ok]
    steps = [step for step in (b.restart() for b in dead) if step]
    if steps:
        container = names.container_name(name)
        engine.exec_run(container, ["sh", "-c", "; ".join(kill for kill, _ in steps)])
        starts = "\n".join(begin for _, begin in steps)
        engine.exec_run(container, ["sh", "-c", starts + "\nsleep 0.2"])
    still = {b for b, ok in check(engine, info).items() if not ok}
    return [b.label for b in dead if b not in still], [b.label for b in still]
