"""Read-only views: list and status. The engine is the truth for runtime state;
metadata records intent and history, and follows the engine when they disagree.

`list` makes one engine call whatever the number of sessions; `status` a fixed few.
"""

from __future__ import annotations

from typing import Any

from claude_cage import metadata, names, paths, sandbox
from claude_cage.engine import Engine
from claude_cage.errors import BadInput, OutOfMemory, SessionNotFound

CREDENTIALS = {
    "api-key-proxy": "api-key via proxy (the key never enters the session)",
    "api-key-file": "api-key file (read-only, inside the session)",
    "oauth": "OAuth/login (kept in the session's data volume)",
    "none": "none (log in inside with /login)",
}


def _engine_status(container: dict[str, Any] | None) -> str:
    if container is None:
        return "removed"
    state = container.get("State")
    if isinstance(state, dict):  # an inspect result
        state = state.get("Status")
    return "running" if state in ("running", "restarting") else "stopped"


def _url(meta: dict[str, Any]) -> str | None:
    port = meta.get("desktop_port")
    if meta.get("mode") != "desktop" or not port:
        return None
    from claude_cage.operations.desktop import url_for

    return url_for(meta.get("desktop_bind") or "127.0.0.1", int(port))


def view(
    name: str, meta: dict[str, Any] | None, container: dict[str, Any] | None
) -> dict[str, Any]:
    """One session as `list --json` shows it."""
    labels = (
        (container or {}).get("Labels")
        or ((container or {}).get("Config") or {}).get("Labels")
        or {}
    )
    meta = meta or {}
    status = _engine_status(container)
    return {
        "name": name,
        "mode": meta.get("mode") or labels.get("cage.mode", "cli"),
        "status": status,
        "network": meta.get("network") or labels.get("cage.network", ""),
        "container": meta.get("container") or names.container_name(name),
        "created": meta.get("created", ""),
        "image": meta.get("image", ""),
        "orphan": not meta,
        "ephemeral": meta.get("ephemeral") == "true",
        "ports": meta.get("ports") or [],
        "desktop_port": int(meta["desktop_port"]) if meta.get("desktop_port") else None,
        "url": _url(meta),
        "repo": meta.get("repo") or None,  # clone mode: the user's repository,
        "branch": meta.get("branch") or None,  # the session's branch in its copy,
        "base": meta.get("base") or None,  # and the commit the copy started from
    }


def is_ours(labels: dict[str, str] | None) -> bool:
    """Made by claude-cage for this data directory (not someone else's, nor another
    data directory's)."""
    labels = labels or {}
    return labels.get("managed-by") == "claude-cage" and labels.get("cage.owner") == (
        paths.owner_id()
    )


def inspect_ours(engine: Engine, container: str) -> dict[str, Any] | None:
    """`docker inspect` of one of our containers; None when absent or not ours."""
    info = engine.inspect(container)
    return info if info is not None and is_ours(info["Config"].get("Labels")) else None


def owned_containers(engine: Engine, role: str = "session") -> list[dict[str, Any]]:
    """This data directory's containers of one role, in one engine call."""
    return engine.list_containers([f"cage.role={role}", f"cage.owner={paths.owner_id()}"])


def _follow(store: metadata.SessionStore, name: str, meta: dict[str, Any], status: str) -> None:
    """Bring the metadata in line with the engine; skip if a writer holds the lock."""
    if meta.get("status") != status:
        store.update(name, blocking=False, status=status)


def list_sessions(engine: Engine | None = None) -> list[dict[str, Any]]:
    engine = engine or Engine()
    store = metadata.SessionStore()
    containers = {c["Labels"].get("cage.session"): c for c in owned_containers(engine)}
    metas = store.read_all()
    sessions = []
    for name in sorted(set(metas) | {n for n in containers if n}):
        entry = view(name, metas.get(name), containers.get(name))
        if name in metas:
            _follow(store, name, metas[name], entry["status"])
        sessions.append(entry)
    return sessions


def most_recent_running(engine: Engine | None = None) -> str:
    running = [s for s in list_sessions(engine) if s["status"] == "running"]
    if not running:
        raise BadInput("no session is running", "start one with 'claude-cage start'")
    return max(running, key=lambda s: s["created"])["name"]


def _usage(engine: Engine, info: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Uptime and resource use, read from outside the session, so they stay right when
    it is full: from its cgroup on this host (cgroups.py), else from the engine's
    one-shot stats (which wait for the engine's one-second sampling tick). Also the
    kernel's count of OOM kills in it ("" when unknown). The session has no network of
    its own; its traffic (through the companion) is left to `claude-cage egress`."""
    import time

    from claude_cage import cgroups, resources
    from claude_cage.errors import CageError

    now = time.time()
    started = resources.parse_time(info["State"].get("StartedAt"))
    facts = cgroups.read(info)
    if facts is not None:
        stats = resources.stats_from_cgroup(facts, info["HostConfig"])
    else:
        try:
            stats = engine.stats(info["Name"].lstrip("/")) or {}
        except CageError:
            stats = {}
    usage = {
        "uptime_seconds": round(now - started) if started else None,
        "resources": resources.usage(stats, started, now) if stats else None,
    }
    return usage, (facts or {}).get("oom_kill", "")


def _workspace_checks(entry: dict[str, Any], info: dict[str, Any], meta: dict[str, Any]) -> None:
    """The read-write mounts are writable by the session's uid; the git protections."""
    from claude_cage import bindmounts

    entry["protections"] = bindmounts.protected_paths(info.get("Mounts") or [])
    user, bad = bindmounts.unwritable(meta)
    if any(str(m).endswith(":rw") for m in meta.get("mounts") or []):
        detail = f"not writable by {user}: {', '.join(bad)}" if bad else f"writable by {user}"
        entry["sandbox"]["checks"].append({"check": "mounts writable", "ok": not bad,
                                           "detail": detail})  # fmt: skip
        entry["sandbox"]["ok"] = entry["sandbox"]["ok"] and not bad


def status(name: str, engine: Engine | None = None, live: bool = True) -> dict[str, Any]:
    engine = engine or Engine()
    store = metadata.SessionStore()
    meta = store.read(name)
    info = inspect_ours(engine, names.container_name(name))
    if meta is None and info is None:
        raise SessionNotFound(name)
    entry = view(name, meta, info)
    if meta is not None:
        _follow(store, name, meta, entry["status"])
        entry["allowed_hosts"] = meta.get("allowed_hosts") or []
        if meta.get("network") == "filtered" and info is not None:
            from claude_cage.operations.egress import read_log

            requests = read_log(name, engine)  # also files blocked ones in the event log
            entry["egress"] = {
                "requests": len(requests),
                "blocked": sum(not r.allowed for r in requests),
            }
        entry["credential"] = meta.get("credential", "none")
        entry["mounts"] = meta.get("mounts") or []
    companion = inspect_ours(engine, names.companion_name(name)) if info else None
    entry["companion"] = (
        {"container": names.companion_name(name), "status": _engine_status(companion)}
        if companion
        else None
    )
    if info is not None:
        state = info["State"]
        entry["started_at"] = state.get("StartedAt")
        entry["restart_count"] = info.get("RestartCount", 0)
        entry["oom_killed"] = bool(state.get("OOMKilled"))
        entry["exit_code"] = state.get("ExitCode")
        entry["health"] = (state.get("Health") or {}).get("Status")
        entry["oom_hint"] = OutOfMemory.hint if entry["oom_killed"] else None
        running = live and state.get("Running")
        oom_kills = ""
        if running:
            usage, oom_kills = _usage(engine, info)
            entry.update(usage)
        inside = sandbox.probe_inside(engine, info) if running else None
        if oom_kills.isdigit() and int(oom_kills) > 0:
            # A process in it was OOM-killed; the engine sets OOMKilled only once it exits.
            entry["oom_killed"], entry["oom_hint"] = True, OutOfMemory.hint
        if entry.get("credential") == "none" and inside and inside.get("login") == "yes":
            entry["credential"] = "oauth"
        entry["sandbox"] = sandbox.verify(info, meta or {}, inside, companion)
        _workspace_checks(entry, info, meta or {})
    else:
        entry["sandbox"] = None
    return entry
