"""Clone mode in the engine: fill a session's workspace volume with the user's repository,
and get the session's work back out, running or stopped.

Everything crosses through the engine's API (an archive upload in, an exec's stdout
out), never a bind mount, so it works the same against a remote engine. The git that
runs inside is the session's own, under the session's sandbox; what comes out of it is
untrusted data that `workspace.quarantine` checks before the host's git reads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from claude_cage import labels, metadata, names, policy, quota, workdir
from claude_cage.engine_api import EngineAPI
from claude_cage.errors import BadInput, CageError, EngineError, SessionNotFound
from claude_cage.kinds import Mode
from claude_cage.operations.inputs import StartOptions, host_facts, load_config, request_from_record
from claude_cage.operations.objects import inspect_ours
from claude_cage.record import SessionRecord
from claude_cage.workspace import Snapshot

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

# Runs in the session (or in its export container when it is stopped), in the clone $1
# whose base is $2: sets $head and $tip, the commit holding all the work (HEAD, plus one
# commit for uncommitted changes, made with a fixed identity and date so that the same
# work always makes the same commit). Nothing is written into the session's repository.
# The export and the check of what `destroy` would lose (operations/unfetched.py) share
# it: `destroy` knows the work is fetched when this tip is in the host's cage/NAME.
WORK_TIP = r"""
set -eu
cd "$1"
base=$2
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_COUNT=2
export GIT_CONFIG_KEY_0=core.fsmonitor GIT_CONFIG_VALUE_0=false
export GIT_CONFIG_KEY_1=core.hooksPath GIT_CONFIG_VALUE_1=/dev/null
objects=$(git rev-parse --path-format=absolute --git-path objects)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp .git/index "$tmp/index" 2>/dev/null || :
export GIT_INDEX_FILE="$tmp/index" GIT_OBJECT_DIRECTORY="$tmp/objects"
export GIT_ALTERNATE_OBJECT_DIRECTORIES="$objects"
export GIT_AUTHOR_NAME=claude-cage GIT_AUTHOR_EMAIL=claude-cage@localhost
export GIT_COMMITTER_NAME=claude-cage GIT_COMMITTER_EMAIL=claude-cage@localhost
export GIT_AUTHOR_DATE="@0 +0000" GIT_COMMITTER_DATE="@0 +0000"
mkdir -p "$tmp/objects"
head=$(git rev-parse -q --verify 'HEAD^{commit}' || echo "$base")
git add -A . >&2
tree=$(git write-tree)
if [ "$tree" = "$(git rev-parse "$head^{tree}")" ]; then
    tip=$head
else
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


def deliver(engine: EngineAPI, req: policy.SessionRequest, branch: str, snap: Snapshot) -> None:
    """Upload the snapshot into the session's workspace volume and check it out there."""
    container = names.container_name(req.name)
    pack_dir = f"{req.clone}/.git/objects/pack"
    entries: list[tuple[str, Path | None]] = [
        (req.clone + d, None) for d in ("", "/.git", "/.git/objects", "/.git/objects/pack")
    ]  # the volume's root takes the owner of its entry: the session's user
    entries += [(f"{pack_dir}/{p.name}", p) for p in (snap.pack.with_suffix(".idx"), snap.pack)]
    _fill(engine, req, names.workspace_volume(req.name), req.clone, entries)
    target = workdir.clone_target(req.clone)
    code, _out, err = engine.exec_output(
        container,
        ["sh", "-c", SETUP, "setup", target, branch, snap.base, snap.work, snap.index],
    )
    if code != 0:
        raise EngineError(
            f"could not set up the clone in the session: {err.decode(errors='replace')[-300:]}",
            "check the session image has git ('claude-cage build')",
        )


def own_data_volume(engine: EngineAPI, req: policy.SessionRequest) -> None:
    """A new data volume takes the image's owner (uid 1000): give it the session's."""
    if req.persist and (req.uid, req.gid) != (policy.SESSION_UID, policy.SESSION_UID):
        _fill(engine, req, names.data_volume(req.name), ".claude", [(".claude", None)])


def own_socket_inbox(engine: EngineAPI, req: policy.SessionRequest) -> None:
    """The socket volume's in/, where the session serves x11vnc and its --port bridges,
    takes the companion image's owner (uid 1000) in a new volume: give it the session's.
    Call after the companion is created (that fills a new volume) and before the
    session starts. (in/ is 0755: its owner's uid is what counts.)"""
    if req.uid != policy.SESSION_UID and (req.mode == Mode.DESKTOP or req.ports):
        _fill(engine, req, names.socket_volume(req.name), "sock", [("sock/in", None)])


def fill_managed_settings(engine: EngineAPI, req: policy.SessionRequest, settings: Path) -> None:
    """Claude Code's managed settings into the session's managed volume, owned by root
    (on a remote engine, which cannot bind this machine's file; see managed.py)."""
    entries = [("claude-code", None), (f"claude-code/{settings.name}", settings)]
    _fill(engine, req, req.managed_volume, "claude-code", entries, owner=(0, 0))


def _fill(
    engine: EngineAPI,
    req: policy.SessionRequest,
    volume: str,
    top: str,
    entries: list[tuple[str, Path | None]],
    owner: tuple[int, int] | None = None,
) -> None:
    """Upload entries, owned by the session's user, into a volume mounted at /fill/<top>.

    The engine unpacks an upload only into a writable place, and the session's root is
    read-only. A container that is only created (never started), with the volume one
    level down, takes the upload instead: that way the volume's root directory gets its
    owner too.
    """
    filler = policy.ContainerSpec(
        name=names.fill_container(req.name),
        image=req.image,
        role=labels.Role.FILL,
        labels=policy.labels(req, labels.Role.FILL),
        user=f"{req.uid}:{req.gid}",
        command=["true"],
        volumes=[{"source": volume, "target": f"/fill/{top}"}],
        read_only=False,
        network_mode="none",
    )
    engine.remove(filler.name)  # a leftover of a killed run
    engine.create(filler)
    try:
        uid, gid = owner or (req.uid, req.gid)
        engine.put_archive(filler.name, "/fill", tar_stream(entries, uid, gid))
    finally:
        with contextlib.suppress(CageError):
            engine.remove(filler.name)


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


def clone_meta(name: str) -> SessionRecord:
    """The session's record, checked to be a clone-mode session (3 / 2 otherwise)."""
    meta = metadata.SessionStore().load(name)
    if meta is None:
        raise SessionNotFound(name)
    if not meta.repo_name or not meta.repo or not meta.base:
        raise BadInput(
            f"session {name} has no clone of a repository",
            "diff, fetch, merge and apply work on sessions started with --clone PATH",
        )
    return meta


@contextlib.contextmanager
def reader(engine: EngineAPI, name: str, meta: SessionRecord) -> Iterator[str]:
    """A running container that sees the clone: the session itself, or, when it is
    stopped, a throwaway one with the session's sandbox and only the clone's volume."""
    container = names.container_name(name)
    info = inspect_ours(engine, container)
    if info is not None and info["State"]["Running"]:
        yield container
        return
    volume = names.workspace_volume(name)
    if engine.volume_labels(volume) is None:
        raise CageError(f"the clone of session {name} is gone (volume {volume})")
    quota.ensure_mounted(volume)  # a bounded volume, after a reboot
    cfg = load_config(StartOptions())
    req = request_from_record(meta, cfg)
    spec = policy.session_spec(cfg.values, req, host_facts(cfg))
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


def export(engine: EngineAPI, name: str, meta: SessionRecord) -> tuple[str, bytes]:
    """(the commit holding all the session's work, a thin pack of it since the base)."""
    assert meta.repo_name and meta.base  # clone_meta checked them
    target = workdir.clone_target(meta.repo_name)
    with reader(engine, name, meta) as container:
        code, out, err = engine.exec_output(
            container,
            [
                "sh",
                "-c",
                EXPORT,
                "export",
                target,
                meta.base,
                name,
                meta.start or meta.base,
            ],
        )
    if code != 0:
        raise CageError(
            f"could not read the session's work: {err.decode(errors='replace').strip()[-300:]}",
            f"look inside with 'claude-cage shell {name}'",
        )
    tip, _, pack = out.partition(b"\n")
    return tip.decode(errors="replace").strip(), pack


def host_repo(meta: SessionRecord) -> Path:
    top = Path(meta.repo or "")
    if not (top / ".git").exists():
        raise BadInput(
            f"the session's repository {top} is gone",
            "the work is still in the session: 'claude-cage shell NAME'",
        )
    return top
