"""`gc`: remove what crashed or ephemeral sessions left behind.

Only objects labelled `managed-by=claude-cage` whose `cage.owner` is this data
directory's, and only while it holds the session's lock (so never what a `start`,
`stop` or `destroy` is building or taking apart at that moment):

* everything of a `doctor` probe (labelled `cage.probe`) whose doctor is gone: never
  adopted, and its record goes too;
* containers, volumes and networks of a session that has no metadata (a `start`
  killed before it wrote any, a metadata directory deleted by hand), and session
  directories holding no metadata or stale temp files;
* a companion proxy still running for a stopped session (`start` makes a fresh one),
  and any companion of a session whose container is gone;
* everything of a `start --clone` killed before its clone arrived (even running: it is
  no session, see SessionRecord.clone_pending), once no start holds its lock;
* the containers and volumes of an ephemeral session that is not running;
* clone snapshots and review quarantines in the data directory's `incoming/` whose
  process is gone (they belong to no session);
* the volumes of a `claude-cage snapshot` that did not finish (killed before it wrote
  the snapshot's record), once no command holds the snapshot's lock. A finished
  snapshot is never removed by gc, also when its session is gone (`start --from` makes
  a session of it): `snapshot list` shows those as `(gone)`, and `gc` names them;
* remote devcontainer features cached in `cache/features` that no start used for
  `feature_cache_days` (kind `feature`; operations/remote_features.py);
* with `remove_stale=True` only (the CLI asks, or takes `--yes`): the metadata of a
  session whose container is gone (or of an ephemeral one that is not running),
  together with its data volume. Such a session could still be started again from
  its metadata, which is why this needs a yes. A clone-mode one whose work is not in
  cage/NAME (or cannot be checked) is kept even then (outcome `unfetched`): only
  `destroy --discard` removes that work. So is the clone's volume of a session whose
  metadata is damaged.

The shared `cage-filtered` network is left alone: it has no owner, other data
directories' sessions use it, and removing it could race with their `start`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from claude_cage import hostgit, labels, metadata, names, paths, quota
from claude_cage.engine.answers import Container
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import CageError
from claude_cage.kinds import Status
from claude_cage.operations import (
    history,
    record_event,
    recorder,
    remote_features,
    snapshot,
    unfetched,
)
from claude_cage.operations.adoption import ADOPT, ORPHAN, adopt, ownership
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context


@dataclass
class Leftover:
    session: str
    kind: str  # session (adopt) | container | volume | network | metadata | files | filesystem
    # | archive (history.py) | feature (remote_features.py)
    target: str  # container/volume/network name, or a path
    reason: str
    outcome: str = "planned"  # planned | removed | adopted | kept | busy | failed | unfetched

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
    containers: list[Container] = field(default_factory=list)  # list entries
    volumes: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)  # paths with no metadata to them
    probes: list[dict[str, str]] = field(default_factory=list)  # labels of doctor's probe objects

    def note(self, found: dict[str, str] | None) -> None:
        if labels.is_probe(found):
            self.probes.append(dict(found or {}))

    @property
    def dead_probe(self) -> bool:
        """doctor's throwaway session, whose doctor is gone (killed before removing it)."""
        return bool(self.probes) and all(labels.probe_gone(p) for p in self.probes)


def _role(container: Container) -> str:
    return container.labels.get(labels.ROLE, "")


def leftovers(objects: SessionObjects) -> tuple[list[Leftover], list[Leftover]]:
    """(what gc removes, what it removes only once confirmed) for one session. Pure."""
    name, meta = objects.name, objects.meta
    sessions = [c for c in objects.containers if _role(c) == "session"]
    companions = [c for c in objects.containers if _role(c) == "companion"]
    running = any(c.state.status in ("running", "restarting") for c in sessions)
    now: list[Leftover] = [Leftover(name, "files", p, "no metadata") for p in objects.stray_files]
    confirm: list[Leftover] = []

    def containers(items: list[Container], reason: str) -> list[Leftover]:
        return [Leftover(name, "container", c.name, reason) for c in items]

    def storage(reason: str) -> list[Leftover]:
        return [Leftover(name, "volume", v, reason) for v in objects.volumes] + [
            Leftover(name, "network", n, reason) for n in objects.networks
        ]

    if objects.probes:  # doctor's: never adopted, removed once its doctor is gone
        if not objects.dead_probe or objects.busy:
            return now, confirm
        reason = "a probe of a doctor that did not finish"
        now += containers(objects.containers, reason) + storage(reason)
        if meta is not None or objects.damaged is not None:
            now.append(Leftover(name, "metadata", name, reason))
        return now, confirm
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
    if meta.clone_pending and not objects.busy:  # killed before its clone arrived
        reason = "a start with --clone that did not finish"
        now += containers(objects.containers, reason) + storage(reason)
        now.append(Leftover(name, "metadata", name, reason))
        return now, confirm
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
        now += containers([c for c in companions if c.running], "proxy of a stopped session")
        return now, confirm
    # its proxy, and a filler or export a killed command left (they hold its volumes)
    now += containers(objects.containers, "left by a removed session")
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
        if owner := labels.session_of(container.labels):
            group(owner).containers.append(container)
            group(owner).note(container.labels)
    for volume in engine.list_volumes():
        if owner := labels.session_of(volume.labels):
            group(owner).volumes.append(volume.name)
            group(owner).note(volume.labels)
    for network in engine.list_networks():
        if owner := labels.session_of(network.labels):
            group(owner).networks.append(network.name)
    return groups


@dataclass
class GcPlan:
    leftovers: list[Leftover] = field(default_factory=list)
    stale: list[Leftover] = field(default_factory=list)  # need confirmation
    archives: list[Leftover] = field(default_factory=list)  # older than history_days
    features: list[Leftover] = field(default_factory=list)  # feature_cache_days unused

    @property
    def stale_sessions(self) -> list[str]:
        return sorted({i.session for i in self.stale if i.kind == "metadata"})


def plan_gc(ctx: Context) -> GcPlan:
    """What gc would remove now. Changes nothing."""
    engine = ctx.local_engine()
    store = ctx.store
    plan = GcPlan()
    for _name, objects in sorted(_gather(engine, store).items()):
        now, confirm = leftovers(objects)
        plan.leftovers += now
        plan.stale += confirm
    plan.leftovers += _orphan_filesystems(ctx, engine)
    plan.leftovers += _abandoned_scratch()
    plan.leftovers += [item for _snap, item in _unfinished_snapshots(engine, store)]
    plan.archives = _expired_archives(ctx)
    plan.features = _stale_features(ctx)
    return plan


def _stale_features(ctx: Context) -> list[Leftover]:
    """The feature cache's entries gc removes (remote_features.stale)."""
    days = int(ctx.config["feature_cache_days"])
    return [
        Leftover("", "feature", str(path), why)
        for path, why in remote_features.stale(ctx.data_dir, days, ctx.now())
    ]


def _expired_archives(ctx: Context) -> list[Leftover]:
    """The flight recorder's archives past `history_days` (history.py)."""
    days = int(ctx.config["history_days"])
    return [
        Leftover(a.name, "archive", str(a.path), f"destroyed more than {days} days ago")
        for a in history.expired(days)
    ]


def _unfinished_snapshots(
    engine: EngineAPI, store: metadata.SessionStore
) -> list[tuple[str, Leftover]]:
    """Volumes of a snapshot with no record (a `snapshot` killed during its copy)
    whose lock nobody holds."""
    kept = set(snapshot.names_kept())
    found = []
    for volume in engine.list_volumes():
        found_labels = volume.labels
        snap = found_labels.get(labels.SNAPSHOT)
        if not snap or not labels.is_ours(found_labels) or snap in kept:
            continue
        if store.busy(snapshot.lock_name(snap)):
            continue
        item = Leftover("", "volume", volume.name, f"of snapshot {snap}, which did not finish")
        found.append((snap, item))
    root = paths.snapshots_dir()
    for where in sorted(root.iterdir()) if root.is_dir() else []:
        if snapshot_file_missing(where) and not store.busy(snapshot.lock_name(where.name)):
            found.append((where.name, Leftover("", "files", str(where), "an unfinished snapshot")))
    return found


def snapshot_file_missing(where: Path) -> bool:
    return where.is_dir() and not where.is_symlink() and not (where / "snapshot").exists()


def snapshots_of_gone_sessions(ctx: Context) -> list[snapshot.Listed]:
    """Snapshots whose session is gone: gc keeps them (see the module's docstring)."""
    return [s for s in snapshot.list_snapshots(ctx)[0] if not s.source_exists]


def _abandoned_scratch() -> list[Leftover]:
    """Clone snapshots and review quarantines whose process is gone (a killed `start
    --clone`, `diff` or `fetch`): they belong to no session, and no lock guards them."""
    return [
        Leftover("", "files", str(path), "left by a killed clone start or review")
        for path in hostgit.abandoned_scratch(paths.incoming_dir())
    ]


def _orphan_filesystems(ctx: Context, engine: EngineAPI) -> list[Leftover]:
    """Bounded volumes' filesystems (quota.py) whose engine volume is gone: a start
    killed between the two, or a volume removed with docker itself. A session recorded
    on another engine of this machine (a local Podman) has its volume there: that
    engine is asked, and a filesystem it cannot answer for is kept."""
    volumes = {v.name for v in engine.list_volumes()}
    found = []
    for name in quota.filesystems():
        session = name.split("-", 2)[-1]
        if name not in volumes and not _on_another_engine(ctx, engine, session, name):
            found.append(Leftover(session, "filesystem", name, "its volume is gone"))
    return found


def _on_another_engine(ctx: Context, engine: EngineAPI, session: str, volume: str) -> bool:
    there = ctx.engine_for(session)
    if there is engine:
        return False
    try:
        return there.volume_exists(volume)
    except CageError:  # that engine does not answer: the volume may live on
        return True


def gc(
    ctx: Context, remove_stale: bool = False, dry_run: bool = False, purge: bool = False
) -> list[Leftover]:
    """Remove leftovers; with remove_stale, also sessions whose container is gone.

    Each session is re-read under its lock before anything of it is removed, and a
    session whose lock is taken (a start, stop or destroy at work) is left alone. A
    session's container or record removed is archived first, as `destroy` archives
    (recorder.archive), unless purge: an item `archive`, outcome `archived`.
    """
    engine = ctx.local_engine()
    store = ctx.store
    plan = plan_gc(ctx)
    if dry_run:
        for item in plan.stale:
            item.outcome = "planned" if remove_stale else "kept"
        return plan.leftovers + plan.stale + plan.archives + plan.features
    done: list[Leftover] = []
    for name in sorted({i.session for i in plan.leftovers + plan.stale} - {""}):
        done += _collect(ctx, engine, store, name, remove_stale, purge)
    for item in _abandoned_scratch():  # found afresh: each named by a process gone
        _remove(engine, store, item)
        done.append(item)
    pruned = {str(a.path) for a in history.prune(int(ctx.config["history_days"]))}
    for item in plan.archives:
        gone = item.target in pruned or not os.path.exists(item.target)  # or another gc's
        item.outcome = "removed" if gone else "failed"
        done.append(item)
    for item in _stale_features(ctx):  # afresh: a start may have used one since
        try:
            remote_features.remove(Path(item.target))
            item.outcome = "removed"
        except OSError as exc:
            item.outcome, item.reason = "failed", f"{item.reason}; {exc.strerror or exc}"
        done.append(item)
    for snap, item in _unfinished_snapshots(engine, store):  # afresh, each under its lock
        with store.lock(snapshot.lock_name(snap), blocking=False) as locked:
            if not locked or snap in snapshot.names_kept():
                continue
            _remove(engine, store, item)
            done.append(item)
    return done


def remove_dead_probes(ctx: Context, engine: EngineAPI) -> list[Leftover]:
    """Remove the throwaway sessions of `doctor`s that did not finish (`doctor` calls it
    before it makes its own)."""
    store = ctx.store
    groups = _gather(engine, store)
    done: list[Leftover] = []
    for name in sorted(n for n, objects in groups.items() if objects.dead_probe):
        done += _collect(ctx, engine, store, name, remove_stale=False, purge=True)
    return done


def _collect(
    ctx: Context,
    engine: EngineAPI,
    store: metadata.SessionStore,
    name: str,
    remove_stale: bool,
    purge: bool,
) -> list[Leftover]:
    with store.lock(name, blocking=False) as locked:
        if not locked:
            return [Leftover(name, "session", name, "a start, stop or destroy is at work", "busy")]
        objects = _gather_one(engine, store, name)
        now, confirm = leftovers(objects)
        now += [f for f in _orphan_filesystems(ctx, engine) if f.session == name]
        for item in confirm:
            item.outcome = "planned" if remove_stale else "kept"
        _keep_unfetched(ctx, engine, objects, now + confirm)
        items = now + confirm
        if not purge and _worth_archiving(objects, items):
            try:
                kept = recorder.archive(ctx, engine, name, objects.meta)
            except CageError as exc:  # no archive, so nothing of it is removed
                for item in items:
                    if item.outcome == "planned":
                        item.outcome, item.reason = "failed", f"{item.reason}; {exc.message}"
                return items
            archived = "archived before its removal, as destroy does"
            items.insert(0, Leftover(name, "archive", str(kept.path), archived, "archived"))
        order = {"session": 0, "container": 1, "network": 2, "volume": 3, "filesystem": 4,
                 "files": 5, "metadata": 6}  # fmt: skip
        for item in sorted(items, key=lambda i: order.get(i.kind, 9)):
            if item.outcome == "planned":
                _remove(engine, store, item)
        removed = [i.target for i in items if i.outcome == "removed"]
        adopted = any(i.outcome == "adopted" for i in items)
        if removed or adopted:
            record_event(ctx, "gc", name, {"status": "ok", "removed": removed, "adopted": adopted})
        return items


def _worth_archiving(objects: SessionObjects, items: list[Leftover]) -> bool:
    """Whether gc is about to remove a session that ran (its container, its data
    volume, or its record) and that no archive holds yet: not a doctor's probe, not a
    start that never finished, not one whose record `gc --yes` removes after an earlier
    gc archived it with its volumes."""
    meta, name = objects.meta, objects.name
    holders = {("container", names.container_name(name)), ("volume", names.data_volume(name))}
    removing = [
        i
        for i in items
        if i.outcome == "planned" and ((i.kind, i.target) in holders or i.kind == "metadata")
    ]
    if objects.probes or not removing:
        return False
    if meta is None:  # an orphan: worth it when it has something to read
        return any(i.kind != "metadata" for i in removing)
    if meta.status == Status.STARTING or meta.clone_pending:
        return False
    last = history.latest(name)
    return last is None or last.destroyed.strftime("%Y-%m-%dT%H:%M:%SZ") < meta.created


def _keep_unfetched(
    ctx: Context, engine: EngineAPI, objects: SessionObjects, items: list[Leftover]
) -> None:
    """Keep a clone's work that is not in cage/NAME, as `destroy` does: a clone whose
    container is gone can still be fetched (from its volume), so its record and volumes
    stay while its work is not fetched or cannot be checked; the clone's volume of a
    session whose record is damaged (nothing to check it with) stays too."""
    name, meta = objects.name, objects.meta
    volume = names.workspace_volume(name)
    planned = [i for i in items if i.outcome == "planned" and i.kind in ("volume", "metadata")]
    if not any(i.target == volume for i in planned):
        return
    discard = f"'claude-cage destroy --discard {name}'"
    if meta is None:
        if objects.damaged is None:
            return  # no record ever: a start killed before the clone was filled
        planned = [i for i in planned if i.target == volume]
        why = "its metadata is damaged, so the clone's work cannot be checked"
        why += f"; repair or move aside its metadata file, or {discard}"
    elif meta.ephemeral or meta.status == Status.STARTING or not unfetched.is_clone(meta):
        return  # thrown away by choice, or a start that never finished
    else:
        try:
            lost = unfetched.find(ctx, engine, name, meta)
            why = f"its clone holds work not fetched: {lost.describe()}" if lost else ""
        except unfetched.Unknown as exc:
            why = exc.message
        why += f"; 'claude-cage fetch {name}', or {discard}" if why else ""
    for item in planned if why else []:
        item.outcome = "unfetched"
        item.reason = why


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
    for container in objects.containers:
        objects.note(container.labels)
    for volume in engine.list_volumes():
        if labels.session_of(volume.labels) == name:
            objects.volumes.append(volume.name)
            objects.note(volume.labels)
    for network in engine.list_networks():
        if labels.session_of(network.labels) == name:
            objects.networks.append(network.name)
    return objects


def _remove(engine: EngineAPI, store: metadata.SessionStore, item: Leftover) -> None:
    try:
        if item.kind == "session":
            item.outcome = "adopted" if adopt(engine, store, item.target) else "kept"
            return
        if item.kind == "container":
            engine.remove(item.target)
        elif item.kind == "volume":
            engine.remove_volume(item.target)
            quota.release(item.target)
        elif item.kind == "network":
            engine.remove_network(item.target)
        elif item.kind == "filesystem":
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
