"""Read-write bind mounts: who the session runs as, and what of a mounted git repository
stays read-only.

A session with read-write mounts runs as the uid:gid that owns them, so the agent can
write there and what it writes belongs to the user. They must all have one owner, and
that owner may not be root: a session never runs as uid 0. Inside a mounted repository
(or one held by a mounted directory), the session commits into a git directory of its
own, and what the host's git reads stays out of its reach (gitdirs.py).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from claude_cage import gitdirs
from claude_cage.errors import BadInput
from claude_cage.record import Mount, SessionRecord
from claude_cage.workdir import COMPANION_UID

if TYPE_CHECKING:
    from claude_cage.engine import answers

DEFAULT_UID = 1000  # the image's user, for sessions without read-write mounts
SEARCH_DEPTH = 3  # how deep below a mount to look for repositories
SKIP = {"node_modules", ".venv", "venv", "__pycache__", "target", "dist", "build"}


def session_user(mounts: Sequence[Mount]) -> tuple[int, int]:
    """The uid:gid a session with these mounts runs as."""
    owners: dict[tuple[int, int], list[str]] = {}
    for mount in mounts:
        if mount.read_only:
            continue
        info = os.stat(mount.source)
        owners.setdefault((info.st_uid, info.st_gid), []).append(mount.source)
    if not owners:
        return DEFAULT_UID, DEFAULT_UID
    if len(owners) > 1:
        listing = "; ".join(
            f"{', '.join(paths)} is owned by {uid}:{gid}" for (uid, gid), paths in owners.items()
        )
        raise BadInput(
            f"read-write mounts with different owners: {listing}",
            "mount directories of one owner read-write, the others with :ro",
        )
    (uid, gid), paths = next(iter(owners.items()))
    if uid == 0:
        raise BadInput(
            f"{', '.join(paths)} is owned by root, and a session never runs as root",
            "use --clone for a git repository, mount it read-only (PATH:ro), or chown it to a user",
        )
    if uid == COMPANION_UID:  # the session would own what its companion writes
        raise BadInput(
            f"{', '.join(paths)} is owned by uid {uid}, the companion's own user, "
            "which a session never runs as",
            "use --clone for a git repository, mount it read-only (PATH:ro), or chown it to a user",
        )
    return uid, gid


def _git_dirs(root: Path) -> list[Path]:
    """`.git` entries (directories or worktree files) at most SEARCH_DEPTH below root."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        if ".git" in dirnames or ".git" in filenames:
            found.append(here / ".git")
        dirnames[:] = [
            d for d in dirnames if d != ".git" and d not in SKIP and depth < SEARCH_DEPTH
        ]
    return found


def protections(mounts: Sequence[Mount], home: Path) -> list[Mount]:
    """The binds that keep the host's git from reading anything the session writes, for
    every repository in a read-write mount (gitdirs.py); the session's own git
    directories are made under home, once."""
    binds: list[Mount] = []
    for mount in mounts:
        if mount.read_only:
            continue
        plan = gitdirs.Plan(Path(os.path.realpath(mount.source)), mount.target, home)
        # `.git` directories first: a `.git` file may name a git directory inside one
        found = sorted(_git_dirs(plan.root), key=lambda p: (p.is_file(), p))
        for dot_git in found:
            gitdirs.add_repository(plan, dot_git.parent)
        if not any(p.parent == plan.root for p in found):
            gitdirs.pin_root(plan)
        for host, copy, view in plan.copies:
            gitdirs.make_copy(host, copy, view)
        binds += plan.binds
    return binds


def writable_by(path: str, uid: int, gid: int) -> bool:
    """Whether uid:gid may write the directory (its mode bits; ACLs aside)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    mode = info.st_mode
    if info.st_uid == uid:
        return bool(mode & stat.S_IWUSR)
    if info.st_gid == gid:
        return bool(mode & stat.S_IWGRP)
    return bool(mode & stat.S_IWOTH)


def unwritable(session: SessionRecord) -> tuple[str, list[str]]:
    """(the session's uid:gid, its read-write mounts that uid cannot write)."""
    uid = session.uid or DEFAULT_UID
    gid = session.gid or DEFAULT_UID
    bad = [
        m.source for m in session.mounts if not m.read_only and not writable_by(m.source, uid, gid)
    ]
    return f"{uid}:{gid}", bad


def protected_paths(binds: Sequence[answers.Mount]) -> list[str]:
    """What keeps the host's git apart, among a container's mounts (its inspect): the
    session's own git directories and the read-only binds below a read-write mount."""
    found = []
    for bind in binds:
        if bind.type != "bind" or bind.destination.startswith(gitdirs.HOST_VIEW + "/"):
            continue
        holder = next(
            (b for b in binds if b.writable and _below(bind.destination, b.destination)),
            None,
        )
        if holder is None:
            continue
        rel = bind.destination[len(holder.destination) :]
        pinned = bind.writable and bind.source == holder.source + rel
        if not pinned:
            found.append(bind.destination)
    return sorted(found)


def _below(path: str, top: str) -> bool:
    return path.startswith(top.rstrip("/") + "/") and top.count("/") == 2
