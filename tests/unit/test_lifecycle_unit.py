"""reap, gc and doctor offline: the decisions are pure functions, and the operations
are driven here by small stand-in engines."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from claude_cage import __version__, config, metadata, paths, resources
from claude_cage.context import Context
from claude_cage.engine import answers
from claude_cage.engine.answers import (
    Container,
    EngineInfo,
    Exec,
    Network,
    State,
    Stats,
    Volume,
)
from claude_cage.engine.endpoints import Endpoint
from claude_cage.kinds import Status
from claude_cage.operations import cleanup as gc_ops
from claude_cage.operations import doctor, history, reap, remote_features
from claude_cage.operations.cleanup import SessionObjects, leftovers
from claude_cage.operations.reap import Facts, Sample, decide
from claude_cage.policy import ContainerSpec
from claude_cage.record import SessionRecord
from tests.unit import fake_engine
from tests.unit.fake_engine import UnusedEngine

HOUR = 3600.0
NOW = 1_800_000_000.0
GIB = 1024**3


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAGE_CONFIG_DIR", str(tmp_path / "config"))
    for key in ("CAGE_IDLE_TIMEOUT", "CAGE_MEMORY_WARN", "CAGE_MEMORY_KILL", "MONGODB_URI"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path / "data"


# --- resources ------------------------------------------------------------------------


def stats(
    cpu_ns: int = 0,
    pre_ns: int = 0,
    system: int = 0,
    pre_system: int = 0,
    usage: int = 0,
    inactive: int = 0,
    limit: int = 4 * GIB,
    networks: dict[str, Any] | None = None,
    inactive_key: str = "total_inactive_file",  # cgroup v1's; v2 says inactive_file
) -> Stats:
    data: dict[str, Any] = {
        "cpu_stats": {
            "cpu_usage": {"total_usage": cpu_ns, "percpu_usage": [0, 0]},
            "system_cpu_usage": system,
            "online_cpus": 2,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": pre_ns}, "system_cpu_usage": pre_system},
        "memory_stats": {
            "usage": usage,
            "limit": limit,
            "stats": {inactive_key: inactive},
        },
        "pids_stats": {"current": 3, "limit": 512},
    }
    if networks is not None:
        data["networks"] = networks
    return answers.from_docker_stats(data)


def test_engine_timestamps_with_nanoseconds_parse() -> None:
    assert resources.parse_time("2026-11-24T09:59:35.78858765Z") == pytest.approx(
        resources.parse_time("2026-11-24T09:59:35Z") + 0.788586, abs=1e-5
    )
    assert resources.parse_time("0001-01-01T00:00:00Z") is None
    assert resources.parse_time("") is None
    assert resources.parse_time("not a time") is None
    stamp = resources.format_time(NOW + 0.25)
    assert stamp.endswith(".250Z")
    assert resources.parse_time(stamp) == pytest.approx(NOW + 0.25)


def test_one_shot_cpu_is_the_average_since_start() -> None:
    # 30 s of CPU over 60 s of uptime: half of one CPU.
    percent, basis = resources.cpu_percent(stats(cpu_ns=30 * 10**9), NOW - 60, NOW)
    assert (percent, basis) == (50.0, resources.SINCE_START)


def test_cpu_with_a_previous_sample_is_the_docker_stats_figure() -> None:
    # 1 s of CPU while the whole host (2 CPUs) counted 4 s: 25% of the host = 50% of one CPU.
    sample = stats(cpu_ns=3 * 10**9, pre_ns=2 * 10**9, system=14 * 10**9, pre_system=10 * 10**9)
    assert resources.cpu_percent(sample, NOW - 60, NOW) == (50.0, resources.SAMPLED)


def test_memory_used_leaves_out_inactive_page_cache() -> None:
    assert resources.memory_used(stats(usage=300, inactive=100, limit=1000)) == (200, 1000)
    v2 = stats(usage=300, inactive=50, limit=1000, inactive_key="inactive_file")
    assert resources.memory_used(v2) == (250, 1000)
    assert resources.memory_percent(stats(usage=500, limit=1000)) == 50.0


def test_network_io_sums_interfaces_and_knows_when_there_is_none() -> None:
    nets = {"eth0": {"rx_bytes": 10, "tx_bytes": 1}, "eth1": {"rx_bytes": 5, "tx_bytes": 2}}
    assert resources.network_io(stats(networks=nets)) == (15, 3)
    assert resources.network_io(stats()) is None
    use = resources.usage(stats(usage=GIB, limit=4 * GIB), NOW - 10, NOW)
    assert (use["net_rx"], use["net_tx"], use["net_via"]) == (0, 0, "none")
    assert use["memory_percent"] == 25.0
    assert (use["pids"], use["pids_limit"]) == (3, 512)


def test_human_units() -> None:
    assert resources.human_bytes(512) == "512 B"
    assert resources.human_bytes(3 * 1024**2) == "3.0 MiB"
    assert resources.human_bytes(4 * GIB) == "4.0 GiB"
    assert resources.human_duration(59) == "59s"
    assert resources.human_duration(2 * HOUR + 7 * 60) == "2h 7m"
    assert resources.human_duration(3 * 86400 + HOUR) == "3d 1h"


# --- reap decisions -------------------------------------------------------------------


def facts(**changes: Any) -> Facts:
    base: dict[str, Any] = dict(
        name="s",
        now=NOW,
        started=NOW - 3 * HOUR,
        last_active=NOW - 2 * HOUR,
        previous=Sample(NOW - 10 * 60, 5 * 10**9),
        current=Sample(NOW, 5 * 10**9 + 10**8),  # 0.1 s of CPU in 10 minutes
        attached=0,
        memory_percent=10.0,
    )
    base.update(changes)
    return Facts(**base)


def reap_decision(f: Facts, idle: float = 60, warn: float = 80, kill: float = 95):
    return decide(f, idle, warn, kill)


def test_idle_longer_than_the_timeout_is_stopped() -> None:
    verdict = reap_decision(facts())
    assert (verdict.action, verdict.reason) == ("stop", "idle")
    assert verdict.idle_seconds == 2 * HOUR


def test_idle_shorter_than_the_timeout_is_kept() -> None:
    verdict = reap_decision(facts(last_active=NOW - 30 * 60))
    assert (verdict.action, verdict.reason) == ("keep", "active")


def test_an_attached_session_is_never_idle() -> None:
    verdict = reap_decision(facts(attached=1))
    assert (verdict.action, verdict.reason) == ("keep", "attached")
    assert verdict.last_active == NOW  # the activity is remembered for the next check


def test_cpu_use_since_the_last_check_keeps_it_and_counts_as_activity() -> None:
    busy = facts(current=Sample(NOW, 5 * 10**9 + 20 * 10**9))  # 20 s of CPU in 10 minutes
    verdict = reap_decision(busy)
    assert (verdict.action, verdict.reason, verdict.last_active) == ("keep", "busy", NOW)
    assert verdict.cpu_seconds == 20.0


def test_cpu_noise_below_the_threshold_is_idle() -> None:
    assert not reap.cpu_busy(Sample(0, 0), Sample(60, 9 * 10**8))  # 0.9 s in a minute
    assert reap.cpu_busy(Sample(0, 0), Sample(60, 2 * 10**9))
    # over a long interval the allowance grows with it: 0.5% of 10 h is 180 s
    assert not reap.cpu_busy(Sample(0, 0), Sample(10 * HOUR, 100 * 10**9))
    assert reap.cpu_busy(Sample(0, 0), Sample(10 * HOUR, 200 * 10**9))


def test_a_sample_from_before_the_last_start_is_not_a_baseline() -> None:
    started = NOW - 60
    stale = Sample(NOW - HOUR, 10**12)  # the previous run's counter
    assert reap.baseline(stale, Sample(NOW, 10**8), started) == Sample(started, 0)
    fresh = Sample(NOW - 30, 5 * 10**7)
    assert reap.baseline(fresh, Sample(NOW, 10**8), started) == fresh
    # a counter that went backwards (restarted in between) is not trusted either
    backwards = Sample(NOW - 30, 10**9)
    assert reap.baseline(backwards, Sample(NOW, 10**8), started) == Sample(started, 0)


def test_no_last_activity_falls_back_to_the_start() -> None:
    quiet = facts(last_active=None, started=NOW - 600, previous=None, current=Sample(NOW, 10**8))
    verdict = reap_decision(quiet)
    assert verdict.idle_seconds == 10 * 60
    assert verdict.action == "keep"


def test_memory_kill_stops_even_an_attached_busy_session() -> None:
    verdict = reap_decision(facts(memory_percent=96.0, attached=2, last_active=NOW))
    assert (verdict.action, verdict.reason) == ("stop", "memory")


def test_memory_warning_between_the_thresholds() -> None:
    verdict = reap_decision(facts(memory_percent=85.0, last_active=NOW))
    assert (verdict.action, verdict.reason) == ("warn", "memory-warning")


def test_without_a_cpu_figure_nothing_is_stopped_for_idleness() -> None:
    verdict = reap_decision(facts(current=None, memory_percent=None))
    assert (verdict.action, verdict.reason) == ("keep", "unknown")


# --- reap, driven ---------------------------------------------------------------------


class ReapEngine(UnusedEngine):
    """Running sessions with given stats and exec instances."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.sessions: dict[str, dict[str, Any]] = {}

    def add(self, name: str, started: str, cpu_ns: int, execs: Sequence[bool] = ()) -> None:
        self.sessions[name] = {"started": started, "cpu": cpu_ns, "execs": list(execs)}

    def list_containers(self, labels: list[str] | None = None) -> list[Container]:
        labels_of = {"managed-by": "claude-cage", "cage.owner": self.owner}
        return [
            fake_engine.container(f"cage-{n}", labels={**labels_of, "cage.session": n})
            for n in self.sessions
        ]

    def stats_many(self, names: list[str]) -> dict[str, Stats | None]:
        return {n: stats(cpu_ns=self.sessions[n[5:]]["cpu"], usage=GIB // 10) for n in names}

    def inspect(self, name: str) -> Container | None:
        s = self.sessions.get(name[5:])
        if s is None:
            return None
        ids = tuple(f"{name}-{i}" for i in range(len(s["execs"])))
        labels = {"managed-by": "claude-cage", "cage.owner": self.owner}
        state = State(status="running", running=True, started_at=s["started"])
        return Container(id=name, name=name, labels=labels, state=state, exec_ids=ids)

    def exec_inspect(self, exec_id: str) -> Exec | None:
        name, _, index = exec_id.rpartition("-")
        return Exec(running=self.sessions[name[5:]]["execs"][int(index)])


def record(name: str, **extra: Any) -> None:
    data = {"name": name, "mode": "cli", "status": "running", "created": "x"}
    metadata.SessionStore().write(name, {**data, "container": f"cage-{name}", **extra})


def at(engine: ReapEngine, now: float) -> Context:
    """A command's context on `engine` whose clock reads `now`."""
    return Context(engine=engine, clock=lambda: now)


@pytest.fixture
def reap_world(monkeypatch: pytest.MonkeyPatch) -> tuple[ReapEngine, list, list]:
    engine = ReapEngine(paths.owner_id())
    long_ago = resources.format_time(NOW - 5 * HOUR)
    for name in ("idle", "attached", "fresh"):
        engine.add(name, long_ago, 10**8, execs=[True] if name == "attached" else [])
        record(name, started=long_ago, last_active=long_ago)
    record("fresh", started=resources.format_time(NOW), last_active=long_ago)
    events: list[tuple[str, str, dict]] = []
    stopped: list[str] = []
    monkeypatch.setattr(reap, "record_event", lambda _ctx, k, n, v: events.append((k, n, v)))

    def fake_stop(ctx: Context, name: str) -> None:
        stopped.append(name)

    import claude_cage.operations.teardown as teardown_mod

    monkeypatch.setattr(teardown_mod, "stop", fake_stop)
    return engine, events, stopped


def test_reap_dry_run_decides_but_changes_nothing(reap_world: Any, data_dir: Path) -> None:
    engine, events, stopped = reap_world
    before = {p: p.read_bytes() for p in data_dir.rglob("metadata")}
    verdicts = {v.name: v for v in reap.reap(at(engine, NOW + 1), dry_run=True)}
    assert verdicts["idle"].action == "stop" and not verdicts["idle"].done
    assert verdicts["attached"].reason == "attached"
    assert verdicts["fresh"].action == "keep"
    assert stopped == [] and events == []
    assert {p: p.read_bytes() for p in data_dir.rglob("metadata")} == before


def test_reap_stops_the_idle_one_records_it_and_keeps_samples(reap_world: Any) -> None:
    engine, events, stopped = reap_world
    verdicts = {v.name: v for v in reap.reap(at(engine, NOW + 1))}
    assert stopped == ["idle"]
    assert verdicts["idle"].done
    assert [(k, n, v["reason"]) for k, n, v in events] == [("reaped", "idle", "idle")]
    attached = metadata.SessionStore().read("attached")
    assert attached is not None
    assert attached["cpu_total"] == str(10**8)
    assert resources.parse_time(attached["last_active"]) == pytest.approx(NOW + 1)
    fresh = metadata.SessionStore().read("fresh")
    assert fresh is not None and "cpu_sampled" in fresh


def test_reap_honours_the_configured_timeout(
    reap_world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _events, stopped = reap_world
    monkeypatch.setenv("CAGE_IDLE_TIMEOUT", str(6 * 60))  # six hours: nothing is idle yet
    reap.reap(at(engine, NOW + 1))
    assert stopped == []


# --- gc decisions ---------------------------------------------------------------------


def container(role: str, state: str, name: str = "s") -> Container:
    prefix = "cage-" if role == "session" else "companion-cage-"
    found = {"cage.role": role, "cage.session": name}
    return fake_engine.container(f"{prefix}{name}", state, found)


def kinds(items: list[gc_ops.Leftover]) -> list[tuple[str, str]]:
    return sorted((i.kind, i.target) for i in items)


def test_gc_removes_everything_of_a_stopped_session_with_no_metadata() -> None:
    objects = SessionObjects(
        "s",
        meta=None,
        containers=[container("session", "exited"), container("companion", "running")],
        volumes=["cage-data-s", "cage-sock-s"],
        stray_files=["/d/sessions/s"],
    )
    now, confirm = leftovers(objects)
    assert kinds(now) == [
        ("container", "cage-s"),
        ("container", "companion-cage-s"),
        ("files", "/d/sessions/s"),
        ("volume", "cage-data-s"),
        ("volume", "cage-sock-s"),
    ]
    assert confirm == []


def test_gc_adopts_a_running_session_with_no_usable_metadata() -> None:
    for damaged in (None, metadata.DamagedMetadata("s", Path("/d/sessions/s/metadata"), "empty")):
        objects = SessionObjects(
            "s",
            meta=None,
            damaged=damaged,
            containers=[container("session", "running"), container("companion", "running")],
            volumes=["cage-data-s", "cage-sock-s"],
            stray_files=["/d/sessions/s", "/d/sessions/s/.metadata.x1"],
        )
        now, confirm = leftovers(objects)
        assert kinds(now) == [("files", "/d/sessions/s/.metadata.x1"), ("session", "s")]
        assert confirm == []


def test_gc_removes_a_stopped_session_with_damaged_metadata_once_confirmed() -> None:
    objects = SessionObjects(
        "s",
        damaged=metadata.DamagedMetadata("s", Path("/d/sessions/s/metadata"), "not UTF-8 text"),
        containers=[container("session", "exited")],
        volumes=["cage-data-s"],
    )
    now, confirm = leftovers(objects)
    assert kinds(now) == [("container", "cage-s"), ("volume", "cage-data-s")]
    assert kinds(confirm) == [("metadata", "s")]
    assert "not UTF-8 text" in confirm[0].reason


def test_gc_removes_a_start_that_did_not_finish_unless_it_is_at_work() -> None:
    objects = SessionObjects(
        "s",
        meta=SessionRecord("s", status=Status.STARTING),
        containers=[container("session", "created")],
        volumes=["cage-data-s"],
    )
    now, confirm = leftovers(objects)
    assert kinds(now) == [("container", "cage-s"), ("metadata", "s"), ("volume", "cage-data-s")]
    assert confirm == []
    objects.busy = True  # the start still holds the lock
    assert leftovers(objects) == ([], [])
    objects.busy, objects.containers = False, [container("session", "running")]
    assert leftovers(objects) == ([], [])  # it came up: a session


def test_gc_leaves_a_running_session_alone() -> None:
    objects = SessionObjects(
        "s",
        meta=SessionRecord("s", ephemeral=True),
        containers=[container("session", "running"), container("companion", "running")],
        volumes=["cage-sock-s"],
    )
    assert leftovers(objects) == ([], [])


def test_gc_keeps_a_stopped_session_but_not_its_running_proxy() -> None:
    objects = SessionObjects(
        "s",
        meta=SessionRecord("s", ephemeral=False),
        containers=[container("session", "exited"), container("companion", "running")],
        volumes=["cage-data-s"],
    )
    now, confirm = leftovers(objects)
    assert kinds(now) == [("container", "companion-cage-s")]
    assert confirm == []
    objects.containers[1] = container("companion", "exited")  # the usual stopped session
    assert leftovers(objects) == ([], [])


def test_gc_cleans_an_ephemeral_session_that_is_not_running() -> None:
    objects = SessionObjects(
        "s", meta=SessionRecord("s", ephemeral=True), containers=[], volumes=["cage-sock-s"]
    )
    now, confirm = leftovers(objects)
    assert kinds(now) == [("volume", "cage-sock-s")]
    assert kinds(confirm) == [("metadata", "s")]


def test_gc_asks_before_removing_a_session_whose_container_is_gone() -> None:
    objects = SessionObjects(
        "s",
        meta=SessionRecord("s", ephemeral=False),
        containers=[container("companion", "exited")],
        volumes=["cage-data-s"],
    )
    now, confirm = leftovers(objects)
    assert kinds(now) == [("container", "companion-cage-s")]
    assert kinds(confirm) == [("metadata", "s"), ("volume", "cage-data-s")]


# --- gc, driven -----------------------------------------------------------------------


class GcEngine(UnusedEngine):
    """Containers and volumes of this owner, another owner and no owner at all."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.endpoint = Endpoint("", "unix:///var/run/docker.sock")  # the local engine
        self.containers: list[Container] = []
        self.volumes: list[Volume] = []
        self.removed: list[str] = []
        self.readers: list[str] = []  # created and not removed yet

    def add_container(self, name: str, session: str, labels: dict[str, str]) -> None:
        found = {"cage.session": session, "cage.role": "session", **labels}
        self.containers.append(Container(id=name, name=name, labels=found, state=State("exited")))

    def add_volume(self, name: str, session: str, labels: dict[str, str]) -> None:
        self.volumes.append(Volume(name, {"cage.session": session, **labels}))

    def list_containers(self, labels: list[str] | None = None) -> list[Container]:
        wanted = dict(label.split("=", 1) for label in ["managed-by=claude-cage", *(labels or [])])
        return [
            c
            for c in self.containers
            if c.id not in self.removed and all(c.labels.get(k) == v for k, v in wanted.items())
        ]

    def list_volumes(self) -> list[Volume]:
        return [
            v
            for v in self.volumes
            if v.name not in self.removed and v.labels.get("managed-by") == "claude-cage"
        ]

    def list_networks(self) -> list[Network]:
        return []

    def inspect(self, name: str) -> Container | None:
        return next((c for c in self.list_containers() if c.id == name), None)

    def volume_labels(self, name: str) -> dict[str, str] | None:
        return next((v.labels for v in self.list_volumes() if v.name == name), None)

    def get_archive(self, name: str, path: str, chunk: int = 1 << 20) -> Iterator[bytes] | None:
        return None  # no transcript: the archive holds the record and the events

    def create(self, spec: ContainerSpec) -> str:
        self.readers.append(spec.name)  # reads a gone container's data volume (recorder.py)
        return spec.name

    def remove(self, name: str) -> bool:
        if name.startswith("export-"):  # a reader: none is left from before
            if name not in self.readers:
                return False
            self.readers.remove(name)
            return True
        self.removed.append(name)
        return True

    def remove_volume(self, name: str) -> bool:
        self.removed.append(name)
        return True

    def remove_network(self, name: str) -> None:
        self.removed.append(name)


@pytest.fixture
def gc_world(monkeypatch: pytest.MonkeyPatch) -> GcEngine:
    monkeypatch.setattr(gc_ops, "record_event", lambda *a, **k: None)
    engine = GcEngine(paths.owner_id())
    mine = {"managed-by": "claude-cage", "cage.owner": engine.owner}
    theirs = {"managed-by": "claude-cage", "cage.owner": "someone-else"}
    engine.add_container("cage-orphan", "orphan", mine)
    engine.add_volume("cage-data-orphan", "orphan", mine)
    engine.add_container("cage-other", "other", theirs)
    engine.add_volume("cage-data-other", "other", theirs)
    engine.add_container("cage-unmanaged", "unmanaged", {"cage.owner": engine.owner})
    engine.add_volume("cage-data-unmanaged", "unmanaged", {"cage.owner": engine.owner})
    engine.add_volume("cage-data-gone", "gone", mine)
    record("gone")  # metadata, but the container is gone
    return engine


def test_gc_touches_only_its_own_labelled_objects(gc_world: GcEngine) -> None:
    gc_ops.gc(Context(engine=gc_world))
    assert sorted(gc_world.removed) == ["cage-data-orphan", "cage-orphan"]
    assert metadata.SessionStore().read("gone") is not None  # not confirmed: kept
    assert [a.name for a in history.entries()] == ["orphan"]  # archived as it went


def test_gc_dry_run_removes_nothing(gc_world: GcEngine) -> None:
    items = gc_ops.gc(
        Context(engine=gc_world),
        remove_stale=True,
        dry_run=True,
    )
    assert gc_world.removed == []
    assert {i.target for i in items} == {
        "cage-orphan",
        "cage-data-orphan",
        "gone",
        "cage-data-gone",
    }
    assert metadata.SessionStore().read("gone") is not None


def test_gc_with_confirmation_removes_sessions_whose_container_is_gone(
    gc_world: GcEngine,
) -> None:
    gc_ops.gc(
        Context(engine=gc_world),
        remove_stale=True,
    )
    assert sorted(gc_world.removed) == ["cage-data-gone", "cage-data-orphan", "cage-orphan"]
    assert metadata.SessionStore().read("gone") is None
    assert sorted(a.name for a in history.entries()) == ["gone", "orphan"]
    assert gc_world.readers == []  # the one that read gone's volume is removed again


def test_gc_leaves_a_session_whose_lock_is_held(gc_world: GcEngine) -> None:
    store = metadata.SessionStore()
    with store.lock("orphan"):  # a start building it right now
        items = gc_ops.gc(Context(engine=gc_world))
    assert "cage-orphan" not in gc_world.removed
    assert [i.outcome for i in items if i.session == "orphan"] == ["busy"]


def test_gc_removes_half_written_session_directories(gc_world: GcEngine, data_dir: Path) -> None:
    half = data_dir / "sessions" / "half"
    half.mkdir(parents=True)
    (half / "api_key").write_text("secret")
    temp = data_dir / "sessions" / "gone" / ".metadata.abc123"
    temp.write_text("name=gone\n")
    gc_ops.gc(Context(engine=gc_world))
    assert not half.exists()
    assert not temp.exists()
    assert (data_dir / "sessions" / "gone" / "metadata").is_file()


def test_gc_prunes_features_unused_for_feature_cache_days(
    gc_world: GcEngine, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached feature no start used for feature_cache_days goes, with the manifest
    entry naming it and a killed start's unpacking folder; one used since (a pinned
    reference found in the cache touches it) stays; 0 keeps everything."""
    cache = remote_features.cache_dir(data_dir)
    old, used, recent = ("a" * 64, "b" * 64, "c" * 64)
    for layer in (old, used, recent):
        (cache / layer).mkdir(parents=True)
        (cache / layer / "install.sh").write_text("#!/bin/sh\n")
    (cache / "manifests").mkdir()
    (cache / "manifests" / ("d" * 64)).write_text(f"sha256:{old}\n")
    (cache / "manifests" / ("e" * 64)).write_text(f"sha256:{used}\n")
    (cache / ".incoming-killed").mkdir()
    month_ago = time.time() - 40 * 86400
    for path in (cache / old, cache / used, cache / ".incoming-killed"):
        os.utime(path, (month_ago, month_ago))
    found = remote_features.Fetcher(data_dir)(f"ghcr.io/o/f/x@sha256:{'e' * 64}")
    assert found == cache / used  # from the cache, no registry asked: used now

    planned = gc_ops.gc(Context(engine=gc_world), dry_run=True)
    features = sorted((i.target, i.reason) for i in planned if i.kind == "feature")
    assert features == [
        (str(cache / ".incoming-killed"), "left half-unpacked by a killed start"),
        (str(cache / old), "a feature not used for 30 days"),
        (str(cache / "manifests" / ("d" * 64)), "names a feature no longer cached"),
    ]
    assert (cache / old).is_dir()  # a dry run removes nothing

    monkeypatch.setenv("CAGE_FEATURE_CACHE_DAYS", "0")
    kept = gc_ops.gc(Context(engine=gc_world), dry_run=True)
    assert [i.target for i in kept if i.kind == "feature"] == [str(cache / ".incoming-killed")]
    monkeypatch.delenv("CAGE_FEATURE_CACHE_DAYS")

    done = gc_ops.gc(Context(engine=gc_world))
    assert sorted(i.target for i in done if i.kind == "feature") == [t for t, _ in features]
    assert all(i.outcome == "removed" for i in done if i.kind == "feature")
    assert sorted(p.name for p in cache.iterdir()) == [used, recent, "manifests"]
    assert [p.name for p in (cache / "manifests").iterdir()] == ["e" * 64]


# --- the crash hook -------------------------------------------------------------------


@pytest.mark.parametrize(("step", "code"), [("start:volumes", -9), ("stop:other", 0)])
def test_checkpoint_kills_only_at_the_named_step(step: str, code: int) -> None:
    script = (
        "from claude_cage.context import Context; from claude_cage.operations import checkpoint;"
        "checkpoint(Context(), 'start:volumes')"
    )
    env = {"CAGE_TEST_KILL_AT": step, "PATH": "/usr/bin:/bin"}
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == code


# --- doctor checks --------------------------------------------------------------------


class ImageEngine(UnusedEngine):
    def __init__(self, labels: dict[str, dict[str, str] | None]) -> None:
        self.labels = labels

    def image_labels(self, image: str) -> dict[str, str] | None:
        return self.labels.get(image)


def test_doctor_images_missing_or_stale_say_how_to_build() -> None:
    cfg = config.load()
    engine = ImageEngine(
        {
            cfg["image_cli"]: {"cage.version": __version__, "cage.managed-settings": "read-only"},
            cfg["image_companion"]: {"cage.version": "0.0.1"},
        }
    )
    checks = {c.check: c for c in doctor.check_images(engine, cfg)}
    assert checks[f"image {cfg['image_cli']}"].status == doctor.OK
    stale = checks[f"image {cfg['image_companion']}"]
    assert stale.status == doctor.FAIL and "0.0.1" in stale.detail
    assert stale.fix is not None and stale.fix.startswith("claude-cage build")
    desktop = checks[f"image {cfg['image_desktop']}"]
    assert desktop.status == doctor.WARN and desktop.fix == "claude-cage build desktop"


def test_doctor_fails_a_session_image_from_before_read_only_managed_settings() -> None:
    cfg = config.load()
    engine = ImageEngine({cfg["image_cli"]: {"cage.version": __version__}})
    check = {c.check: c for c in doctor.check_images(engine, cfg)}[f"image {cfg['image_cli']}"]
    assert check.status == doctor.FAIL and "managed settings" in check.detail
    assert check.fix == "claude-cage build cli"


def test_doctor_security_options() -> None:
    both = doctor.check_security(
        EngineInfo(security_options=("name=seccomp,profile=default", "name=apparmor"))
    )
    assert [c.status for c in both] == [doctor.OK, doctor.OK]
    none = doctor.check_security(EngineInfo())
    assert [c.status for c in none] == [doctor.FAIL, doctor.WARN]
    assert all(c.fix for c in none)


def test_doctor_disk_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    for free, status in ((1 * GIB, doctor.FAIL), (5 * GIB, doctor.WARN), (50 * GIB, doctor.OK)):
        monkeypatch.setattr(shutil, "disk_usage", lambda _p, f=free: usage(0, 0, f))
        check = doctor.check_disk(EngineInfo(root_dir="/var/lib/docker"))
        assert check.status == status
        assert (check.fix is None) == (status == doctor.OK)


def test_doctor_config_problems_point_at_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAGE_MAX_SESSIONS", "lots")
    check = doctor.check_config(config.load())
    assert check.status == doctor.FAIL and "max_sessions" in check.detail
    assert check.fix == "claude-cage config validate"


def test_doctor_mongodb_failure_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "MONGO_TIMEOUT_MS", 200)
    monkeypatch.setenv("MONGODB_URI", "mongodb://cage:hunter2secret@127.0.0.1:9/db")
    check = doctor.check_mongodb(config.load())
    assert check is not None and check.status == doctor.FAIL
    assert "hunter2secret" not in check.detail and "****" in check.detail
    assert check.fix


def test_doctor_skips_mongodb_when_none_is_configured() -> None:
    assert doctor.check_mongodb(config.load()) is None


# --- gc's confirmation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tty", "answer", "flags", "expected"),
    [
        (True, "y\n", [], True),
        (True, "n\n", [], False),
        (False, "", [], False),  # nobody to ask: list them, change nothing
        (False, "", ["--yes"], True),
    ],
)
def test_gc_asks_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, tty: bool, answer: str, flags: list[str], expected: bool
) -> None:
    from click.testing import CliRunner

    from claude_cage.cli import cli
    from claude_cage.cli import upkeep as cli_lifecycle

    plan = gc_ops.GcPlan(stale=[gc_ops.Leftover("old", "metadata", "old", "gone")])
    seen: list[bool] = []

    def fake_gc(
        _ctx: Context, remove_stale: bool = False, dry_run: bool = False, purge: bool = False
    ) -> list:
        seen.append(remove_stale)
        return []

    monkeypatch.setattr(cli_lifecycle, "can_ask", lambda: tty)
    monkeypatch.setattr(gc_ops, "plan_gc", lambda _ctx: plan)
    monkeypatch.setattr(gc_ops, "gc", fake_gc)
    result = CliRunner().invoke(cli, ["gc", *flags], input=answer)
    assert result.exit_code == 0, result.output
    assert seen == [expected]
    assert ("remove 1 session(s)" in result.output) == (tty and not flags)


# --- status: one one-shot stats call --------------------------------------------------


def test_stats_are_asked_for_one_shot_without_streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    from claude_cage.engine.client import Engine

    asked: list[tuple[str, dict]] = []
    monkeypatch.setattr(Engine, "_get", lambda self, path, query=None: asked.append((path, query)))
    assert Engine().stats_many(["cage-a", "cage-b"]) == {"cage-a": None, "cage-b": None}
    assert sorted(asked) == [
        ("/containers/cage-a/stats", {"stream": "false", "one-shot": "true"}),
        ("/containers/cage-b/stats", {"stream": "false", "one-shot": "true"}),
    ]
