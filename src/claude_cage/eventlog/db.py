"""The event log's SQLite file: opened in WAL mode with a busy timeout (several CLI
processes write at once), read without writing anything on a read-only filesystem, and
moved aside, with its WAL, when it is damaged. Nothing in a damaged file is deleted."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

_T = TypeVar("_T")

BUSY_TIMEOUT_S = 10.0
WAL_PAGES = 128
WAL_BYTES = 512 * 1024
# What SQLite says about a file that is not (or no longer) a database.
_DAMAGE = ("not a database", "malformed")


def open_db(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (the log opens its own transactions); the file is
    created readable by its owner alone."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        ensure_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")
        # The WAL is disk the host holds too: checkpoint every WAL_PAGES pages, not
        # SQLite's 1000, and cut the file back to WAL_BYTES after each checkpoint.
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        db.execute(f"PRAGMA journal_size_limit = {WAL_BYTES}")
    except BaseException:
        db.close()
        raise
    return db


def ensure_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL once. The switch needs an exclusive lock and, unlike ordinary
    writes, can fail with "database is locked" at once when other processes are
    opening the new database too, so it is retried for up to the busy timeout."""
    if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
        if time.monotonic() > deadline:
            return  # still usable in rollback-journal mode, with the busy timeout
        time.sleep(0.01)


def read_only(path: Path, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run `work` on a connection that writes nothing (a read-only or full filesystem).
    With no WAL left, or an empty one, everything is in the database file, which is read
    as is (a reader of a WAL needs a shared-memory file it may not be able to make)."""
    wal = Path(f"{path}-wal")
    try:
        in_wal = wal.stat().st_size > 0
    except OSError:
        in_wal = False
    mode = "ro" if in_wal else "ro&immutable=1"
    db = sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True)
    try:
        return work(db)
    finally:
        db.close()


def looks_damaged(path: Path, exc: BaseException) -> bool:
    """Damage, as opposed to a busy, full or read-only database (those pass)."""
    if path.is_dir():
        return True
    if "unable to open database file" in str(exc):  # also said of a read-only directory
        return path.exists() and not os.access(path, os.R_OK | os.W_OK)
    return any(sign in str(exc) for sign in _DAMAGE)


def still_damaged(path: Path) -> bool:
    if path.is_dir():
        return True
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return looks_damaged(path, exc)
    return False


def move_aside(path: Path) -> Path | None:
    """Move the damaged database at `path` aside, with its WAL; return where it went, or
    None when it is no longer damaged. Raises OSError when it cannot be moved."""
    guard = path.with_name(path.name + ".repair.lock")
    fd = os.open(guard, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Another process may have repaired it meanwhile: move only what is still
        # damaged, never the new database it started.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not still_damaged(path):
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        os.rename(path, aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{path}{suffix}", f"{aside}{suffix}")
    finally:
        os.close(fd)
    return aside
