"""Start one of claude-cage's background processes (the event log's flusher, the egress
audit's follower): `python -m MODULE ARGS` detached from the command that starts it, and
the lock that keeps each to one process per data directory."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def spawn(module: str, args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `module` and return at once. It runs in a session of its own (a Ctrl-C or a
    closed terminal does not reach it), with no standard streams and `/` as its working
    directory, so it holds nothing of the caller's open. `env` is added to this process's
    environment (secrets go there: argv is visible to `ps`), and this package comes first
    on its PYTHONPATH, so it runs the same code as its caller."""
    full = dict(os.environ, **env)
    package_parent = str(Path(__file__).resolve().parent.parent)
    full["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_parent, full.get("PYTHONPATH", "")) if p
    )
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        cwd="/",
        env=full,
    )


def try_lock(path: Path) -> int | None:
    """A background process's lock, taken without waiting: its descriptor, or None if
    another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
