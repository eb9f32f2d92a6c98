"""The event log's mirror in MongoDB: pending events go out from SQLite, in order.

Every event is written to SQLite first (`synced = 0`: the outbox). When a MongoDB URI is
configured, `EventLog.record()` calls `kick()`, which starts a detached flusher process
(`python -m claude_cage.eventlog sync DB --background`, URI in its environment, never in
argv) and returns at once. The flusher takes a non-blocking `flock` next to the DB, so
only one runs at a time, and sends pending events in `seq` order as upserts keyed by
`_id`, so a resend never stores an event twice. If MongoDB is down, events stay pending
and go out, in order, with a later sync.

A folded event (folds.py) is rewritten as its count grows: same `id`, a new `seq`,
pending again. The flusher marks sent only the `seq`s it read, so a rewrite made while
it sends goes out with the next pass, and the mirror's last replace is the last count.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_cage import detach
from claude_cage.detach import try_lock, unlock
from claude_cage.errors import CageError
from claude_cage.eventlog import schema

if TYPE_CHECKING:
    from claude_cage.eventlog.events import EventLog

DEFAULT_MONGODB_DB = "claude_cage"
COLLECTION = "events"
URI_ENV = "MONGODB_URI"
SPAWN_MARKER_STALE_S = 5.0
SYNC_BATCH = 500
MAX_ERROR_CHARS = 500


class EventSyncError(CageError):
    """Events could not be sent to MongoDB; they stay pending for the next sync."""

    hint = (
        "the events stay pending in SQLite and go out with the next sync; "
        "check that MongoDB answers at the configured URI"
    )


# Detached flushers this process started: kept so they are reaped, never waited for.
_FLUSHERS: list[subprocess.Popen[bytes]] = []


def kick(log: EventLog) -> bool:
    """Start a detached flusher unless one is running or starting; True if started.

    Never raises and never waits on MongoDB: the flusher is a separate process in its
    own session, with the URI in its environment (argv is visible to `ps`).

    Call it after committing events. It skips the spawn when (a) a flusher holds the
    lock: that one looks for pending events again after unlocking, so it sends what
    was committed before; or (b) a flusher was spawned and has not started yet (the
    spawn marker, which a flusher removes before it takes the lock, is there and
    fresh): that one takes the lock after this commit. So a burst of records starts
    one flusher, not one each, and no committed event is left without a flusher.
    """
    if not log.mongodb_uri or not sys.executable:
        return False
    try:
        fd = try_lock(log.lock_path)
        if fd is None:
            return False
        unlock(fd)
        marker = log.spawn_marker_path
        with contextlib.suppress(FileNotFoundError):
            if time.time() - marker.stat().st_mtime < SPAWN_MARKER_STALE_S:
                return False
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600))
        os.utime(marker)
        for proc in list(_FLUSHERS):
            if proc.poll() is not None:
                _FLUSHERS.remove(proc)
        args = [
            "sync",
            str(log.db_path),
            "--mongodb-db",
            log.mongodb_db,
            "--timeout-ms",
            str(log.sync_timeout_ms),
            "--background",
        ]
        # claude_cage.eventlog is the flusher's entry point (it builds the EventLog)
        _FLUSHERS.append(detach.spawn("claude_cage.eventlog", args, {URI_ENV: log.mongodb_uri}))
        return True
    except Exception as exc:
        with contextlib.suppress(OSError):
            log.spawn_marker_path.unlink()
        log.warn("could not start the event flusher", exc)
        return False


def sync(log: EventLog, timeout_ms: int, lock_timeout: float | None) -> int:
    """Send pending events to MongoDB, in order; return how many were sent (see
    EventLog.sync). SQLite's errors pass through."""
    if not log.mongodb_uri:
        raise EventSyncError(
            "no MongoDB URI is configured; events are kept in SQLite only",
            "configure a MongoDB URI to mirror events",
        )
    if lock_timeout is None:
        lock_timeout = max(10.0, 3 * timeout_ms / 1000)
    deadline = time.monotonic() + lock_timeout
    fd = try_lock(log.lock_path)
    while fd is None:
        if time.monotonic() > deadline:
            raise EventSyncError("another event sync is still running; try again shortly")
        time.sleep(0.05)
        fd = try_lock(log.lock_path)
    try:
        return _sync_locked(log, timeout_ms)
    finally:
        unlock(fd)


def flush(log: EventLog, timeout_ms: int) -> int:
    """The detached flusher's job: sync if no one else is; swallow every error.

    After unlocking it looks again for pending events, so an event whose recorder saw
    the lock taken (and started no flusher) still goes out now.
    """
    with contextlib.suppress(OSError):
        log.spawn_marker_path.unlink()
    sent = 0
    for _ in range(20):
        fd = try_lock(log.lock_path)
        if fd is None:
            break
        try:
            sent += _sync_locked(log, timeout_ms)
        except Exception:
            return sent
        finally:
            unlock(fd)
        try:
            if log.pending() == 0:
                break
        except Exception:
            break
    return sent


def _sync_locked(log: EventLog, timeout_ms: int) -> int:
    assert log.mongodb_uri
    # One connection for the whole sync: no transaction stays open across the calls
    # to MongoDB (so writers are never blocked), and recorders closing their own
    # connections meanwhile do not each pay for a WAL checkpoint.
    with log.connect() as db:
        top = db.execute("SELECT MAX(seq) FROM events WHERE synced = 0").fetchone()[0]
        if top is None:
            return 0
        sent = 0
        client: Any = None
        try:
            # start-up: pymongo costs some 70 ms; only a sync talks to MongoDB
            from pymongo import MongoClient, ReplaceOne

            client = MongoClient(
                log.mongodb_uri,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                socketTimeoutMS=max(10_000, 5 * timeout_ms),
                appname=schema.PROJECT,
            )
            collection = client[log.mongodb_db][COLLECTION]
            after = 0
            while True:
                rows = db.execute(
                    f"SELECT {schema.COLUMNS} FROM events WHERE synced = 0 AND seq > ?"
                    " AND seq <= ? ORDER BY seq LIMIT ?",
                    (after, top, SYNC_BATCH),
                ).fetchall()
                if not rows:
                    break
                docs = [schema.row_event(r) for r in rows]
                collection.bulk_write(
                    [
                        ReplaceOne({"_id": d["id"]}, {"_id": d["id"], **d}, upsert=True)
                        for d in docs
                    ],
                    ordered=True,
                )
                first, after = rows[0][0], rows[-1][0]
                # marked sent and last_sync in one transaction: status() never sees
                # the one without the other
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(
                        "UPDATE events SET synced = 1 WHERE seq BETWEEN ? AND ? AND synced = 0",
                        (first, after),
                    )
                    schema.set_state(
                        db, last_sync=schema.now(), last_error=None, last_error_at=None
                    )
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                sent += len(rows)
        except Exception as exc:
            message = log.mask(f"{type(exc).__name__}: {exc}").splitlines()[0]
            # pymongo appends the whole topology description: keep the gist
            message = message.split(", Topology Description:", 1)[0]
            if len(message) > MAX_ERROR_CHARS:
                message = message[: MAX_ERROR_CHARS - 3] + "..."
            with contextlib.suppress(Exception):
                schema.set_state(db, last_error=message, last_error_at=schema.now())
            raise EventSyncError(
                f"could not sync events to MongoDB ({sent} sent): {message}"
            ) from None
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
    return sent


# --------------------------------------------------------------------------- flusher CLI


def main(argv: list[str], event_log: type[EventLog]) -> int:
    """`python -m claude_cage.eventlog sync DB_PATH [...]`; the URI comes from $MONGODB_URI.
    __main__.py runs it, with its EventLog (which imports this module)."""
    import argparse  # start-up: only the flusher process parses arguments, not every recorder

    parser = argparse.ArgumentParser(prog="python -m claude_cage.eventlog")
    sub = parser.add_subparsers(dest="command", required=True)
    p_sync = sub.add_parser("sync", help="send pending events to MongoDB")
    p_sync.add_argument("db_path", type=Path)
    p_sync.add_argument("--mongodb-db", default=DEFAULT_MONGODB_DB)
    p_sync.add_argument("--timeout-ms", type=int, default=2000)
    p_sync.add_argument(
        "--background",
        action="store_true",
        help="detached flusher: exit at once if another sync runs, report nothing",
    )
    args = parser.parse_args(argv)

    uri = os.environ.get(URI_ENV)
    log = event_log(args.db_path, uri, args.mongodb_db, background_sync=False)
    if args.background:
        log.flush(args.timeout_ms)
        return 0
    try:
        sent = log.sync(args.timeout_ms)
    except CageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"sent {sent} event(s)")
    return 0
