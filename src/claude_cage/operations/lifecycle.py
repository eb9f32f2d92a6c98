"""Long-running upkeep: `reap` stops idle or memory-hungry sessions, `gc` removes what
crashed or ephemeral sessions left behind.

How `reap` decides a session is idle
------------------------------------
A running session is idle when nobody uses it and it uses no CPU to speak of, for
longer than `idle_timeout` minutes:

* Nobody uses it: no terminal is attached to its Claude Code and no other exec
  instance runs. Every way in from the host (`shell`, `attach`, `exec`, `claude -p`
  and a bare `docker exec`) is an exec instance, and nothing inside the sandbox can
  create one, so a running exec means someone outside is waiting on the session. The
  engine drops finished execs from `ExecIDs`; each remaining one is checked with exec
  inspect (`Running`). Attached terminals are counted by tmux itself (`cage-agent
  clients`), so Claude Code working detached counts as nobody, and the watch exec
  that shadows each command (see operations/run.py) is not counted.
* No CPU to speak of: between the last check and this one the session used at most
  IDLE_CPU_SECONDS of CPU, or IDLE_CPU_SHARE of the time in between if that is more.
  Each check keeps its sample (`cpu_total`, `cpu_sampled`) in the metadata. With no
  usable earlier sample (first check since the container started) the baseline is the
  container's start, when its CPU counter was zero, so the first check covers the
  whole run so far. CPU time comes from one one-shot stats call per session, made for
  all sessions at once.
* Since when: `last_active` in the metadata, moved to now whenever a check sees a
  running exec or CPU use, and by `shell`, `attach` and `exec` themselves; never
  earlier than the session's last start (`started`, which every `start` writes; the
  container's StartedAt when the metadata has neither). A check can only place activity
  somewhere between two checks, and over a long gap the allowance (IDLE_CPU_SHARE of
  it) can hide a short burst of work, so run `reap` (from cron, say) several times per
  `idle_timeout`: then a session is stopped only after at least `idle_timeout` with
  no exec and no CPU use above the allowance.

Memory: a session using `memory_kill` percent of its limit or more is stopped, whether
or not it is idle; from `memory_warn` percent it is reported. Every stop and warning
is recorded as an event; `dry_run` decides the same and changes nothing, not even the
samples in the metadata.

What `gc` removes
-----------------
Only objects labelled `managed-by=claude-cage` whose `cage.owner` is this data
directory's, and only while it holds the session's lock (so never what a `start`,
`stop` or `destroy` is building or taking apart at that moment):

* containers, volumes and networks of a session that has no metadata (a `start`
  killed before it wrote any, a metadata directory deleted by hand), and session
  directories holding no metadata or stale temp files;
* a companion proxy still running for a stopped session (`start` makes a fresh one),
  and any companion of a session whose container is gone;
* the containers and volumes of an ephemeral session that is not running;
* with `remove_stale=True` only (the CLI asks, or takes `--yes`): the metadata of a
  session whose container is gone (or of an ephemeral one that is not running),
  together with its data volume. Such a session could still be started again from
  its metadata, which is why this needs a yes.

The shared `cage-filtered` network is left alone: it has no owner, other data
directories' sessions use it, and removing it could race with their `start`.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from claude_cage import config as config_mod
from claude_cage import labels, metadata, names, resources
from claude_cage.engine import Engine
from claude_cage.engine_api import EngineAPI
from claude_cage.errors import CageError
from claude_cage.kinds import Status
from claude_cage.operations import record_event, session
from claude_cage.operations.adoption import ADOPT, ORPHAN, adopt, ownership
from claude_cage.operations.objects import inspect_ours, owned_containers
from claude_cage.record import SessionRecord

IDLE_CPU_SECONDS = 1.0  # CPU time between two checks that still counts as idle ...
IDLE_CPU_SHARE = 0.005  # ... or this share of the time between them, if more


# --- reap: pure decisions ---------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    cpu_ns: int  # CPU time used since the container started


@dataclass
class Facts:
    """What reap knows about one running session at one check."""

    name: str
    now: float
    started: float  # the container's StartedAt: its CPU counter was zero then
    last_active: float | None  # from the metadata: max(last_active, started)
    previous: Sample | None  # the last check's sample, from the metadata
    current: Sample | None  # this check's sample (None when stats failed)
    attached: int  # running exec instances
    memory_percent: float | None


@dataclass
class Verdict:
    name: str
    action: str  # stop | warn | keep
    reason: str  # idle | memory | memory-warning | attached | busy | active | unknown
    idle_seconds: float
    last_active: float
    memory_percent: float | None = None
    attached: int = 0
    cpu_seconds: float | None = None  # CPU used since the baseline sample
    done: bool = False  # the stop happened (not on a dry run)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "reason": self.reason,
            "idle_minutes": round(self.idle_seconds / 60, 1),
            "last_active": resources.format_time(self.last_active),
            "memory_percent": self.memory_percent,
            "attached": self.attached,
            "cpu_seconds": self.cpu_seconds,
            "done": self.done,
            "error": self.error,
        }


def baseline(previous: Sample | None, current: Sample, started: float) -> Sample:
    """The earlier sample to measure CPU use against: the last check's if it was taken
    during this run of the container, else the start (when the counter was zero)."""
    if previous is not None and previous.at >= started and previous.cpu_ns <= current.cpu_ns:
        return previous
    return Sample(started, 0)


def cpu_busy(before: Sample, after: Sample) -> bool:
    used = (after.cpu_ns - before.cpu_ns) / 1e9
    return used > max(IDLE_CPU_SECONDS, IDLE_CPU_SHARE * max(after.at - before.at, 0.0))


def decide(
    facts: Facts, idle_timeout_min: float, memory_warn: float, memory_kill: float
) -> Verdict:
    """Stop, warn or keep one running session. Pure: no engine, no clock."""
    last = facts.last_active if facts.last_active is not None else facts.started
    busy, cpu_seconds = False, None
    if facts.current is not None:
        before = baseline(facts.previous, facts.current, facts.started)
        busy = cpu_busy(before, facts.current)
        cpu_seconds = round((facts.current.cpu_ns - before.cpu_ns) / 1e9, 3)
    if facts.attached or busy:
        last = facts.now
    idle = max(facts.now - last, 0.0)

    def verdict(action: str, reason: str) -> Verdict:
        return Verdict(
            facts.name,
            action,
            reason,
            idle,
            last,
            facts.memory_percent,
            facts.attached,
            cpu_seconds,
        )

    memory = facts.memory_percent
    if memory is not None and memory >= memory_kill:
        return verdict("stop", "memory")
    if facts.attached:
        return verdict("keep", "attached")
    if busy:
        return verdict("keep", "busy")
    if facts.current is None:
        return verdict("keep", "unknown")  # no CPU figure: never stop on a guess
    if idle >= idle_timeout_min * 60:
        return verdict("stop", "idle")
    if memory is not None and memory >= memory_warn:
        return verdict("warn", "memory-warning")
    return verdict("keep", "active")


# --- reap: gathering facts and acting ---------------------------------------------------


def _previous_sample(meta: SessionRecord) -> Sample | None:
    at = resources.parse_time(meta.cpu_sampled)
    if meta.cpu_total is None:
        return None
    return Sample(at, meta.cpu_total) if at is not None else None


def _last_active(meta: SessionRecord) -> float | None:
    times = [resources.parse_time(t) for t in (meta.last_active, meta.started)]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _attached(engine: EngineAPI, info: dict[str, Any]) -> int:
    """Who uses the session from outside: terminals attached to its Claude Code (tmux's
    own count of clients) and other running execs. A `cage-exec watch` is only the
    shadow of another exec, and the agent running detached is nobody."""
    running, attaches = 0, 0
    for exec_id in info.get("ExecIDs") or []:
        detail = engine.exec_inspect(exec_id)
        if not (detail and detail.get("Running")):
            continue
        process = detail.get("ProcessConfig") or {}
        args = [process.get("entrypoint", ""), *(process.get("arguments") or [])]
        if args[:2] == ["cage-exec", "watch"]:
            continue
        if args[0] == "cage-exec" and args[3:5] == ["cage-agent", "attach"]:
            attaches += 1
            continue
        running += 1
    if attaches:
        from claude_cage.operations.agent import clients

        counted = clients(engine, info["Name"].lstrip("/"))
        running += attaches if counted is None else counted
    return running


def _facts(
    engine: EngineAPI, name: str, meta: SessionRecord, stats: dict[str, Any] | None, now: float
) -> Facts | None:
    info = inspect_ours(engine, names.container_name(name))
    if info is None or not info["State"].get("Running"):
        return None
    started = resources.parse_time(info["State"].get("StartedAt")) or now
    current = Sample(now, resources.cpu_total_ns(stats)) if stats else None
    return Facts(
        name=name,
        now=now,
        started=started,
        last_active=_last_active(meta),
        previous=_previous_sample(meta),
        current=current,
        attached=_attached(engine, info),
        memory_percent=resources.memory_percent(stats) if stats else None,
    )


def _settings() -> tuple[float, float, float]:
    cfg = config_mod.load()
    cfg.raise_problems()
    return float(cfg["idle_timeout"]), float(cfg["memory_warn"]), float(cfg["memory_kill"])


def reap(dry_run: bool = False, engine: EngineAPI | None = None) -> list[Verdict]:
    """Check every running session of this data directory; stop the idle and the
    memory-hungry ones (see the module's docstring for the rules)."""
    idle_timeout, memory_warn, memory_kill = _settings()
    engine = engine or Engine()
    store = metadata.SessionStore()
    running = sorted(
        c["Labels"][labels.SESSION]
        for c in owned_containers(engine)
        if c.get("State") == "running" and c["Labels"].get(labels.SESSION)
    )
    stats = engine.stats_many([names.container_name(n) for n in running])
    now = time.time()
    records = store.load_scan()[0]  # a damaged record: reaped on the engine's facts alone
    metas = {n: records.get(n) or SessionRecord(name=n) for n in running}
    with ThreadPoolExecutor(max_workers=max(1, min(len(running), 8))) as pool:
        gathered = list(
            pool.map(
                lambda n: _facts(engine, n, metas[n], stats.get(names.container_name(n)), now),
                running,
            )
        )
    verdicts = []
    for facts in (f for f in gathered if f is not None):
        verdict = decide(facts, idle_timeout, memory_warn, memory_kill)
        verdicts.append(verdict)
        if dry_run:
            continue
        _remember(store, facts, verdict)
        if verdict.action == "stop":
            _stop(engine, verdict)
        elif verdict.action == "warn":
            record_event("reap-warning", verdict.name, {"status": "warning", **_event(verdict)})
    return verdicts


def _event(verdict: Verdict) -> dict[str, Any]:
    data = verdict.as_dict()
    return {k: data[k] for k in ("reason", "idle_minutes", "memory_percent", "cpu_seconds")}


def _remember(store: metadata.SessionStore, facts: Facts, verdict: Verdict) -> None:
    """Keep this check's sample and the last activity, for the next check."""
    if facts.current is None:
        return
    store.update(
        facts.name,
        blocking=False,
        cpu_total=facts.current.cpu_ns,
        cpu_sampled=resources.format_time(facts.current.at),
        last_active=resources.format_time(verdict.last_active),
    )


def _stop(engine: EngineAPI, verdict: Verdict) -> None:
    try:
        session.stop(name=verdict.name, engine=engine)
    except CageError as exc:
        verdict.error = exc.message
        record_event("reaped", verdict.name, {"status": "error", "error": exc.message})
        return
    verdict.done = True
    record_event("reaped", verdict.name, {"status": "ok", **_event(verdict)})


# --- gc -------------------------------------------------------------------------------


@dataclass
class Leftover:
    session: str
    kind: str  # session (adopt) | container | volume | network | metadata | files | filesystem
    target: str  # container/volume/network name, or a path
    reason: str
    outcome: str = "planned"  # planned | removed | adopted | kept | busy | failed

    def as_dict(self) -> dict[str, str]:
        return {
            "session": self.session,
            "kind": self.kind,
            "target": self.target,
            "reason": self.reason,
            "outcome": self.outcome,
        }


@dataclass
class SessionObjects:
    """Everything of one session name that this data directory owns."""

    name: str
    meta: SessionRecord | None = None
    damaged: metadata.DamagedMetadata | None = None  # a metadata file that is unusable
    busy: bool = False  # a start, stop or destroy holds its lock
    containers: list[dict[str, Any]] = field(default_factory=list)  # list entries
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)  # paths with no metadata to them


def _role(container: dict[str, Any]) -> str:
    return str((container.get("Labels") or {}).get(labels.ROLE, ""))


def _container_name(container: dict[str, Any]) -> str:
    return str((container.get("Names") or ["/" + container["Id"]])[0]).lstrip("/")


def leftovers(objects: SessionObjects) -> tuple[list[Leftover], list[Leftover]]:
    """(what gc removes, what it removes only once confirmed) for one session. Pure."""
    name, meta = objects.name, objects.meta
    sessions = [c for c in objects.containers if _role(c) == "session"]
    companions = [c for c in objects.containers if _role(c) == "companion"]
    running = any(c.get("State") in ("running", "restarting") for c in sessions)
    now: list[Leftover] = [Leftover(name, "files", p, "no metadata") for p in objects.stray_files]
    confirm: list[Leftover] = []

    def containers(items: list[dict[str, Any]], reason: str) -> list[Leftover]:
        return [Leftover(name, "container", _container_name(c), reason) for c in items]

    def storage(reason: str) -> list[Leftover]:
        return [Leftover(name, "volume", v, reason) for v in objects.volumes] + [
            Leftover(name, "network", n, reason) for n in objects.networks
        ]

    fate = ownership(meta is not None, running)
    if fate == ADOPT:  # never garbage: its record is rebuilt from the engine
        reason = "running without usable metadata: rebuild its record from the engine"
        temps = [i for i in now if os.path.basename(i.target) != name]  # not its directory
        return [*temps, Leftover(name, "session", name, reason)], confirm
    if fate == ORPHAN:
        now += containers(objects.containers, "belongs to no session")
        now += storage("belongs to no session")
        if objects.damaged is not None:
            why = f"damaged metadata ({objects.damaged.reason})"
            confirm.append(Leftover(name, "metadata", name, why))
        return now, confirm
    assert meta is not None
    if running or objects.busy:
        return now, confirm
    if meta.status == Status.STARTING:  # a new session whose start never finished
        reason = "a start that did not finish"
        now += containers(objects.containers, reason) + storage(reason)
        now.append(Leftover(name, "metadata", name, reason))
        return now, confirm
    if meta.ephemeral:
        now += containers(objects.containers, "ephemeral session not running")
        now += storage("ephemeral session not running")
        confirm.append(Leftover(name, "metadata", name, "ephemeral session not running"))
        return now, confirm
    if sessions:  # stopped: keep it, but not a proxy still running for it
        now += containers(
            [c for c in companions if c.get("State") == "running"], "proxy of a stopped session"
        )
        return now, confirm
    now += containers(companions, "proxy of a removed session")
    confirm.append(Leftover(name, "metadata", name, "its container is gone"))
    confirm += storage("its container is gone")
    return now, confirm


def _stray_files(store: metadata.SessionStore) -> dict[str, list[str]]:
    """Session directories with no metadata, and temp files a killed write left."""
    found: dict[str, list[str]] = {}
    if not store.root.is_dir():
        return found
    for directory in store.root.iterdir():
        if not directory.is_dir():
            continue
        if not os.path.lexists(directory / "metadata"):  # damaged is not missing
            found.setdefault(directory.name, []).append(str(directory))
            continue
        temps = [str(p) for p in directory.glob(".metadata.*")]
        if temps:
            found.setdefault(directory.name, []).extend(temps)
    return found


def _gather(engine: EngineAPI, store: metadata.SessionStore) -> dict[str, SessionObjects]:
    """One snapshot of everything this data directory owns, grouped by session."""
    groups: dict[str, SessionObjects] = {}

    def group(name: str) -> SessionObjects:
        return groups.setdefault(name, SessionObjects(name))

    records, damaged = store.load_scan()
    for name, meta in records.items():
        if meta.engine == engine.endpoint.name:  # a session elsewhere is not this engine's
            group(name).meta = meta
            group(name).busy = meta.status == Status.STARTING and store.busy(name)
    for name, exc in damaged.items():
        group(name).damaged = exc
    for name, files in _stray_files(store).items():
        group(name).stray_files = files
    for container in engine.list_containers(labels.owner_filters()):
        if owner := labels.session_of(container.get("Labels")):
            group(owner).containers.append(container)
    for volume in engine.list_volumes():
        if owner := labels.session_of(volume.get("Labels")):
            group(owner).volumes.append(volume["Name"])
    for network in engine.list_networks():
        if owner := labels.session_of(network.get("Labels")):
            group(owner).networks.append(network["Name"])
    return groups


@dataclass
class GcPlan:
    leftovers: list[Leftover] = field(default_factory=list)
    stale: list[Leftover] = field(default_factory=list)  # need confirmation

    @property
    def stale_sessions(self) -> list[str]:
        return sorted({i.session for i in self.stale if i.kind == "metadata"})


def plan_gc(engine: EngineAPI | None = None) -> GcPlan:
    """What gc would remove now. Changes nothing."""
    engine = engine or Engine()
    plan = GcPlan()
    for _name, objects in sorted(_gather(engine, metadata.SessionStore()).items()):
        now, confirm = leftovers(objects)
        plan.leftovers += now
        plan.stale += confirm
    plan.leftovers += _orphan_filesystems(engine)
    return plan


def _orphan_filesystems(engine: EngineAPI) -> list[Leftover]:
    """Bounded volumes' filesystems (quota.py) whose engine volume is gone: a start
    killed between the two, or a volume removed with docker itself."""
    from claude_cage import quota

    volumes = {v["Name"] for v in engine.list_volumes()}
    return [
        Leftover(name.split("-", 2)[-1], "filesystem", name, "its volume is gone")
        for name in quota.filesystems()
        if name not in volumes
    ]


def gc(
    remove_stale: bool = False, dry_run: bool = False, engine: EngineAPI | None = None
) -> list[Leftover]:
    """Remove leftovers; with remove_stale, also sessions whose container is gone.

    Each session is re-read under its lock before anything of it is removed, and a
    session whose lock is taken (a start, stop or destroy at work) is left alone.
    """
    engine = engine or Engine()
    store = metadata.SessionStore()
    plan = plan_gc(engine)
    if dry_run:
        for item in plan.stale:
            item.outcome = "planned" if remove_stale else "kept"
        return plan.leftovers + plan.stale
    done: list[Leftover] = []
    for name in sorted({i.session for i in plan.leftovers + plan.stale}):
        done += _collect(engine, store, name, remove_stale)
    return done


def _collect(
    engine: EngineAPI, store: metadata.SessionStore, name: str, remove_stale: bool
) -> list[Leftover]:
    with store.lock(name, blocking=False) as locked:
        if not locked:
            return [Leftover(name, "session", name, "a start, stop or destroy is at work", "busy")]
        objects = _gather_one(engine, store, name)
        now, confirm = leftovers(objects)
        now += [f for f in _orphan_filesystems(engine) if f.session == name]
        for item in confirm:
            item.outcome = "planned" if remove_stale else "kept"
        items = now + confirm
        order = {"session": 0, "container": 1, "network": 2, "volume": 3, "filesystem": 4,
                 "files": 5, "metadata": 6}  # fmt: skip
        for item in sorted(items, key=lambda i: order.get(i.kind, 9)):
            if item.outcome == "planned":
                _remove(engine, store, item)
        removed = [i.target for i in items if i.outcome == "removed"]
        adopted = any(i.outcome == "adopted" for i in items)
        if removed or adopted:
            record_event("gc", name, {"status": "ok", "removed": removed, "adopted": adopted})
        return items


def _gather_one(engine: EngineAPI, store: metadata.SessionStore, name: str) -> SessionObjects:
    """The same as _gather, for one session, read afresh (under its lock)."""
    damaged = None
    try:
        meta = store.load(name)
    except metadata.DamagedMetadata as exc:  # its engine unknown: this one is asked
        meta, damaged = None, exc
    if meta is not None and meta.engine != engine.endpoint.name:
        return SessionObjects(name)  # it lives on another engine: nothing of it here
    objects = SessionObjects(name, meta=meta, damaged=damaged)
    objects.stray_files = _stray_files(store).get(name, [])
    objects.containers = engine.list_containers(labels.owner_filters(session=name))
    for volume in engine.list_volumes():
        if labels.session_of(volume.get("Labels")) == name:
            objects.volumes.append(volume["Name"])
    for network in engine.list_networks():
        if labels.session_of(network.get("Labels")) == name:
            objects.networks.append(network["Name"])
    return objects


def _remove(engine: EngineAPI, store: metadata.SessionStore, item: Leftover) -> None:
    try:
        if item.kind == "session":
            item.outcome = "adopted" if adopt(engine, store, item.target) else "kept"
            return
        if item.kind == "container":
            engine.remove(item.target)
        elif item.kind == "volume":
            from claude_cage import quota

            engine.remove_volume(item.target)
            quota.release(item.target)
        elif item.kind == "network":
            engine.remove_network(item.target)
        elif item.kind == "filesystem":
            from claude_cage import quota

            quota.release(item.target)
        elif item.kind == "metadata":
            store.remove(item.target)
        elif item.kind == "files":
            if os.path.isdir(item.target):
                shutil.rmtree(item.target, ignore_errors=True)
            else:
                os.unlink(item.target)
        item.outcome = "removed"
    except (CageError, OSError) as exc:
        item.outcome = "failed"
        item.reason = f"{item.reason}; {getattr(exc, 'message', None) or exc}"
