"""Size limits for a session's volumes: each one is a loop-mounted ext4 image.

Docker's local volume driver cannot bound a plain volume on this engine (overlay2 on
ext4, no project quotas), but it can bind a directory: `type=none, o=bind, device=DIR`.
So each bounded volume is an ext4 filesystem in a sparse image file, `mkfs.ext4` and
`mount -o loop` from Debian's e2fsprogs and util-linux, mounted at DIR under the data
directory. Writing past its size gives the agent ENOSPC, and the host loses at most that
much space. Mounting needs root: run as another user, claude-cage makes plain volumes
and `start` says so. A mount that is gone (after a reboot) is made again at every start,
before the engine binds the directory.

`volumes/` and each `volumes/<volume>/` are 0700: a mounted filesystem's root belongs to
the session's uid and the socket volume's sockets are 0666 (x11vnc's, the proxy's), so
another local user who could walk down to `mnt` would reach the session's files and its
sockets (the desktop's VNC server without the websocket token) whatever the data
directory's own mode. Only the engine (root) needs the path, to bind it.

    <data dir>/volumes/<volume>/fs.img   the filesystem image (sparse)
    <data dir>/volumes/<volume>/mnt      where it is mounted; the volume binds this
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from claude_cage import paths
from claude_cage.config import parse_size
from claude_cage.errors import CageError

UNBOUNDED_HINT = (
    "volume size limits (workspace_size, data_size) need claude-cage to run as root: "
    "this session's volumes are unbounded"
)


def available() -> bool:
    """Root, a local engine, and the tools: the only case where limits can be made."""
    host = os.environ.get("DOCKER_HOST", "")
    local = not host or host.startswith("unix://")
    tools = all(shutil.which(t) for t in ("mkfs.ext4", "mount", "umount"))
    return os.geteuid() == 0 and local and tools


def _dir(volume: str) -> Path:
    return paths.data_dir() / "volumes" / volume


def _private(where: Path) -> None:
    """`volumes/` and `volumes/<volume>/`, 0700 (also when an older version made them
    0755): no other local user walks down to the mounted filesystem."""
    for directory in (where.parent, where):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)


def _run(*argv: str) -> None:
    run = subprocess.run(list(argv), capture_output=True, text=True)
    if run.returncode != 0:
        why = (run.stderr or run.stdout).strip().splitlines()
        raise CageError(
            f"{argv[0]} failed: {why[-1] if why else 'exit ' + str(run.returncode)}",
            "set workspace_size and data_size to 0 to make plain volumes, "
            "and check 'claude-cage doctor'",
        )


def prepare(volume: str, size: str, uid: int, gid: int) -> dict[str, str] | None:
    """Make (or mount again) the bounded filesystem for a volume; the driver options for
    the engine's volume, or None when it stays a plain volume."""
    if not parse_size(size) or not available():
        return None
    where = _dir(volume)
    image, mnt = where / "fs.img", where / "mnt"
    _private(where)
    if not image.exists():
        mnt.mkdir(exist_ok=True, mode=0o700)
        with image.open("wb") as handle:
            handle.truncate(parse_size(size))  # sparse: the host pays for what is written
        # No reserved blocks, the session's user owns the root, lazy init: fast to make.
        _run(
            "mkfs.ext4", "-q", "-F", "-m", "0", "-L", volume[:16],
            "-E", f"root_owner={uid}:{gid},lazy_itable_init=1,lazy_journal_init=1", str(image),
        )  # fmt: skip
    ensure_mounted(volume)
    return {"type": "none", "o": "bind", "device": str(mnt)}


def ensure_mounted(volume: str) -> None:
    """Mount the volume's filesystem if it has one and it is not mounted (a reboot)."""
    where = _dir(volume)
    image, mnt = where / "fs.img", where / "mnt"
    if not image.exists():
        return
    _private(where)
    if os.path.ismount(mnt):
        return
    _run("mount", "-o", "loop,nodev,nosuid", str(image), str(mnt))
    with contextlib.suppress(OSError):
        (mnt / "lost+found").rmdir()  # an empty volume: the engine copies the image's files


def release(volume: str) -> None:
    """Unmount and delete a volume's filesystem (after the engine removed the volume)."""
    where = _dir(volume)
    if not where.exists():
        return
    mnt = where / "mnt"
    if os.path.ismount(mnt):
        _run("umount", str(mnt))
    shutil.rmtree(where, ignore_errors=True)


def filesystems() -> list[str]:
    """The volumes that have a bounded filesystem under this data directory."""
    root = paths.data_dir() / "volumes"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def release_all(data_dir: Path) -> None:
    """Unmount every bounded volume under a data directory (tests, benchmarks)."""
    for mnt in sorted((data_dir / "volumes").glob("*/mnt")):
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    shutil.rmtree(data_dir / "volumes", ignore_errors=True)


def usage(volume: str) -> tuple[int, int] | None:
    """(bytes used, bytes in all) of a bounded volume; None for a plain one."""
    mnt = _dir(volume) / "mnt"
    if not os.path.ismount(mnt):
        return None
    stat = os.statvfs(mnt)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize, stat.f_blocks * stat.f_frsize
