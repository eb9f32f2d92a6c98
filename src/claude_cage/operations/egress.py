"""Egress operations: change a session's allowlist live, read its audit log.

The audit log is the companion's own output (audit.py): reading it starts no process
in the companion, works for a stopped one, and costs the same however the session
floods its proxy, because the engine caps it at `egress_log_size`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from claude_cage import audit, egress, metadata, names, presets, validators
from claude_cage import config as config_mod
from claude_cage.errors import BadInput, EngineError, SessionNotFound
from claude_cage.kinds import Network
from claude_cage.netpolicy import rules
from claude_cage.operations import history, operation
from claude_cage.operations.companion import push_policy
from claude_cage.operations.owned import inspect_ours
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.cancel import Cancel
    from claude_cage.context import Context

RECENT_REFUSALS = 1000  # how far back `allow` looks for a host refused on its port


@dataclass
class AllowResult:
    name: str
    allowed_hosts: list[str]
    allowed_ports: list[int]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    added_ports: list[int] = field(default_factory=list)
    removed_ports: list[int] = field(default_factory=list)
    live: bool = False  # applied to a running proxy (else at the next start)
    warnings: list[str] = field(default_factory=list)
    allowed_presets: list[str] = field(default_factory=list)
    added_presets: list[str] = field(default_factory=list)
    removed_presets: list[str] = field(default_factory=list)

    def event_details(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "added_ports": self.added_ports,
            "removed_ports": self.removed_ports,
            "added_presets": self.added_presets,
            "removed_presets": self.removed_presets,
            "live": self.live,
        }


@dataclass
class EgressLog:
    name: str
    requests: list[egress.Request]
    more: bool = False  # the log holds earlier lines than these (`tail` left them)
    dropped: int = 0  # lines rotated out of the log before the audit filed them
    since: str = "0"  # where `follow_log` goes on from: the last line's time ...
    seen: list[int] = field(default_factory=list)  # ... and squid's numbers at that time
    destroyed: str | None = None  # read from the archive of a destroyed session: when


def filtered_session(
    store: metadata.SessionStore, name: str, lacks: str = "allowlist"
) -> SessionRecord:
    """A session's record, refused unless it is filtered: only those have an egress
    proxy (`lacks` names what another network has none of)."""
    meta = store.load(name)
    if meta is None:
        raise SessionNotFound(name)
    if meta.network != Network.FILTERED:
        raise BadInput(
            f"session {name} uses --network {meta.network}, which has no {lacks}",
            "only filtered sessions have an egress proxy",
        )
    return meta


def _session_ports(ctx: Context, meta: SessionRecord) -> list[int]:
    return [int(p) for p in meta.allowed_ports or ctx.config["allowed_ports"]]


def _check_ports(ports: list[int]) -> list[int]:
    for port in ports:
        if not 1 <= port <= 65535:
            raise BadInput(f"--port {port} is not a port", "use a number from 1 to 65535")
    return ports


@operation("allow")
def allow(
    ctx: Context,
    name: str,
    hosts: list[str],
    remove: bool = False,
    ports: list[int] | None = None,
    preset_names: list[str] | None = None,
) -> AllowResult:
    """Change the session layer, live: the allowlist's `hosts` and ports, and the
    registry presets `preset_names` (GET and HEAD rules: netpolicy.rules.session_layer).
    Removing a preset also removes its hosts from the allowlist, where a session started
    before presets were rules recorded them."""
    try:
        checked = [config_mod.validate_host(h) for h in hosts]
    except ValueError as exc:
        raise BadInput(str(exc), config_mod.HOST_HINT) from None
    try:
        wanted = list(dict.fromkeys(presets.check(p) for p in preset_names or []))
    except ValueError as exc:
        raise BadInput(
            f"--preset: {exc}", f"e.g. claude-cage allow {name} --preset python"
        ) from None
    if remove:
        checked += [h for h in presets.hosts(wanted) if h not in checked]
    port_changes = _check_ports(list(ports or []))
    engine = ctx.engine_for(name)
    store = ctx.store
    with store.lock(name):
        meta = filtered_session(store, name)
        current = list(meta.allowed_hosts)
        current_ports = _session_ports(ctx, meta)
        current_presets = list(meta.allowed_presets)
        if remove:
            presets_changed = [p for p in wanted if p in current_presets]
            new_presets = [p for p in current_presets if p not in wanted]
        else:
            presets_changed = [p for p in wanted if p not in current_presets]
            new_presets = current_presets + presets_changed
        if remove:
            changed = [h for h in checked if h in current]
            new = [h for h in current if h not in checked]
            ports_changed = [p for p in port_changes if p in current_ports]
            new_ports = [p for p in current_ports if p not in port_changes]
        else:
            changed = [h for h in checked if h not in current]
            new = current + changed
            ports_changed = [p for p in dict.fromkeys(port_changes) if p not in current_ports]
            new_ports = current_ports + ports_changed
        companion = names.companion_name(name)
        info = inspect_ours(engine, companion)
        live = bool(info and info.running)
        if live and presets_changed:  # the presets are squid rules of the policy files
            # start-up: the policy's YAML reader, only when the presets change
            from claude_cage.netpolicy import layers as policy_layers

            kept, learn = policy_layers.saved(store.dir(name))
            layers = (*kept, rules.session_layer(new, new_presets))
            push_policy(engine, name, layers, tuple(new_ports), learn)
        if live and (hosts or ports or changed):
            code, output = engine.exec_run(companion, egress.companion_allow_args(new, new_ports))
            if code != 0:
                raise EngineError(
                    f"the proxy of {name} refused the new allowlist: "
                    f"{output.decode(errors='replace').strip()[-200:]}"
                )
        store.save(
            dataclasses.replace(
                meta,
                allowed_hosts=tuple(new),
                allowed_ports=tuple(new_ports),
                allowed_presets=tuple(new_presets),
            )
        )
    warnings = [] if remove else _port_warnings(ctx, name, checked, new_ports)
    return AllowResult(
        name,
        new,
        new_ports,
        added=[] if remove else changed,
        removed=changed if remove else [],
        added_ports=[] if remove else ports_changed,
        removed_ports=ports_changed if remove else [],
        live=live,
        warnings=warnings,
        allowed_presets=new_presets,
        added_presets=[] if remove else presets_changed,
        removed_presets=presets_changed if remove else [],
    )


def _port_warnings(ctx: Context, name: str, hosts: list[str], ports: list[int]) -> list[str]:
    """A host the session was refused on a port that stays closed: allowing the host
    alone will not let those requests through. The session chose that host (squid logs
    `a;reboot;b.example.com` as it was asked), and the warning is a command to copy: only
    a name `allow` takes is named, so no shell text of the session's reaches it."""
    wanted: dict[str, set[int]] = {}
    for event in ctx.events.query(session=name, type="egress", limit=RECENT_REFUSALS):
        value = event["value"]
        host, port = value.get("host"), value.get("port")
        if not _plain_name(str(host)):
            continue
        if isinstance(port, int) and port not in ports and _covers(hosts, str(host)):
            wanted.setdefault(str(host), set()).add(port)
    allowed = " ".join(str(p) for p in ports)
    return [
        f"{host} was refused on port {', '.join(map(str, sorted(refused)))}, which this "
        f"session does not allow (allowed ports: {allowed}); add it with "
        f"'claude-cage allow {name} {host} --port {min(refused)}'"
        for host, refused in sorted(wanted.items())
    ]


def _plain_name(host: str) -> bool:
    """One host name that `allow` takes as it is (no pattern, nothing to quote)."""
    if host.startswith("*"):
        return False
    try:
        return validators.validate_host(host) == host
    except ValueError:
        return False


def _covers(patterns: list[str], host: str) -> bool:
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


def read_log(ctx: Context, name: str, tail: int | None = None) -> EgressLog:
    """The requests the session made through its current companion (running or
    stopped): the last `tail` lines of its log, or all it holds."""
    engine = ctx.engine_for(name)
    store = ctx.store
    meta = store.load(name)
    if meta is None:
        return _archived_log(name, tail)
    if meta.network != Network.FILTERED:
        return EgressLog(name, [])
    audit.ensure_follower()
    info = inspect_ours(engine, names.companion_name(name))
    if info is None:
        return EgressLog(name, [])
    last = "0"
    lines: list[str] = []
    seen: list[int] = []
    for stamp, raw in engine.output_lines(info.id, tail=tail):
        text = raw.decode(errors="replace")
        seq = egress.line_seq(text)
        if seq is None:
            continue
        seen = [*seen, seq] if stamp == last else [seq]
        last = stamp
        lines.append(text)
    here = audit.place(ctx.events, name)
    numbered = audit.session_numbering(meta)
    return EgressLog(
        name,
        [numbered(r) for r in egress.parse_log("\n".join(lines))],
        more=tail is not None and len(lines) >= tail,
        dropped=here.dropped if here.container == info.id else 0,
        since=audit.engine_seconds(last) if lines else "0",
        seen=seen,
    )


def _archived_log(name: str, tail: int | None) -> EgressLog:
    """A destroyed session's log, from its newest archive."""
    archived = history.latest(name)
    if archived is None:
        raise SessionNotFound(name)
    lines = history.read(archived, frozenset({"egress"})).egress.splitlines()
    shown = lines if tail is None else lines[max(0, len(lines) - tail) :]
    return EgressLog(
        name,
        egress.parse_log("\n".join(shown)),
        more=len(shown) < len(lines),
        destroyed=archived.as_dict()["destroyed"],
    )


def follow_log(
    ctx: Context,
    name: str,
    since: str = "0",
    seen: list[int] | None = None,
    stop: Cancel | None = None,
) -> Iterator[egress.Request]:
    """Requests as they happen from `since` (read_log's last line, whose squid numbers
    `seen` are not shown again), until the companion stops or `stop` is set. Nothing
    runs in the companion for it."""
    engine = ctx.engine_for(name)
    meta = ctx.store.load(name)
    if meta is None:
        raise SessionNotFound(name)
    info = inspect_ours(engine, names.companion_name(name))
    if info is None:
        return
    numbered = audit.session_numbering(meta)
    for stamp, raw in engine.output_lines(info.id, since, follow=True, stop=stop):
        request = egress.parse_line(raw.decode(errors="replace"))
        if request is None:
            continue
        if audit.engine_seconds(stamp) == since and request.seq in (seen or []):
            continue
        yield numbered(request)
