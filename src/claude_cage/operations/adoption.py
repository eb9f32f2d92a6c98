"""Which session names are sessions, and adopting a running one that lost its record.

`ownership()` is the one place that decides what an orphan is; `list`, `status` and
`gc` all ask it. A name is

* a **session** when it has a usable record (metadata);
* to be **adopted** when it has none (missing or damaged) but its container runs: `gc`
  and `start NAME` rebuild the record from the container's labels and the engine, so a
  running session (and its data volume) is never taken for garbage;
* an **orphan** when it has no usable record and nothing of it runs: `gc` removes its
  containers and volumes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from claude_cage import labels, metadata, names, presets
from claude_cage.engine.answers import Container
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import file_error
from claude_cage.kinds import Credential, Mode
from claude_cage.operations.owned import inspect_ours
from claude_cage.record import Mount

SESSION, ADOPT, ORPHAN = "session", "adopt", "orphan"


def ownership(has_record: bool, running: bool) -> str:
    """SESSION, ADOPT or ORPHAN (see the module's docstring)."""
    if has_record:
        return SESSION
    return ADOPT if running else ORPHAN


def _created(info: Container) -> str:
    text = info.created
    try:
        when = datetime.fromisoformat(text[:19]).replace(tzinfo=UTC)
    except ValueError:
        return metadata.now_iso()
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_user_mount(target: str) -> bool:
    head, _, base = target.rpartition("/")
    return head == "/workspace" and bool(base)


def rebuild_record(name: str, info: Container, companion: Container | None) -> dict[str, Any]:
    """A session's record, from its container's labels and what the engine reports."""
    # start-up: policy brings egress, runtimes and workdir; `list` needs only ownership()
    from claude_cage import policy

    found = info.labels
    host = info.settings
    env = info.env
    mounts = [  # the user's: /workspace/<basename>, not the protections under them
        Mount(m.source, m.destination, not m.writable).to_field()
        for m in info.mounts
        if m.type == "bind" and _is_user_mount(m.destination)
    ]
    published = companion.settings.published if companion else {}
    inner_ports = [
        int(bridge.split(":")[1])
        for bridge in env.get("CAGE_BRIDGES", "").split()
        if bridge.startswith("in:")
    ]
    companion_env = companion.env if companion else {}
    hosts = companion_env.get("CAGE_ALLOWED_EXACT", "").split() + [
        "*" + suffix for suffix in companion_env.get("CAGE_ALLOWED_SUFFIXES", "").split()
    ]
    allowed_ports = [int(p) for p in companion_env.get("CAGE_ALLOWED_PORTS", "").split()]
    known = set(presets.PRESETS)  # the record refuses a name it does not know
    allowed_presets = [
        p for p in companion_env.get("CAGE_ALLOWED_PRESETS", "").split() if p in known
    ]
    persisted = any(m.name == names.data_volume(name) for m in info.mounts)
    user = info.user
    uid, _, gid = user.partition(":")
    owner = (int(uid), int(gid)) if uid.isdigit() and gid.isdigit() else (None, None)
    mode = found.get(labels.MODE) or env.get("CAGE_MODE") or Mode.CLI.value
    # The session's environment says "proxy" for any credential its companion adds: which
    # one is the credentials' business (secrets.push records it at the next hand-over).
    credential = env.get("CAGE_CREDENTIAL", "none")
    return {
        "name": name,
        "mode": mode if mode in set(Mode) else Mode.CLI.value,
        "status": "running" if info.running else "stopped",
        "created": _created(info),
        "container": names.container_name(name),
        "companion": names.companion_name(name) if companion else "",
        "network": found.get(labels.NETWORK) or "none",
        "image": info.image,
        # no limit on the engine: none recorded ("" reads as None), the config's then
        "cpus": f"{host.nano_cpus / 1e9:g}" if host.nano_cpus > 0 else "",
        "memory": f"{host.memory // 1024**2}m" if host.memory > 0 else "",
        "pids": host.pids_limit if (host.pids_limit or 0) > 0 else "",
        "mounts": mounts,
        "ports": [[published[p], p] for p in inner_ports if p in published],
        "ephemeral": found.get(labels.EPHEMERAL) == "true",
        "persist": persisted,
        "credential": credential if credential in set(Credential) else Credential.NONE.value,
        "allowed_hosts": hosts,
        "allowed_ports": allowed_ports,
        "allowed_presets": allowed_presets,
        "desktop_port": published.get(policy.NOVNC_PORT, ""),
        "uid": owner[0] if owner != (1000, 1000) else None,  # the image's user otherwise
        "gid": owner[1] if owner != (1000, 1000) else None,
        "started": metadata.now_iso(),
        "adopted": metadata.now_iso(),
    }


def adopt(engine: EngineAPI, store: metadata.SessionStore, name: str) -> dict[str, Any] | None:
    """Rebuild and write the record of a running session that has no usable one.
    Call with the session's lock held. A damaged file is kept beside it, never deleted.
    Returns the new record, or None when there is nothing to adopt."""
    info = inspect_ours(engine, names.container_name(name))
    if info is None or not info.running:
        return None
    if labels.is_probe(info.labels):
        return None  # doctor's throwaway session: gc removes it once its doctor is gone
    try:
        if store.read(name) is not None:
            return None  # it has a record after all
    except metadata.DamagedMetadata as damaged:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        try:
            os.rename(damaged.path, f"{damaged.path}.damaged-{stamp}")
        except OSError as exc:
            raise file_error(exc, damaged.path) from None
    record = rebuild_record(name, info, inspect_ours(engine, names.companion_name(name)))
    store.write(name, record)
    return record
