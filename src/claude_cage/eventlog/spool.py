"""Events the database cannot take now (locked past its busy timeout, full, its WAL
lost) wait in a spool beside it, `events.sqlite3.spool`: one JSON line per event (its
row, secrets already redacted), appended and fsynced under the spool's lock, readable by
its owner alone, at most MAX_BYTES. The next write to the log, and the next read, move
them into the database before anything else; `events --status` counts what waits.

A drain is safe against crashes and against other processes. One drainer at a time (a
lock of its own, never waited for: another drainer is already at it) renames the spool
aside, `.spool.draining`, under the spool's lock, so no append lands in the renamed
file; then inserts its rows with INSERT OR IGNORE (an event's `id` is unique: a drain cut
short and done again writes nothing twice), commits, and only then deletes the file.
A spooled event gets its `seq` when it is drained; its `_ts` is when it happened.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from claude_cage.detach import try_lock, unlock

MAX_BYTES = 4 * 1024**2
ROW_FIELDS = 9  # the columns of event_schema.INSERT
INSERT_IGNORE = (
    "INSERT OR IGNORE INTO events"
    " (id, type, key, session, status, value_json, ts, host, project)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def spool_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".spool")


def _draining(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".spool.draining")


def _drain_lock(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".spool.lock")


def append(db_path: Path, row: tuple[Any, ...]) -> None:
    """Keep one event's row; raises OSError when it cannot (the spool is full, say)."""
    path = spool_path(db_path)
    line = (json.dumps(list(row)) + "\n").encode()
    for _ in range(100):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                continue  # renamed by a drainer meanwhile: append to a new spool
            held = os.fstat(fd)
            if held.st_ino != current:
                continue
            if held.st_size + len(line) > MAX_BYTES:
                raise OSError(f"the event spool {path} is full ({MAX_BYTES} bytes)")
            os.write(fd, line)
            os.fsync(fd)
            return
        finally:
            os.close(fd)  # releases the lock
    raise OSError(f"the event spool {path} kept moving")


def waiting(db_path: Path) -> int:
    """How many events wait in the spool (lines; a cut-short last line counts too)."""
    count = 0
    for path in (spool_path(db_path), _draining(db_path)):
        with contextlib.suppress(OSError):  # gone, or not a file: nothing to count
            data = path.read_bytes()
            count += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return count


def pending(db_path: Path) -> bool:
    """Cheap: two stats."""
    return spool_path(db_path).exists() or _draining(db_path).exists()


def drain(db_path: Path, db: sqlite3.Connection) -> int:
    """Move the spooled events into the database (`db` in autocommit mode, no transaction
    open); how many were written. SQLite's errors pass through, and the spool stays."""
    lock = try_lock(_drain_lock(db_path))
    if lock is None:
        return 0  # another process is draining it
    try:
        draining = _draining(db_path)
        if not draining.exists():
            _set_aside(spool_path(db_path), draining)
        try:
            data = draining.read_bytes()
        except FileNotFoundError:
            return 0
        rows = [row for row in map(_row, data.splitlines()) if row is not None]
        db.execute("BEGIN IMMEDIATE")
        try:
            written = sum(db.execute(INSERT_IGNORE, row).rowcount for row in rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        draining.unlink(missing_ok=True)
        return written
    finally:
        unlock(lock)


def _set_aside(spool: Path, draining: Path) -> None:
    try:
        fd = os.open(spool, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # no append is halfway through
        with contextlib.suppress(FileNotFoundError):
            if os.stat(spool).st_ino == os.fstat(fd).st_ino:
                os.rename(spool, draining)
    finally:
        os.close(fd)


def _row(line: bytes) -> tuple[Any, ...] | None:
    """A spooled row; None for a line that is not one (cut short by a crash, damaged):
    what is written must read back as an event."""
    try:
        row = json.loads(line)
        if not isinstance(row, list) or len(row) != ROW_FIELDS:
            return None
        if not all(v is None or isinstance(v, str) for v in row):
            return None
        for value in row:  # a lone surrogate SQLite cannot store (an older version's)
            if value is not None:
                value.encode("utf-8")
        if not all(row[i] for i in (0, 1, 2, 6)):  # id, type, key, ts
            return None
        if not isinstance(json.loads(row[5]), dict):  # value_json
            return None
    except (ValueError, TypeError):
        return None
    return tuple(row)
