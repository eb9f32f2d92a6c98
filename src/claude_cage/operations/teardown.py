"""Ending a session: stop (an ephemeral one is removed as it stops) and destroy."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from claude_cage import audit, labels, metadata, names, quota
from claude_cage.engine.answers import Container
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError, SessionNotFound
from claude_cage.kinds import Status
from claude_cage.operations import checkpoint, operation, recorder, unfetched
from claude_cage.operations import companion as companion_ops
from claude_cage.operations.owned import inspect_ours
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context


@dataclass
class StopResult:
    name: str
    removed: bool = False  # ephemeral sessions are removed when they stop
    was_running: bool = True
    archive: str | None = None  # an ephemeral one's archive (history.py); None with purge

    def event_details(self) -> dict[str, Any]:
        return {
            "removed": self.removed,
            "was_running": self.was_running,
            "archived": self.archive is not None,
        }


@dataclass
class DestroyResult:
    name: str
    removed: list[str] = field(default_factory=list)
    archive: str | None = None  # the flight recorder's file (history.py); None with purge

    def event_details(self) -> dict[str, Any]:
        return {"removed": self.removed, "archived": self.archive is not None}


def _remove_everything(ctx: Context, engine: EngineAPI, name: str) -> list[str]:
    """Remove the session's containers and volumes: only ours, never a namesake. Every
    container labelled for the session goes first, also a filler or export a killed
    command left, which would hold its volumes."""
    removed = []
    for container in (names.container_name(name), names.companion_name(name)):
        if inspect_ours(engine, container) is not None and engine.remove(container):
            removed.append(container)
    for found in engine.list_containers(labels.owner_filters(session=name)):
        if labels.session_of(found.labels) != name:
            continue
        other = found.name
        if engine.remove(other):
            removed.append(other)
    checkpoint(ctx, "remove:containers")
    for volume in (
        names.data_volume(name),
        names.socket_volume(name),
        names.workspace_volume(name),
        names.scratch_volume(name),
        names.managed_volume(name),
    ):
        if labels.is_ours(engine.volume_labels(volume)) and engine.remove_volume(volume):
            removed.append(volume)
        quota.release(volume)
        checkpoint(ctx, "remove:volume")
    return removed


@contextlib.contextmanager
def _existing_session(
    ctx: Context, name: str, engine: EngineAPI
) -> Iterator[tuple[SessionRecord | None, Container | None]]:
    """Hold the session's lock and yield (record, container inspect); either may be
    None, not both. A session recorded on another engine while the lock was waited
    for is refused (Context.check_engine)."""
    store = ctx.store
    with store.lock(name):
        ctx.check_engine(name, engine)
        damaged = None
        try:
            meta = store.load(name)
        except metadata.DamagedMetadata as exc:  # the engine's labels are enough
            meta, damaged = None, exc
        info = inspect_ours(engine, names.container_name(name))
        if meta is None and info is None and damaged is None:
            raise SessionNotFound(name)
        yield meta, info


@operation("stop")
def stop(ctx: Context, name: str, purge: bool = False) -> StopResult:
    """Stop the session. An ephemeral one is removed (its container goes as it stops),
    archived first, while it still runs (recorder.py), unless purge."""
    engine = ctx.engine_for(name)
    store = ctx.store
    with _existing_session(ctx, name, engine) as (meta, info):
        was_running = info is not None and info.running
        found = info.labels if info is not None else {}
        ephemeral = meta.ephemeral if meta is not None else found.get(labels.EPHEMERAL) == "true"
        archived = recorder.archive(ctx, engine, name, meta) if ephemeral and not purge else None
        if info is not None:
            engine.stop(names.container_name(name))
        checkpoint(ctx, "stop:session-stopped")
        if inspect_ours(engine, names.companion_name(name)) is not None:
            if ephemeral:
                companion_ops.drain_audit(ctx, engine, name)  # nothing follows it later
            engine.stop(names.companion_name(name))
            audit.ensure_follower()  # it files the rest of the stopped companion's log
        checkpoint(ctx, "stop:companion-stopped")
        if ephemeral:
            _remove_everything(ctx, engine, name)
            store.remove(name)
            kept = str(archived.path) if archived else None
            return StopResult(name, removed=True, was_running=was_running, archive=kept)
        if meta is not None and was_running:
            store.save(dataclasses.replace(meta, status=Status.STOPPED, stopped=metadata.now_iso()))
    return StopResult(name, was_running=was_running)


def _nothing_to_lose(
    ctx: Context, engine: EngineAPI, name: str, meta: SessionRecord | None
) -> None:
    """Refuse (exit 1) to remove a clone whose work is not in the host's cage/NAME, or
    that cannot be checked: the work would be gone for good."""
    hint = f"run 'claude-cage fetch {name}' first, or destroy with --discard"
    if meta is None:  # a damaged record: no repository or base to compare with
        if labels.is_ours(engine.volume_labels(names.workspace_volume(name))):
            raise CageError(
                f"cannot tell whether session {name}'s clone holds unfetched work: "
                "its metadata is damaged",
                "repair or move aside its metadata file, or destroy with --discard",
            )
        return
    if not unfetched.is_clone(meta):
        return
    try:
        lost = unfetched.find(ctx, engine, name, meta)
    except unfetched.Unknown as exc:
        raise CageError(f"{exc.message}; destroying could lose its work", hint) from None
    if lost:
        raise CageError(
            f"session {name} has work that is not in {lost.branch}: {lost.describe()}", hint
        )


@operation("destroy")
def destroy(
    ctx: Context, name: str, force: bool = False, discard: bool = False, purge: bool = False
) -> DestroyResult:
    """Remove the session. A running one only with force; a clone-mode one whose work
    is not fetched (or cannot be checked) only with discard. Its transcripts, egress log
    and events are archived first (history.py), unless purge."""
    engine = ctx.engine_for(name)
    store = ctx.store
    with _existing_session(ctx, name, engine) as (meta, info):
        if info is not None and info.running and not force:
            raise BadInput(
                f"session {name} is running",
                f"stop it first ('claude-cage stop {name}'), or use --force",
            )
        if not discard:
            _nothing_to_lose(ctx, engine, name, meta)
        if purge:
            companion_ops.drain_audit(ctx, engine, name)
        archived = None if purge else recorder.archive(ctx, engine, name, meta)
        removed = _remove_everything(ctx, engine, name)
        checkpoint(ctx, "destroy:before-metadata")
        store.remove(name)
    return DestroyResult(name, removed, str(archived.path) if archived else None)
