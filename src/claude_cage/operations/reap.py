"""`reap`: stop idle or memory-hungry sessions. (`gc`, which removes what crashed or
ephemeral sessions left behind, is in gc.py.)

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from claude_cage import interrupt, labels, metadata, names, resources
from claude_cage.engine.answers import Container, Stats
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import CageError
from claude_cage.operations import record_event, teardown
from claude_cage.operations.agent import clients
from claude_cage.operations.owned import inspect_ours, owned_containers
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context

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


def _attached(engine: EngineAPI, info: Container) -> int:
    """Who uses the session from outside: terminals attached to its Claude Code (tmux's
    own count of clients) and other running execs. A `cage-exec watch` is only the
    shadow of another exec, and the agent running detached is nobody."""
    running, attaches = 0, 0
    for exec_id in info.exec_ids:
        detail = engine.exec_inspect(exec_id)
        if not (detail and detail.running):
            continue
        args = list(detail.argv)
        if args[:2] == ["cage-exec", "watch"]:
            continue
        if args[:1] == ["cage-exec"] and args[3:5] == ["cage-agent", "attach"]:
            attaches += 1
            continue
        running += 1
    if attaches:
        counted = clients(engine, info.name)
        running += attaches if counted is None else counted
    return running


def _facts(
    engine: EngineAPI, name: str, meta: SessionRecord, stats: Stats | None, now: float
) -> Facts | None:
    info = inspect_ours(engine, names.container_name(name))
    if info is None or not info.running:
        return None
    started = resources.parse_time(info.state.started_at) or now
    cpu_ns = None if stats is None else stats.cpu_ns  # None: no figure (a damaged answer)
    current = None if cpu_ns is None else Sample(now, cpu_ns)
    return Facts(
        name=name,
        now=now,
        started=started,
        last_active=_last_active(meta),
        previous=_previous_sample(meta),
        current=current,
        attached=_attached(engine, info),
        memory_percent=resources.memory_percent(stats) if stats is not None else None,
    )


def _settings(ctx: Context) -> tuple[float, float, float]:
    cfg = ctx.config
    cfg.raise_problems()
    return float(cfg["idle_timeout"]), float(cfg["memory_warn"]), float(cfg["memory_kill"])


def reap(ctx: Context, dry_run: bool = False) -> list[Verdict]:
    """Check every running session of this data directory; stop the idle and the
    memory-hungry ones (see the module's docstring for the rules)."""
    idle_timeout, memory_warn, memory_kill = _settings(ctx)
    engine = ctx.local_engine()
    store = ctx.store
    running = sorted(
        c.labels[labels.SESSION]
        for c in owned_containers(engine)
        if c.running and c.labels.get(labels.SESSION)
    )
    stats = engine.stats_many([names.container_name(n) for n in running])
    now = ctx.now()
    records = store.load_scan()[0]  # a damaged record: reaped on the engine's facts alone
    metas = {n: records.get(n) or SessionRecord(name=n) for n in running}
    with interrupt.pool(max(1, min(len(running), 8))) as pool:
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
            _stop(ctx, verdict)
        elif verdict.action == "warn":
            record_event(
                ctx, "reap-warning", verdict.name, {"status": "warning", **_event(verdict)}
            )
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


def _stop(ctx: Context, verdict: Verdict) -> None:
    try:
        teardown.stop(ctx, verdict.name)
    except CageError as exc:
        verdict.error = exc.message
        record_event(ctx, "reaped", verdict.name, {"status": "error", "error": exc.message})
        return
    verdict.done = True
    record_event(ctx, "reaped", verdict.name, {"status": "ok", **_event(verdict)})
