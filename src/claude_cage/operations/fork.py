"""Sessions from kept state: `restore` (a session back to one of its snapshots), `fork`
(a new session from a session as it is now, running or stopped) and `start --from` (a
new session from a snapshot).

A new session gets copies of the volumes (snapcopy.py) and the record, with its own
name; then it starts as a stopped session does, with `--continue`. A clone session's
new one gets its own branch, cage/NEW, where its source was, commits and uncommitted
work: that work is its starting point, so its `diff` holds only what it does itself.
The branch and the starting point are made before the new session starts, in a
throwaway container with its sandbox (clone.reader), where no process of the session
can write into what the host reads back.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from claude_cage import metadata, names, policy, workdir
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import BadInput, CageError, EngineError, SessionNotFound
from claude_cage.kinds import Status
from claude_cage.labels import Role
from claude_cage.operations import answer, checkpoint, operation, snapshot
from claude_cage.operations.clone import WORK_TIP, reader, work_env
from claude_cage.operations.inputs import StartOptions, request_from_record
from claude_cage.operations.owned import check_claimable
from claude_cage.operations.secret_store import API_KEY_SECRET
from claude_cage.operations.session import start
from claude_cage.operations.snapcopy import (
    Copy,
    bounded_size,
    copy,
    make_volume,
    refuse_mounts,
    session_volumes,
)
from claude_cage.operations.teardown import stop
from claude_cage.operations.unfetched import ANSWER_CAP, SHA, TIME_LIMIT
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context

# In the new session: its branch, $2 renamed $3, with no hook of the clone's run.
BRANCH = r"""
set -eu
cd "$1"
export GIT_DIR="$1/.git" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_COUNT=2
export GIT_CONFIG_KEY_0=core.hooksPath GIT_CONFIG_VALUE_0=/dev/null
export GIT_CONFIG_KEY_1=core.fsmonitor GIT_CONFIG_VALUE_1=false
if git show-ref -q --verify "refs/heads/$2"; then git branch -m "$2" "$3"; fi
"""

# Then, after WORK_TIP ($1 clone, $2 base, $3 the new session): its source's work as a
# commit kept in the clone (refs/cage/start), with the export's git settings (no hook,
# no fsmonitor). Prints the commit.
FORK_GIT = (
    WORK_TIP
    + r"""
cd "$own/objects"
find . -type f -path './??/*' | while read -r object; do
    [ -e "$real/objects/$object" ] && continue
    mkdir -p "$real/objects/${object%/*}"
    cp "$object" "$real/objects/$object"
done
cd "$clone"
unset GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_INDEX_FILE GIT_WORK_TREE
export GIT_DIR="$real"
git update-ref refs/cage/start "$tip"
printf '%s\n' "$tip"
"""
)


@dataclass
class NewSession:
    name: str
    source: str  # the session, or the snapshot, it came from
    snapshot: str | None
    branch: str | None
    start: Any  # session.StartResult of its first start
    warnings: list[str] = field(default_factory=list)

    def event_details(self) -> dict[str, Any]:
        return {"source": self.source, "snapshot": self.snapshot}


@dataclass
class Restored:
    name: str
    snapshot: str
    restarted: bool
    continued: bool
    warnings: list[str] = field(default_factory=list)

    def event_details(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "restarted": self.restarted}


def _new_record(kept: SessionRecord, new: str) -> SessionRecord:
    """The new session's record: the kept one under its own name, stopped, with a
    branch of its own and none of the host ports its source holds."""
    return dataclasses.replace(
        kept,
        name=new,
        container=names.container_name(new),
        companion=names.companion_name(new) if kept.companion else "",
        status=Status.STOPPED,
        created=metadata.now_iso(),
        started=None,
        stopped=None,
        last_active=None,
        cpu_total=None,
        cpu_sampled=None,
        branch=f"cage/{new}" if kept.repo_name else kept.branch,
        desktop_port=None,
        ports=(),
    )


def _refuse_existing(ctx: Context, new: str) -> None:
    """Before any lock is taken: two commands that each hold the other's next lock
    (`fork A B` and `fork B A`) are refused here instead of waiting on each other.
    (`_make` checks again under the new session's lock.)"""
    if ctx.store.load(new) is not None:
        raise BadInput(f"session {new} exists", "pick another name for the new session")


def _make(
    ctx: Context,
    engine: EngineAPI,
    kept: SessionRecord,
    new: str,
    sources: dict[str, str],
    freeze: str | None,
    source_label: str,
    snap: str | None,
    api_key: str | None = None,
) -> NewSession:
    """Session `new` from `sources` (kind -> volume) and the kept record, started."""
    names.check_name(new)
    store = ctx.store
    cfg = ctx.config
    warnings = []
    if kept.ports:
        ports = ", ".join(f"{h}:{c}" for h, c in kept.ports)
        warnings.append(f"{new} does not publish {source_label}'s ports ({ports})")
    record = _new_record(kept, new)
    with store.lock(new):
        container = names.container_name(new)
        info = engine.inspect(container)
        check_claimable(container, info)
        if store.load(new) is not None or info is not None:
            raise BadInput(f"session {new} exists", "pick another name for the new session")
        req = request_from_record(record, cfg)
        volume_labels = policy.labels(req, Role.VOLUME)
        owner = (record.uid or policy.SESSION_UID, record.gid or policy.SESSION_UID)
        targets = session_volumes(record)
        # A starting record first: a command killed from here leaves what gc removes.
        store.save(dataclasses.replace(record, status=Status.STARTING))
        made: list[str] = []
        try:
            copies = []
            for kind, source in sources.items():
                target = targets[kind]
                made.append(target)
                size = bounded_size(source, kind, cfg.values)
                make_volume(engine, target, volume_labels, size, owner)
                copies.append(Copy(kind, source, target))
            image = snapshot.image_of(kept, cfg)
            copy(engine, image, new, copies, freeze=freeze)
            checkpoint(ctx, "fork:copied")
            if record.repo_name:
                try:  # before the new session runs anything (see _own_branch)
                    tip = _own_branch(ctx, engine, record, kept.branch or "")
                    record = dataclasses.replace(record, start=tip)
                except CageError as exc:  # it still starts: what it lacks is said
                    warnings.append(f"{exc.message}: its diff shows {source_label}'s work too")
            if api_key is not None:
                store.write_secret(new, API_KEY_SECRET, api_key)
            store.save(record)
        except BaseException:
            with contextlib.suppress(CageError):
                for volume in made:
                    snapshot.remove_volumes(engine, [volume])
                store.remove(new)
            raise
    # a new session, though its first start finds the record made above
    started = dataclasses.replace(start(ctx, StartOptions(name=new)), restarted=False)
    warnings += started.warnings
    return NewSession(new, source_label, snap, record.branch, started, warnings)


def _own_branch(ctx: Context, engine: EngineAPI, record: SessionRecord, old_branch: str) -> str:
    """In the new clone session's copy of the clone: its branch, and its source's work
    as its starting point (the commit returned).

    This runs before the new session starts, in a throwaway container with its sandbox
    (user, limits, seccomp profile, runtime) and only the clone's volume (clone.reader):
    a process of the session (a hook its agent planted, started with Claude Code) could
    otherwise write another commit into this exec's output, and the review would then
    take that commit for the starting point, leaving out of `diff` what `merge` brings
    in."""
    assert record.repo_name and record.base and record.branch
    target = workdir.clone_target(record.repo_name)
    out = b""
    with reader(ctx, engine, record.name, record) as container:
        try:  # what git says there is the agent's to shape: read it within bounds
            code, _out, err = _ask(
                engine, container, ["/bin/sh", "-c", BRANCH, "branch", target, old_branch,
                                    record.branch],
            )  # fmt: skip
            if code == 0:
                command = [*work_env(record), "/bin/sh", "-c", FORK_GIT, "fork", target,
                           record.base, record.name]  # fmt: skip
                code, out, err = _ask(engine, container, command)
        except answer.NoAnswer as exc:
            code, err = -1, exc.message.encode()
    tip = out.decode(errors="replace").strip().splitlines()[-1:] if code == 0 else []
    if not tip or not SHA.match(tip[0]):  # the agent's clone answers: a commit id, or nothing
        raise EngineError(
            f"could not give {record.name} its own branch and starting point "
            f"({err.decode(errors='replace').strip()[-200:]})",
            f"look inside with 'claude-cage shell {record.name}'",
        )
    return tip[0]


def _ask(engine: EngineAPI, container: str, cmd: list[str]) -> tuple[int, bytes, bytes]:
    """`cmd` in the throwaway, its output read within ANSWER_CAP bytes and TIME_LIMIT
    seconds, as `destroy` reads a session's work (unfetched.py)."""
    return answer.ask(engine, container, cmd, cap=ANSWER_CAP, limit=TIME_LIMIT)


@operation("fork")
def fork(ctx: Context, name: str, new: str) -> NewSession:
    """A new session `new` with session `name`'s state as it is now (running or not)."""
    meta = snapshot.source_record(ctx, name)
    refuse_mounts(meta, "fork")
    if names.check_name(new) == name:
        raise BadInput(f"session {name} cannot be forked into itself", "name a new session")
    _refuse_existing(ctx, new)
    engine = ctx.engine_named(meta.engine)
    store = ctx.store
    with store.lock(name):  # not destroyed or restored meanwhile
        meta = snapshot.source_record(ctx, name)
        sources = {k: v for k, v in session_volumes(meta).items() if engine.volume_exists(v)}
        key = store.read_secret(name, API_KEY_SECRET)
        return _make(ctx, engine, meta, new, sources, names.container_name(name), name, None, key)


@operation("start-from")
def start_from(ctx: Context, snap: str, new: str) -> NewSession:
    """A new session `new` from snapshot `snap`."""
    found, kept = snapshot.load(snap)
    _refuse_existing(ctx, names.check_name(new))
    engine = ctx.engine_named(found.engine)
    with ctx.store.lock(snapshot.lock_name(snap)):  # not removed meanwhile
        sources = {k: found.volume(k) for k in found.kinds}
        return _make(ctx, engine, kept, new, sources, None, f"snapshot {snap}", snap)


@operation("restore")
def restore(ctx: Context, name: str, snap: str) -> Restored:
    """Session `name` back to its snapshot `snap`: its volumes and record as they were;
    a running session is stopped for it and started again (Claude Code with --continue)."""
    found, kept = snapshot.load(snap)
    store = ctx.store
    meta = store.load(name)
    if meta is None:
        raise SessionNotFound(name)
    if found.source != name:
        raise BadInput(
            f"snapshot {snap} is of session {found.source}, not {name}",
            f"start a new session from it: claude-cage start --from {snap} NEW",
        )
    if meta.ephemeral:
        raise BadInput(
            f"session {name} is --ephemeral: stopping it for the restore would remove it",
            f"start a new session from the snapshot: claude-cage start --from {snap} NEW",
        )
    engine = ctx.engine_named(meta.engine)
    container = names.container_name(name)
    info = engine.inspect(container)
    running = bool(info and info.running)
    if running:
        stop(ctx, name)
    cfg = ctx.config
    with store.lock(name), store.lock(snapshot.lock_name(snap)):
        info = engine.inspect(container)
        if info and info.running:
            raise BadInput(f"session {name} was started again meanwhile", "try again")
        meta = store.load(name) or meta
        targets = session_volumes(meta)
        req = request_from_record(meta, cfg)
        owner = (meta.uid or policy.SESSION_UID, meta.gid or policy.SESSION_UID)
        copies = []
        for kind in found.kinds:
            if kind not in targets:
                continue
            if not engine.volume_exists(targets[kind]):
                size = bounded_size(found.volume(kind), kind, cfg.values)
                make_volume(engine, targets[kind], policy.labels(req, Role.VOLUME), size, owner)
            copies.append(Copy(kind, found.volume(kind), targets[kind]))
        copy(engine, snapshot.image_of(meta, cfg), name, copies)
        # The container stays (its settings cannot have changed); the record is the
        # kept one, with what belongs to the container as it is now.
        store.save(
            dataclasses.replace(
                kept,
                status=Status.STOPPED,
                engine=meta.engine,
                ports=meta.ports,
                desktop_port=meta.desktop_port,
                desktop_bind=meta.desktop_bind,
                started=meta.started,
                stopped=metadata.now_iso(),
            )
        )
    if not running:
        return Restored(name, snap, False, False)
    started = start(ctx, StartOptions(name=name))
    return Restored(name, snap, True, started.continued, started.warnings)
