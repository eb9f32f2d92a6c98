"""Clone mode in the engine: fill a session's workspace volume with the user's repository,
and get the session's work back out, running or stopped.

Everything crosses through the engine's API (an archive upload in, an exec's stdout
out), never a bind mount, so it works the same against a remote engine. The git that
runs inside is the session's own, under the session's sandbox; what comes out of it is
untrusted data that `hostgit.quarantine` checks before the host's git reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import socket
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from claude_cage import hostgit, labels, names, policy, quota, workdir
from claude_cage.bounds import Bounds
from claude_cage.engine.api import EngineAPI
from claude_cage.engine.transport import demux
from claude_cage.errors import BadInput, CageError, EngineError, SessionNotFound
from claude_cage.hostgit import Snapshot
from claude_cage.kinds import Mode
from claude_cage.operations.inputs import (
    StartOptions,
    decisions_from_record,
    host_facts,
    load_config,
    request_from_record,
)
from claude_cage.operations.owned import inspect_ours
from claude_cage.operations.run import Watch
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context

    pass

# Runs in the session as its user: turn the uploaded pack (and its index) into a
# repository on branch $2 at the base $3, with the working tree of $4 and the index of $5.
SETUP = r"""
set -eu
cd "$1"
git init -q -b "$2" .
git update-ref "refs/heads/$2" "$3"
git update-ref refs/cage/start "$4"
git -c checkout.workers=0 read-tree -u --reset "$4"
if [ "$4" != "$5" ]; then
    # Only the paths whose staged state differs: the others keep their fresh stat data,
    # so the agent's first 'git status' does not hash the whole tree again.
    git diff-tree -r -z --no-renames --name-only "$4" "$5" \
        | GIT_LITERAL_PATHSPECS=1 git reset -q --pathspec-from-file=- --pathspec-file-nul "$5"
fi
git config user.name "Claude Code (claude-cage)"
git config user.email "claude@claude-cage.invalid"
"""

# The work in the session's clone $1, whose base is $2, in session $3: sets $head and
# $tip, the commit holding all the work (HEAD, plus one commit for uncommitted changes,
# with a fixed identity and date, so the same work always makes the same commit). It
# runs in the session (or in its export container when it is stopped) under `env -i`,
# so no variable of the session's reaches git, and the clone is the agent's: git runs
# with a git directory of claude-cage's own, over the clone's work tree and objects.
# It reads no config, hooks or info of the session's repository (no system or global
# config either), so no fsmonitor, hook, filter driver, include or other command of
# the agent's choosing runs; the session's HEAD and refs are read as data. Nothing is
# written into the session's repository. A FIFO or a stalled file in the clone can
# still stop it: review_timeout ends that (bounds.py). The export and the check of what
# `destroy` would lose (operations/unfetched.py) share it: `destroy` knows the work is
# fetched when this tip is in the host's cage/NAME.
WORK_TIP = r"""
set -eu
clone=$1 base=$2
real=$clone/.git
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
own=$tmp/git
mkdir -p "$own/objects" "$own/info"
printf '%s\n' "$base" > "$own/HEAD"
if [ -d "$real/refs" ]; then ln -s "$real/refs" "$own/refs"; else mkdir "$own/refs"; fi
[ ! -f "$real/packed-refs" ] || ln -s "$real/packed-refs" "$own/packed-refs"
[ ! -f "$real/info/exclude" ] || head -c 1048576 "$real/info/exclude" > "$own/info/exclude"
export GIT_DIR="$own" GIT_WORK_TREE="$clone" GIT_INDEX_FILE="$tmp/index"
export GIT_OBJECT_DIRECTORY="$own/objects" GIT_ALTERNATE_OBJECT_DIRECTORIES="$real/objects"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_COUNT=3
export GIT_CONFIG_KEY_0=core.fsmonitor GIT_CONFIG_VALUE_0=false
export GIT_CONFIG_KEY_1=core.hooksPath GIT_CONFIG_VALUE_1=/dev/null
export GIT_CONFIG_KEY_2=core.untrackedCache GIT_CONFIG_VALUE_2=false
# The uncommitted work's commit: the session's as author, the user's identity (from the
# host's git config, COMMITTER_*) as committer, dated when its newest change was made.
# The same work always makes the same commit, so `destroy` recognises it once fetched.
export GIT_AUTHOR_NAME=claude-cage GIT_AUTHOR_EMAIL=claude-cage@localhost
export GIT_COMMITTER_NAME="${COMMITTER_NAME:-claude-cage}"
export GIT_COMMITTER_EMAIL="${COMMITTER_EMAIL:-claude-cage@localhost}"
cd "$clone"
want=
[ ! -f "$real/HEAD" ] || want=$(head -c 256 "$real/HEAD" | head -n 1)
want=${want#ref: }
case $want in
    ""|-*|*[!A-Za-z0-9/._@+-]*) head=$base ;;
    *) head=$(git rev-parse -q --verify "$want^{commit}" || printf '%s' "$base") ;;
esac
if ! { [ -f "$real/index" ] && cp "$real/index" "$tmp/index" 2>/dev/null \
        && git ls-files -s >/dev/null 2>&1; }; then
    rm -f "$tmp/index"  # none, or one this git cannot read alone (a split index)
    git read-tree "$head"
fi
git add -A . >&2
tree=$(git write-tree)
if [ "$tree" = "$(git rev-parse "$head^{tree}")" ]; then
    tip=$head
else
    newest=$(git diff-tree -r -z --name-only --diff-filter=d "$head" "$tree" \
        | xargs -0 -r stat -c %Y -- 2>/dev/null | sort -n | tail -n 1)
    when=${newest:-$(git log -1 --format=%ct "$head")}
    export GIT_AUTHOR_DATE="@$when +0000" GIT_COMMITTER_DATE="@$when +0000"
    tip=$(git commit-tree "$tree" -p "$head" -m "Uncommitted work in session $3")
fi
"""

# The export: the tip, then a thin pack of everything since the base $2, with the
# starting point $4 (the user's uncommitted work it began from).
EXPORT = (
    WORK_TIP
    + r"""
printf '%s\n' "$tip"
start=$4
git cat-file -e "$start^{commit}" 2>/dev/null || start=$tip
if git cat-file -e "$base^{commit}" 2>/dev/null; then
    printf '%s\n%s\n^%s\n' "$tip" "$start" "$base" | git pack-objects --revs --thin --stdout -q
else
    printf '%s\n%s\n' "$tip" "$start" | git pack-objects --revs --stdout -q
fi
"""
)


def deliver(
    engine: EngineAPI,
    req: policy.SessionRequest,
    decided: policy.Decisions,
    branch: str,
    snap: Snapshot,
) -> None:
    """Upload the snapshot into the session's workspace volume and check it out there."""
    container = names.container_name(req.name)
    pack_dir = f"{req.clone}/.git/objects/pack"
    entries: list[tuple[str, Path | None]] = [
        (req.clone + d, None) for d in ("", "/.git", "/.git/objects", "/.git/objects/pack")
    ]  # the volume's root takes the owner of its entry: the session's user
    entries += [(f"{pack_dir}/{p.name}", p) for p in (snap.pack.with_suffix(".idx"), snap.pack)]
    _fill(engine, req, decided, names.workspace_volume(req.name), req.clone, entries)
    target = workdir.clone_target(req.clone)
    code, _out, err = engine.exec_output(
        container,
        ["sh", "-c", SETUP, "setup", target, branch, snap.base, snap.work, snap.index],
    )
    if code != 0:
        said = err.decode(errors="replace").strip()[-300:]
        raise EngineError(
            f"could not set up the clone in the session: {said}",
            "check the session image has git ('claude-cage build')",
        )


def own_data_volume(
    engine: EngineAPI, req: policy.SessionRequest, decided: policy.Decisions
) -> None:
    """A new data volume takes the image's owner (uid 1000): give it the session's."""
    if req.persist and (decided.uid, decided.gid) != (policy.SESSION_UID, policy.SESSION_UID):
        volume = names.data_volume(req.name)
        _fill(engine, req, decided, volume, ".claude", [(".claude", None)])


def own_socket_inbox(
    engine: EngineAPI, req: policy.SessionRequest, decided: policy.Decisions
) -> None:
    """The socket volume's in/, where the session serves x11vnc and its --port bridges,
    takes the companion image's owner (uid 1000) in a new volume: give it the session's.
    Call after the companion is created (that fills a new volume) and before the
    session starts. (in/ is 0755: its owner's uid is what counts.)"""
    if decided.uid != policy.SESSION_UID and (req.mode == Mode.DESKTOP or req.ports):
        volume = names.socket_volume(req.name)
        _fill(engine, req, decided, volume, "sock", [("sock/in", None)])


def fill_managed_settings(
    engine: EngineAPI, req: policy.SessionRequest, decided: policy.Decisions, settings: Path
) -> None:
    """Claude Code's managed settings into the session's managed volume, owned by root
    (on a remote engine, which cannot bind this machine's file; see managed.py)."""
    entries = [("claude-code", None), (f"claude-code/{settings.name}", settings)]
    _fill(engine, req, decided, decided.managed_volume, "claude-code", entries, owner=(0, 0))


def _fill(
    engine: EngineAPI,
    req: policy.SessionRequest,
    decided: policy.Decisions,
    volume: str,
    top: str,
    entries: list[tuple[str, Path | None]],
    owner: tuple[int, int] | None = None,
) -> None:
    """Upload entries, owned by the session's user, into a volume mounted at /fill/<top>.

    The engine unpacks an upload only into a writable place, and the session's root is
    read-only. A container that is only created (never started), with the volume at
    /fill/<top>, takes the upload instead, unpacked at the volume's own mount point
    (entries named from there): Podman writes into a volume of a container that is not
    running only there. The volume's root directory takes the owner of `top`'s entry,
    sent twice, as "." there (which Podman applies and Docker skips) and as `top` in
    /fill (which Docker applies to the mount point; Podman writes it in the filler's
    own layer, below the volume, where it goes with the filler).
    """
    mount = f"/fill/{top}"
    filler = policy.ContainerSpec(
        name=names.fill_container(req.name),
        image=req.image,
        role=labels.Role.FILL,
        labels=policy.labels(req, labels.Role.FILL),
        user=f"{decided.uid}:{decided.gid}",
        command=["true"],
        volumes=[{"source": volume, "target": mount}],
        read_only=False,
        network_mode="none",
    )
    engine.remove(filler.name)  # a leftover of a killed run
    engine.create(filler)
    try:
        uid, gid = owner or (decided.uid, decided.gid)
        inside = [(_below(top, name), source) for name, source in entries]
        engine.put_archive(filler.name, mount, tar_stream(inside, uid, gid))
        if (top, None) in entries:
            engine.put_archive(filler.name, "/fill", tar_stream([(top, None)], uid, gid))
    finally:
        with contextlib.suppress(CageError):
            engine.remove(filler.name)


def _below(top: str, name: str) -> str:
    """An entry's name from the volume's mount point: "." for `top` itself."""
    if name == top:
        return "."
    if not name.startswith(top + "/"):
        raise ValueError(f"{name!r} is not in {top!r}")
    return name[len(top) + 1 :]


def tar_stream(entries: list[tuple[str, Path | None]], uid: int, gid: int) -> TarStream:
    """An archive of directories (None) and files, owned by uid:gid, read lazily: the
    files are not copied into a tar file first."""
    parts: list[bytes | Path] = []
    for name, source in entries:
        info = tarfile.TarInfo(name)
        info.uid, info.gid, info.mtime = uid, gid, int(time.time())
        if source is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            parts.append(info.tobuf(tarfile.GNU_FORMAT))
            continue
        info.size, info.mode = source.stat().st_size, 0o444
        parts += [info.tobuf(tarfile.GNU_FORMAT), source, b"\0" * (-info.size % 512)]
    parts.append(b"\0" * 1024)
    return TarStream(parts)


class TarStream:
    """A file-like reader over byte strings and files, with a known length."""

    def __init__(self, parts: list[bytes | Path]) -> None:
        self.parts = parts
        self.length = sum(len(p) if isinstance(p, bytes) else p.stat().st_size for p in parts)

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, bytes):
                yield part
                continue
            with part.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    yield chunk


# --- getting the work out ---------------------------------------------------------------


def clone_meta(ctx: Context, name: str) -> SessionRecord:
    """The session's record, checked to be a clone-mode session (3 / 2 otherwise)."""
    meta = ctx.store.load(name)
    if meta is None:
        raise SessionNotFound(name)
    if not meta.repo_name or not meta.repo or not meta.base:
        raise BadInput(
            f"session {name} has no clone of a repository",
            "diff, fetch, merge and apply work on sessions started with --clone PATH",
        )
    return meta


@contextlib.contextmanager
def reader(ctx: Context, engine: EngineAPI, name: str, meta: SessionRecord) -> Iterator[str]:
    """A running container that sees the clone: the session itself, or, when it is
    stopped, a throwaway one with the session's sandbox and only the clone's volume."""
    container = names.container_name(name)
    info = inspect_ours(engine, container)
    if info is not None and info.running:
        yield container
        return
    volume = names.workspace_volume(name)
    if engine.volume_labels(volume) is None:
        raise CageError(f"the clone of session {name} is gone (volume {volume})")
    quota.ensure_mounted(volume)  # a bounded volume, after a reboot
    cfg = load_config(ctx, StartOptions())
    req, decided = request_from_record(meta, cfg), decisions_from_record(meta)
    spec = policy.session_spec(cfg.values, req, decided, host_facts(cfg))
    throwaway = dataclasses.replace(
        spec,
        name=names.export_container(name),
        hostname=None,
        labels={**spec.labels, labels.ROLE: labels.Role.EXPORT.value},
        environment={"CAGE_BRIDGES": ""},
        volumes=[v for v in spec.volumes if v["source"] == volume],
        binds=[],
        command=["sleep", "300"],
        network_mode="none",
        ports={},
        auto_remove=False,
    )
    engine.remove(throwaway.name)  # a leftover of a killed run
    engine.create(throwaway)
    try:
        engine.start(throwaway.name)
        yield throwaway.name
    finally:
        with contextlib.suppress(CageError):
            engine.remove(throwaway.name)


# The export runs with nothing of the session's environment, and programs by their
# full path: the root filesystem is the image's, read-only; PATH entries may not be.
CLEAN_ENV = ["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=/nonexistent"]


def work_env(meta: SessionRecord) -> list[str]:
    """CLEAN_ENV, with the user's git identity (their repository's user.name and
    user.email) as the committer of the session's uncommitted work."""
    who = hostgit.identity(Path(meta.repo)) if meta.repo else {}
    return [*CLEAN_ENV, *(f"COMMITTER_{k.upper()}={v}" for k, v in who.items())]


TAIL = 4096  # how much of the export's stderr is kept, for the error message


@dataclass
class Export:
    """What the session sent: the commit holding all its work, and a thin pack of it
    since the base, as chunks that arrive while they are read. The chunks end with the
    export's own error if it failed."""

    tip: str
    pack: Iterator[bytes]


@contextlib.contextmanager
def export(
    ctx: Context, engine: EngineAPI, name: str, meta: SessionRecord, bounds: Bounds
) -> Iterator[Export]:
    """Run the export in the session (or its export container) and stream its output,
    within `bounds`; whatever it started is stopped on the way out."""
    assert meta.repo_name and meta.base  # clone_meta checked them
    target = workdir.clone_target(meta.repo_name)
    command = [*work_env(meta), "/bin/sh", "-c", EXPORT, "export", target, meta.base, name,
               meta.start or meta.base]  # fmt: skip
    with reader(ctx, engine, name, meta) as container, _Streamed(engine, container, command) as run:
        chunks = run.stdout(bounds)
        tip, first = _first_line(chunks)
        yield Export(tip, itertools.chain([first] if first else [], chunks))


def _first_line(chunks: Iterator[bytes]) -> tuple[str, bytes]:
    """The commit id the export prints first, and what came after it."""
    held = b""
    for chunk in chunks:
        held += chunk
        if b"\n" in held or len(held) > 64:
            break
    line, newline, rest = held.partition(b"\n")
    if not newline or len(line) > 64:
        raise CageError("the session sent no valid commit id", "see 'claude-cage logs NAME'")
    return line.decode(errors="replace").strip(), rest


class _Streamed:
    """One command in a container, as `cage-exec run` paired with a watch (see
    run.py): stopping it ends its whole process group, not just our end of it."""

    def __init__(self, engine: EngineAPI, container: str, command: list[str]) -> None:
        self.engine = engine
        key = uuid.uuid4().hex
        self.exec_id, self.sock = engine.exec_attach(
            container, ["/usr/local/bin/cage-exec", "run", key, *command]
        )
        self.sock.settimeout(None)  # the review's deadline governs (bounds.py)
        self.watch = Watch(engine, container, key)
        self.err = b""

    def __enter__(self) -> _Streamed:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.watch.signal("TERM")  # the watcher ends what is left of the command
        self.watch.close()
        for _ in range(100):  # so nothing of it outlives this command (at most 5 s)
            with contextlib.suppress(CageError):
                found = self.engine.exec_inspect(self.exec_id)
                if found is None or not found.running:
                    return
            time.sleep(0.05)

    def stdout(self, bounds: Bounds) -> Iterator[bytes]:
        """Its stdout as it comes, counted against the bounds; the tail of its stderr
        kept. Ends with an error if the bounds were passed or the command failed."""

        def read(size: int) -> bytes:
            data = self.sock.recv(size)
            bounds.count(len(data))
            return data

        with bounds.stopping(lambda: self.sock.shutdown(socket.SHUT_RDWR)):
            try:
                for out, err in demux(read):
                    if err:
                        self.err = (self.err + err)[-TAIL:]
                    if out:
                        yield out
            except OSError as exc:
                bounds.check()
                raise CageError(f"lost the session's work on the way ({exc})") from None
        bounds.check()
        if self.engine.exit_code(self.exec_id) != 0:
            raise CageError(
                "could not read the session's work: "
                + self.err.decode(errors="replace").strip()[-300:],
                f"look inside with 'claude-cage shell {bounds.name}'",
            )


def host_repo(meta: SessionRecord) -> Path:
    top = Path(meta.repo or "")
    if not (top / ".git").exists():
        raise BadInput(
            f"the session's repository {top} is gone",
            "the work is still in the session: 'claude-cage shell NAME'",
        )
    return top
