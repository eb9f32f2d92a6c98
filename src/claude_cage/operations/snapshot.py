"""Snapshots: a session's state kept under a name, to roll back to or start from.

A snapshot holds copies of the session's volumes (its clone, Claude Code's data, its
scratch /workspace), made on the session's engine (snapcopy.py), and its record as it
was (settings, allowlist, repository, branch, base). Nothing of a bound host directory
(`--mount`), no credential, and nothing in memory.

    <data dir>/snapshots/<snap>/snapshot   what it is: source, engine, when, size, volumes
    <data dir>/snapshots/<snap>/record     the session's record (metadata's format)
    cage-snap-<snap>-<kind>                its volumes, labelled cage.snapshot=<snap>

The `snapshot` file is written last: volumes without one are a snapshot that did not
finish, and `gc` removes them.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import labels, metadata, names, paths, quota, record, resources
from claude_cage.engine import fleet
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError, DamagedFile, SessionNotFound, SnapshotNotFound
from claude_cage.kinds import Status
from claude_cage.operations import checkpoint, operation
from claude_cage.operations.inputs import default_image
from claude_cage.operations.snapcopy import (
    Copy,
    bounded_size,
    copy,
    make_volume,
    refuse_mounts,
    session_volumes,
)
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context


def lock_name(snap: str) -> str:
    return f".snapshot-{snap}"  # never a session name: those start with a letter or digit


@dataclass(frozen=True)
class Snapshot:
    name: str
    source: str  # the session it was taken of
    created: str  # ISO 8601 UTC
    engine: str  # the engine its volumes are on ("" = the local one)
    size: int  # bytes of the session's files it holds
    kinds: tuple[str, ...]  # work, data, scratch

    def volume(self, kind: str) -> str:
        return names.snapshot_volume(self.name, kind)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "created": self.created,
            "engine": self.engine or fleet.LOCAL,
            "size": self.size,
            "volumes": [self.volume(k) for k in self.kinds],
        }


def _dir(snap: str) -> Path:
    return paths.snapshots_dir() / snap


def names_kept() -> list[str]:
    """The finished snapshots (those with a `snapshot` file)."""
    root = paths.snapshots_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "snapshot").exists())


def load(snap: str) -> tuple[Snapshot, SessionRecord]:
    """A snapshot and the record it kept; SnapshotNotFound (exit 3), DamagedFile."""
    names.check_name(snap)
    where = _dir(snap)
    try:
        info_text = (where / "snapshot").read_text()
        kept_text = (where / "record").read_text()
    except FileNotFoundError:
        raise SnapshotNotFound(snap) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedFile(where, f"cannot be read: {exc}") from None
    try:
        info = metadata.parse(info_text)
        data = metadata.parse(kept_text)
        kept = record.from_fields({k: v for k, v in data.items() if k != "schema"})
        found = Snapshot(
            name=snap,
            source=str(info["source"]),
            created=str(info["created"]),
            engine=str(info.get("engine", "")),
            size=int(info.get("size", 0)),
            kinds=tuple(k for k in str(info.get("kinds", "")).split(",") if k),
        )
    except (KeyError, ValueError) as exc:
        raise DamagedFile(where / "snapshot", f"damaged ({exc})", "remove it: "
                          f"claude-cage snapshot rm {snap}") from None  # fmt: skip
    return found, kept


def _save(ctx: Context, found: Snapshot, kept: SessionRecord) -> None:
    data = record.to_fields(kept)
    metadata.write_file(_dir(found.name) / "record", metadata.render(data))
    checkpoint(ctx, "snapshot:record-written")
    info = {"source": found.source, "created": found.created, "engine": found.engine,
            "size": found.size, "kinds": ",".join(found.kinds)}  # fmt: skip
    metadata.write_file(_dir(found.name) / "snapshot", metadata.render(info))


def volume_labels(snap: str) -> dict[str, str]:
    return {
        labels.MANAGED_BY: labels.MANAGER,
        labels.OWNER: paths.owner_id(),
        labels.ROLE: labels.Role.SNAPSHOT.value,
        labels.SNAPSHOT: snap,
    }


def source_record(ctx: Context, name: str) -> SessionRecord:
    """The session's record, checked to be one whose state can be kept."""
    meta = ctx.store.load(name)
    if meta is None:
        raise SessionNotFound(name)
    if meta.status == Status.STARTING or meta.clone_pending:
        raise BadInput(f"session {name} has not finished starting", "try again once it runs")
    return meta


def image_of(meta: SessionRecord, cfg: Any) -> str:
    """The image that copies: the session's own, which its engine has."""
    return meta.image or default_image(cfg, meta.mode)


def default_name(session: str, taken: list[str]) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = f"{session[:40]}-{stamp}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


@dataclass
class SnapshotResult:
    snapshot: Snapshot
    paused: bool  # the session ran, and was frozen for the copy
    seconds: float

    @property
    def name(self) -> str:
        return self.snapshot.source

    def event_details(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot.name, "size": self.snapshot.size}


@operation("snapshot")
def take(ctx: Context, name: str, snap: str | None = None) -> SnapshotResult:
    """Keep session NAME's state as snapshot SNAP (a name made from NAME and the time
    when not given)."""
    began = time.monotonic()
    meta = source_record(ctx, name)
    refuse_mounts(meta, "a snapshot")
    snap = names.check_name(snap) if snap else default_name(name, names_kept())
    kept_volumes = session_volumes(meta)
    engine = ctx.engine_named(meta.engine)
    store = ctx.store
    cfg = ctx.config
    with store.lock(name), store.lock(lock_name(snap)):
        if (_dir(snap) / "snapshot").exists():
            raise BadInput(f"snapshot {snap} exists", f"pick another --name, or "
                           f"'claude-cage snapshot rm {snap}' first")  # fmt: skip
        meta = source_record(ctx, name)  # as it is now, under the lock
        kinds = [k for k, v in kept_volumes.items() if engine.volume_exists(v)]
        if not kinds:
            raise CageError(f"session {name} has no volumes to keep",
                            "a --no-persist session keeps nothing")  # fmt: skip
        container = names.container_name(name)
        info = engine.inspect(container)
        paused = bool(info and info.running)
        copies = []
        try:
            for kind in kinds:
                target = names.snapshot_volume(snap, kind)
                copies.append(Copy(kind, kept_volumes[kind], target))
                bound = bounded_size(kept_volumes[kind], kind, cfg.values)
                make_volume(engine, target, volume_labels(snap), bound, (0, 0))
            size = copy(engine, image_of(meta, cfg), name, copies, freeze=container)
            checkpoint(ctx, "snapshot:copied")
            found = Snapshot(snap, name, metadata.now_iso(), meta.engine, size, tuple(kinds))
            _save(ctx, found, meta)
        except BaseException:
            remove_volumes(engine, [c.target for c in copies])
            with contextlib.suppress(OSError):
                for leftover in _dir(snap).glob("*"):
                    leftover.unlink()
                _dir(snap).rmdir()
            raise
    return SnapshotResult(found, paused, time.monotonic() - began)


def remove_volumes(engine: EngineAPI, volumes: list[str]) -> None:
    for volume in volumes:
        with contextlib.suppress(CageError):
            engine.remove_volume(volume)
            if engine.endpoint.is_local:
                quota.release(volume)


@dataclass
class Listed:
    snapshot: Snapshot
    age: float | None  # seconds
    source_exists: bool

    def as_dict(self) -> dict[str, Any]:
        return {**self.snapshot.as_dict(), "age": self.age, "source_exists": self.source_exists}


def list_snapshots(ctx: Context, session: str | None = None) -> tuple[list[Listed], list[str]]:
    """The snapshots (of one session if given), oldest first, and the damaged ones."""
    found, damaged = [], []
    sessions = set(ctx.store.names())
    now = ctx.clock()
    for snap in names_kept():
        try:
            item, _kept = load(snap)
        except CageError:
            damaged.append(snap)
            continue
        if session is not None and item.source != session:
            continue
        stamp = resources.parse_time(item.created)
        age = None if stamp is None else max(0.0, now - stamp)
        found.append(Listed(item, age, item.source in sessions))
    found.sort(key=lambda x: x.snapshot.created)
    return found, damaged


@dataclass
class RemovedSnapshot:
    snapshot: str
    source: str

    @property
    def name(self) -> str:
        return self.source

    def event_details(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot}


@operation("snapshot-rm")
def remove(ctx: Context, snap: str) -> RemovedSnapshot:
    """Remove a snapshot: its volumes, then its record."""
    names.check_name(snap)
    with ctx.store.lock(lock_name(snap)):
        if not _dir(snap).is_dir():
            raise SnapshotNotFound(snap)
        try:
            found: Snapshot | None = load(snap)[0]
        except CageError:  # damaged, or a snapshot killed before it finished
            found = None
        engine = ctx.engine_named(found.engine if found else "")
        kinds = found.kinds if found else ("work", "data", "scratch")
        for kind in kinds:
            volume = names.snapshot_volume(snap, kind)
            engine.remove_volume(volume)
            if engine.endpoint.is_local:
                quota.release(volume)
        try:
            for leftover in _dir(snap).iterdir():
                leftover.unlink()
            _dir(snap).rmdir()
        except OSError as exc:
            raise CageError(f"could not remove {_dir(snap)}: {exc.strerror}") from None
    return RemovedSnapshot(snap, found.source if found else "")
