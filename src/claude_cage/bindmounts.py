"""Read-write bind mounts: who the session runs as, and what of a mounted git repository
stays read-only.

A session with read-write mounts runs as the uid:gid that owns them, so the agent can
write there and what it writes belongs to the user. They must all have one owner, and
that owner may not be root: a session never runs as uid 0. Inside a mounted repository
(or one held by a mounted directory), `.git/config`, `.git/hooks` and `.git/info` are
bound read-only over themselves, so the agent can commit but cannot change what git runs
on the host (hooks, `core.fsmonitor`, filters, `info/attributes`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from claude_cage.errors import BadInput
from claude_cage.record import Mount, SessionRecord

DEFAULT_UID = 1000  # the image's user, for sessions without read-write mounts
PROTECTED = ("config", "hooks", "info")
SEARCH_DEPTH = 3  # how deep below a mount to look for repositories
SKIP = {"node_modules", ".venv", "venv", "__pycache__", "target", "dist", "build"}


def session_user(mounts: list[Mount]) -> tuple[int, int]:
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


def _modules(git_dir: Path) -> list[Path]:
    """Submodules' git directories under .git/modules (their hooks run on the host too)."""
    modules = git_dir / "modules"
    if not modules.is_dir():
        return []
    return sorted(p.parent for p in modules.rglob("config") if (p.parent / "HEAD").exists())


def protections(mounts: list[Mount]) -> list[Mount]:
    """Read-only binds over the git control files of every read-write mounted repository.

    Missing `hooks` or `info` directories are created first (empty, as `git init` makes
    them): a directory that does not exist cannot be bound, and the agent could create it.
    """
    binds: list[Mount] = []
    for mount in mounts:
        if mount.read_only:
            continue
        root = Path(mount.source)
        for dot_git in _git_dirs(root):
            inside = mount.target + "/" + str(dot_git.relative_to(root))
            # A mount point cannot be renamed or removed: bound over themselves (still
            # read-write), `.git` and the directories above it up to the mount stay where
            # the host's git will look, so no other `.git` can take their place.
            for step in reversed(dot_git.relative_to(root).parents[:-1]):
                binds.append(Mount(str(root / step), f"{mount.target}/{step}", False))
            if dot_git.is_dir():
                binds.append(Mount(str(dot_git), inside, False))
            if not dot_git.is_dir():  # a worktree's `.git` file: it says where git looks
                binds.append(Mount(str(dot_git), inside, True))
                continue
            for git_dir in [dot_git, *_modules(dot_git)]:
                target = mount.target + "/" + str(git_dir.relative_to(root))
                for entry in PROTECTED:
                    path = git_dir / entry
                    if entry != "config" and not path.exists():
                        path.mkdir(mode=0o755)
                        os.chown(path, *_owner(git_dir))
                    if path.exists() and not path.is_symlink():
                        binds.append(Mount(str(path), f"{target}/{entry}", True))
    return binds


def _owner(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid


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


def protected_paths(binds: list[dict[str, Any]]) -> list[str]:
    """The git control files bound read-only among a container's mounts (its inspect)."""
    return sorted(
        b["Destination"]
        for b in binds
        if b.get("Type") == "bind"
        and not b.get("RW", True)
        and ("/.git/" in b["Destination"] or b["Destination"].endswith("/.git"))
    )
