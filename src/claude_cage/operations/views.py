"""Read-only views: list and status. The engine is the truth for runtime state;
metadata records intent and history, and follows the engine when they disagree.

`list` makes one engine call whatever the number of sessions; `status` a fixed few.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from claude_cage import labels, metadata, names, record
from claude_cage.engine import fleet
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError, OutOfMemory, SessionNotFound
from claude_cage.kinds import Credential, Mode, Network, Status
from claude_cage.operations.adoption import SESSION, ownership
from claude_cage.operations.owned import inspect_ours, owned_containers
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context
    from claude_cage.engine.answers import Container, Stats

CREDENTIALS = {
    Credential.API_KEY_PROXY: "api-key via proxy (the key never enters the session)",
    Credential.CLAUDE_TOKEN_PROXY: (
        "subscription token via proxy (the token never enters the session)"
    ),
    Credential.API_KEY_FILE: "api-key file (read-only, inside the session)",
    Credential.OAUTH: "OAuth/login (kept in the session's data volume)",
    Credential.NONE: "none (log in inside with /login)",
}


def _engine_status(container: Container | None) -> Status:
    if container is None:
        return Status.REMOVED
    running = container.state.status in ("running", "restarting")
    return Status.RUNNING if running else Status.STOPPED


def _url(session: SessionRecord) -> str | None:
    if session.mode != Mode.DESKTOP or not session.desktop_port:
        return None
    from claude_cage.operations import desktop  # start-up time: `list` of cli sessions

    return desktop.url_for(session.desktop_bind or "127.0.0.1", session.desktop_port)


def view(
    name: str,
    meta: SessionRecord | dict[str, Any] | None,
    container: Container | None,
    damaged: str | None = None,
) -> dict[str, Any]:
    """One session as `list --json` shows it (with no usable record, from the labels of
    its container). `damaged`: why its metadata is unusable."""
    if isinstance(meta, dict):
        meta = record.from_fields({**meta, "name": name})
    found = container.labels if container else {}
    status = _engine_status(container)
    if meta is None:
        return {
            "name": name,
            "mode": found.get(labels.MODE, Mode.CLI.value),
            "status": status.value,
            "network": found.get(labels.NETWORK, ""),
            "runtime": found.get(labels.RUNTIME, ""),
            "container": names.container_name(name),
            "created": "",
            "image": "",
            "orphan": ownership(False, status == Status.RUNNING) != SESSION,
            "damaged": damaged,
            "ephemeral": False,
            "ports": [],
            "desktop_port": None,
            "url": None,
            "repo": None,
            "branch": None,
            "base": None,
            "engine": fleet.LOCAL,
            "project": None,
        }
    return {
        "name": name,
        "mode": meta.mode.value,
        "status": status.value,
        "network": meta.network.value,
        "runtime": meta.runtime.value,
        "container": meta.container or names.container_name(name),
        "created": meta.created,
        "image": meta.image,
        "orphan": ownership(True, status == Status.RUNNING) != SESSION,
        "damaged": damaged,
        "ephemeral": meta.ephemeral,
        "ports": [list(p) for p in meta.ports],
        "desktop_port": meta.desktop_port,
        "url": _url(meta),
        "repo": meta.repo or None,  # clone mode: the user's repository,
        "branch": meta.branch or None,  # the session's branch in its copy,
        "base": meta.base or None,  # and the commit the copy started from
        "engine": meta.engine or fleet.LOCAL,  # the Docker engine it lives on
        # the project on the host: the cloned repository, else the first mount
        "project": meta.repo or (meta.mounts[0].source if meta.mounts else None),
    }


def _unfinished(store: metadata.SessionStore, session: SessionRecord, status: str) -> str:
    """A clone start that did not finish is no running session: "starting" while its
    start is at work (it holds the lock), "failed" once that process is gone."""
    if not session.clone_pending:
        return status
    return "starting" if store.busy(session.name) else "failed"


def _follow(store: metadata.SessionStore, session: SessionRecord, status: Status) -> None:
    """Bring the metadata in line with the engine; skip if a writer holds the lock.
    A new session's "starting" stays until it runs (a clone start's until its clone
    has arrived): gc tells a failed start by it."""
    if session.status == Status.STARTING and (status != Status.RUNNING or session.clone_pending):
        return
    if session.status != status:
        store.update(session.name, blocking=False, status=status)


@dataclass
class Survey:
    """What `list` shows: every session, and every engine that was asked."""

    sessions: list[dict[str, Any]] = field(default_factory=list)
    engines: list[dict[str, Any]] = field(default_factory=list)  # name, reachable, error


def survey(ctx: Context, only: str | None = None) -> Survey:
    """Every session of this data directory, on `engine` alone or on every watched one.

    Over several engines, the configured ones are asked before the records are read, so
    a slow engine's answer (SSH) is under way while the rest of the work is done.
    """
    store = ctx.store
    if only is not None:  # one engine, with the same bound `list` gives each
        timeout = float(ctx.config["engine_timeout"])
        engine = ctx.engine_named(only, timeout, "engine_timeout")
        asked = [engine.endpoint.name]
        answers: dict[str, Any] = {engine.endpoint.name: owned_containers(engine)}
        metas, damaged = store.load_scan()
    else:
        cfg = ctx.config  # a bad key keeps its default here; `start` reports it
        asking = fleet.Asking(owned_containers, float(cfg["engine_timeout"]))
        if fleet.configured(cfg["engines"]) != [""]:
            for name in fleet.configured(cfg["engines"]):
                asking.ask(name)
        metas, damaged = store.load_scan()  # a damaged record hides no other
        asked = fleet.watched(cfg["engines"], [m.engine for m in metas.values() if m.engine])
        if asked == [""]:  # the local engine alone: its errors are the command's
            local = ctx.engine_named("", float(cfg["engine_timeout"]), "engine_timeout")
            answers = {"": owned_containers(local)}
        else:
            for name in asked:
                asking.ask(name)
            answers = asking.results()
    result = Survey()
    for where in asked:
        answer = answers[where]
        reachable = not isinstance(answer, CageError)
        result.engines.append(
            {
                "name": where or fleet.LOCAL,
                "reachable": reachable,
                "error": None if reachable else answer.message,
            }
        )
        containers = {c.labels.get(labels.SESSION): c for c in answer} if reachable else {}
        here = {n: m for n, m in metas.items() if m.engine == where}
        broken = set(damaged) if where == "" else set()  # its engine is unknown: local
        for name in sorted(set(here) | broken | {n for n in containers if n} - set(metas)):
            why = damaged[name].reason if name in damaged else None
            entry = view(name, here.get(name), containers.get(name), why)
            entry["engine"] = where or fleet.LOCAL
            if not reachable:
                entry["status"] = "unreachable"  # not "removed": nobody could look
            elif name in here:
                _follow(store, here[name], Status(entry["status"]))
                entry["status"] = _unfinished(store, here[name], entry["status"])
            result.sessions.append(entry)
    result.sessions.sort(key=lambda s: (s["name"], s["engine"]))
    return result


def list_sessions(ctx: Context) -> list[dict[str, Any]]:
    return survey(ctx).sessions


def most_recent_running(ctx: Context) -> str:
    running = [s for s in list_sessions(ctx) if s["status"] == "running"]
    if not running:
        raise BadInput("no session is running", "start one with 'claude-cage start'")
    return str(max(running, key=lambda s: s["created"])["name"])


def _usage(engine: EngineAPI, info: Container) -> tuple[dict[str, Any], str]:
    """Uptime and resource use, read from outside the session, so they stay right when
    it is full: from its cgroup on this host (cgroups.py), else from the engine's
    one-shot stats (which wait for the engine's one-second sampling tick). Also the
    kernel's count of OOM kills in it ("" when unknown). The session has no network of
    its own; its traffic (through the companion) is left to `claude-cage egress`."""
    import time  # start-up time: `list` needs none of this

    from claude_cage import cgroups, resources
    from claude_cage.errors import CageError

    now = time.time()
    started = resources.parse_time(info.state.started_at)
    facts = cgroups.read(info)
    stats: Stats | None
    if facts is not None:
        stats = resources.stats_from_cgroup(facts, info.settings)
    else:
        try:
            stats = engine.stats(info.name)
        except CageError:
            stats = None
    if stats is not None and stats.cpu_ns is None:  # a damaged answer: no figures
        stats = None
    usage = {
        "uptime_seconds": round(now - started) if started else None,
        "resources": None if stats is None else resources.usage(stats, started, now),
    }
    return usage, (facts or {}).get("oom_kill", "")


def usage(ctx: Context, name: str) -> dict[str, Any] | None:
    """A running session's uptime and resource use (as `status` shows them); None when
    it does not run."""
    engine = ctx.engine_for(name)
    info = inspect_ours(engine, names.container_name(name))
    if info is None or not info.running:
        return None
    return _usage(engine, info)[0]


def _workspace_checks(entry: dict[str, Any], info: Container, meta: SessionRecord | None) -> None:
    """The read-write mounts are writable by the session's uid; the git protections."""
    from claude_cage import bindmounts  # start-up time: `list` never checks mounts

    entry["protections"] = bindmounts.protected_paths(info.mounts)
    if meta is None:
        return
    user, bad = bindmounts.unwritable(meta)
    if any(not m.read_only for m in meta.mounts):
        detail = f"not writable by {user}: {', '.join(bad)}" if bad else f"writable by {user}"
        entry["sandbox"]["checks"].append({"check": "mounts writable", "ok": not bad,
                                           "detail": detail})  # fmt: skip
        entry["sandbox"]["ok"] = entry["sandbox"]["ok"] and not bad


def _companion(
    name: str,
    meta: SessionRecord | None,
    info: Container | None,
    companion: Container | None,
) -> dict[str, Any] | None:
    """The companion's state, and for a running session what is wrong with it."""
    # start-up: the companion's checks bring PyYAML and the policy; only `status` needs them
    from claude_cage.operations import companion as companion_ops

    wanted = meta is not None and bool(meta.companion)
    if companion is None and not wanted:
        return None
    found: dict[str, Any] = {
        "container": names.companion_name(name),
        "status": _engine_status(companion),
    }
    if info is not None and info.running and wanted:
        pids = companion_ops.pids_in_use(companion) if companion else None
        found["problem"] = companion_ops.problem(name, companion, pids)
    return found


def _egress_counts(ctx: Context, name: str) -> dict[str, int]:
    """What the audit counted in the current companion's log (never reads the log
    itself, so it costs the same however much the session sent)."""
    # start-up: the event log (SQLite) and its follower; only `status` counts egress
    from claude_cage import audit

    audit.ensure_follower()
    here = audit.place(ctx.events, name)
    return {
        "requests": here.requests,
        "blocked": here.refused,
        "failed": here.failed,
        "dropped": here.dropped,
    }


def settings_of(meta: SessionRecord) -> dict[str, Any]:
    """What the session was started with (a restart keeps it), for `status`."""
    keys = ("cpus", "memory", "pids", "ports", "env_keys", "ephemeral", "persist", *record.RECORDED)
    values = {key: record.encode(getattr(meta, key)) for key in keys}
    return {key: value for key, value in values.items() if value not in (None, "", [])}


def status(ctx: Context, name: str, live: bool = True) -> dict[str, Any]:
    from claude_cage import sandbox  # start-up time: `list` never verifies

    engine = ctx.engine_for(name)
    store = ctx.store
    damaged = None
    try:
        meta = store.load(name)
    except metadata.DamagedMetadata as exc:  # show what the engine knows, and why
        meta, damaged = None, exc
    info = inspect_ours(engine, names.container_name(name))
    if meta is None and info is None:
        if damaged is not None:
            raise damaged
        raise SessionNotFound(name)
    entry = view(name, meta, info, damaged.reason if damaged else None)
    if damaged is not None:
        entry["hint"] = damaged.hint
    if meta is not None:
        _follow(store, meta, Status(entry["status"]))
        entry["status"] = _unfinished(store, meta, entry["status"])
        entry["allowed_hosts"] = list(meta.allowed_hosts)
        entry["allowed_presets"] = list(meta.allowed_presets)
        if meta.network == Network.FILTERED:
            # start-up: the policy's reader (PyYAML) only for `status`, never for `list`
            from claude_cage.netpolicy import layers as policy_layers

            try:
                entry["learn"] = policy_layers.saved(store.dir(name))[1]
            except CageError as exc:  # a damaged policy.json: status still shows the rest
                entry["policy_problem"] = exc.message
        if meta.network == Network.FILTERED and info is not None:
            entry["egress"] = _egress_counts(ctx, name)
        entry["credential"] = meta.credential.value
        entry["mounts"] = [m.to_text() for m in meta.mounts]
        entry["settings"] = settings_of(meta)
        entry["devcontainer"] = meta.devcontainer  # the host's file its first start read
    companion = inspect_ours(engine, names.companion_name(name)) if info else None
    entry["companion"] = _companion(name, meta, info, companion)
    if info is not None:
        state = info.state
        entry["started_at"] = state.started_at
        entry["restart_count"] = info.restart_count
        entry["oom_killed"] = state.oom_killed
        entry["exit_code"] = state.exit_code
        entry["health"] = state.health
        entry["oom_hint"] = OutOfMemory.hint if entry["oom_killed"] else None
        running = live and state.running
        oom_kills = ""
        if running:
            usage, oom_kills = _usage(engine, info)
            entry.update(usage)
        model = mcp = None
        if running:  # in the background: it may wait for a model that does not answer
            # start-up: a thread pool, the model probe and the user's setup, for a
            # running session's status
            from concurrent.futures import ThreadPoolExecutor

            from claude_cage.operations import model as model_check
            from claude_cage.operations import usersetup

            background = ThreadPoolExecutor(2)  # the real endpoint: no key proxy upstream
            model = background.submit(model_check.check, engine, info.name, None)
            if meta is not None and meta.user_config:  # the user's MCP servers
                mcp = background.submit(usersetup.status_lines, engine, info.name)
            background.shutdown(wait=False)
        inside = sandbox.probe_inside(engine, info) if running else None
        if mcp is not None:
            entry["mcp_missing"] = mcp.result()
        entry["model"] = model.result().as_dict() if model is not None else None
        if oom_kills.isdigit() and int(oom_kills) > 0:
            # A process in it was OOM-killed; the engine sets OOMKilled only once it exits.
            entry["oom_killed"], entry["oom_hint"] = True, OutOfMemory.hint
        if entry.get("credential") == Credential.NONE and inside and inside.get("login") == "yes":
            entry["credential"] = Credential.OAUTH.value
        network = meta.network if meta is not None else None
        runtime = meta.runtime if meta is not None else None
        entry["sandbox"] = sandbox.verify(info, network, inside, companion, runtime)
        _workspace_checks(entry, info, meta)
        if inside is not None:  # each bridge, used from inside the session
            from claude_cage.operations import bridges  # start-up time: `list` needs none

            checks = bridges.as_checks(name, bridges.check(engine, info))
            entry["sandbox"]["checks"] += checks
            entry["sandbox"]["ok"] = entry["sandbox"]["ok"] and all(c["ok"] for c in checks)
    else:
        entry["sandbox"] = None
    return entry
