"""Egress operations: change a session's allowlist live, read its audit log."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from claude_cage import config as config_mod
from claude_cage import egress, metadata, names
from claude_cage.engine import Engine
from claude_cage.errors import BadInput, CageError, EngineError, SessionNotFound
from claude_cage.kinds import Network
from claude_cage.operations import operation, record_event
from claude_cage.operations.objects import inspect_ours
from claude_cage.record import SessionRecord

LOG_PATH = "/sock/log/access.log"


@dataclass
class AllowResult:
    name: str
    allowed_hosts: list[str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    live: bool = False  # applied to a running proxy (else at the next start)

    def event_details(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed, "live": self.live}


def _filtered_session(store: metadata.SessionStore, name: str) -> SessionRecord:
    meta = store.load(name)
    if meta is None:
        raise SessionNotFound(name)
    if meta.network != Network.FILTERED:
        raise BadInput(
            f"session {name} uses --network {meta.network}, which has no allowlist",
            "only filtered sessions have an egress proxy",
        )
    return meta


@operation("allow")
def allow(
    name: str, hosts: list[str], remove: bool = False, engine: Engine | None = None
) -> AllowResult:
    try:
        checked = [config_mod.validate_host(h) for h in hosts]
    except ValueError as exc:
        raise BadInput(str(exc), "use a name like example.com or *.example.com") from None
    engine = engine or Engine()
    store = metadata.SessionStore()
    with store.lock(name):
        meta = _filtered_session(store, name)
        current = list(meta.allowed_hosts)
        if remove:
            changed = [h for h in checked if h in current]
            new = [h for h in current if h not in checked]
        else:
            changed = [h for h in checked if h not in current]
            new = current + changed
        companion = names.companion_name(name)
        info = inspect_ours(engine, companion)
        live = bool(info and info["State"]["Running"])
        if live:
            ports = list(meta.allowed_ports) or config_mod.load()["allowed_ports"]
            code, output = engine.exec_run(companion, egress.companion_allow_args(new, ports))
            if code != 0:
                raise EngineError(
                    f"the proxy of {name} refused the new allowlist: "
                    f"{output.decode(errors='replace').strip()[-200:]}"
                )
        store.save(dataclasses.replace(meta, allowed_hosts=tuple(new)))
    return AllowResult(name, new, [] if remove else changed, changed if remove else [], live)


def read_log(name: str, engine: Engine | None = None) -> list[egress.Request]:
    """Every request the session made through its proxy, running or stopped."""
    engine = engine or Engine()
    store = metadata.SessionStore()
    meta = store.load(name)
    if meta is None:
        raise SessionNotFound(name)
    if meta.network != Network.FILTERED:
        return []
    data = engine.get_file(names.companion_name(name), LOG_PATH)
    requests = egress.parse_log(data.decode(errors="replace")) if data else []
    _record_blocked(store, name, requests)
    return requests


def ingest_blocked(name: str, engine: Engine) -> None:
    """Best effort, before a stop or destroy: blocked attempts go to the event log."""
    with contextlib.suppress(CageError):
        read_log(name, engine)


def _record_blocked(
    store: metadata.SessionStore, name: str, requests: list[egress.Request]
) -> None:
    """Put blocked attempts not seen before into the event log (once each)."""
    with store.lock(name, blocking=False) as locked:
        meta = store.load(name) if locked else None
        if meta is None:
            return
        seen = meta.egress_seen
        if seen > len(requests):  # a new companion log: start over
            seen = 0
        for request in requests[seen:]:
            if not request.allowed:
                record_event(
                    "blocked",
                    name,
                    {
                        "status": "blocked",
                        "host": request.host,
                        "port": request.port,
                        "time": request.time,
                    },
                    type_="egress",
                )
        if len(requests) != seen:
            store.save(dataclasses.replace(meta, egress_seen=len(requests)))


def follow_log(name: str, engine: Engine | None = None) -> Iterator[egress.Request]:
    """New requests as they happen (the session must be running).

    Blocked ones reach the event log through `read_log`, which keeps the offset.
    """
    engine = engine or Engine()
    if metadata.SessionStore().load(name) is None:
        raise SessionNotFound(name)
    companion = names.companion_name(name)
    buffer = b""
    for item in engine.exec_stream(companion, ["tail", "-n", "0", "-F", LOG_PATH]):
        if isinstance(item, int):
            return
        buffer += item[0] or b""
        *lines, buffer = buffer.split(b"\n")
        yield from egress.parse_log(b"\n".join(lines).decode(errors="replace"))
