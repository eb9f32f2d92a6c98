"""The event log: every operation records one event, kept in SQLite, mirrored to MongoDB.

An event looks like::

    {"id": "00001764000000000000-1a2b3c4d", "type": "operation", "key": "start:web",
     "value": {"status": "ok", ...}, "_ts": "2025-11-24T09:00:00.000000Z",
     "_host": "laptop", "_project": "claude-cage"}

`id` is made once, ordered by time, and is the same in SQLite and in MongoDB (`_id`).

Design:

* `record()` only writes SQLite (WAL mode, a busy timeout, so several CLI processes can
  write at once) and never raises: an event the database cannot take now (locked, full)
  waits in the spool beside it (spool.py) and is written by the next write or
  read; one the spool cannot take either costs one warning line on stderr.
* The log is bounded: repeated blocked requests fold into one event (folds.py),
  and past its size or age limit the oldest events are pruned (prune.py).
* Secrets never reach an event: `redact()` (redaction.py) masks keys named like
  passwords, tokens and API keys, and credentials inside URIs; `record()` always applies it.
* A damaged database is moved aside, with its WAL, and a new one started.
* The MongoDB mirror is outbox.py: `record()` starts a detached flusher, whose
  entry point is this module (`python -m claude_cage.eventlog sync DB --background`).
* The schema (rows, ids, migrations) is schema.py.

Only the standard library is imported here; pymongo is imported by the sync alone.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from claude_cage.errors import CageError
from claude_cage.eventlog import db as event_db
from claude_cage.eventlog import outbox, prune, schema, spool
from claude_cage.eventlog.outbox import COLLECTION, DEFAULT_MONGODB_DB, URI_ENV, EventSyncError
from claude_cage.eventlog.prune import Limits
from claude_cage.eventlog.redaction import MASK, mask_uri, mask_with_password, redact
from claude_cage.eventlog.schema import (
    INSERT,
    INSERT_FOLDED,
    MIGRATIONS,
    PROJECT,
    migrate,
    new_event_id,
)

if TYPE_CHECKING:
    import threading

_T = TypeVar("_T")

__all__ = [
    "COLLECTION",
    "MASK",
    "MIGRATIONS",
    "PROJECT",
    "URI_ENV",
    "EventLog",
    "EventLogError",
    "EventSyncError",
    "Limits",
    "mask_uri",
    "migrate",
    "new_event_id",
    "redact",
]


class EventLogError(CageError):
    """The SQLite event log cannot be read."""

    hint = "check that the data directory is writable (or move the events database aside)"


class Batch:
    """Events and state written in one transaction (see EventLog.batch). Every
    prune.EVERY events it checks the log's bounds (`bound`), so a batch of
    thousands never takes the log far past them."""

    def __init__(self, db: sqlite3.Connection, bound: Callable[[], None]) -> None:
        self._db = db
        self._bound = bound
        self.count = 0

    def _written(self) -> None:
        self.count += 1
        if self.count % prune.EVERY == 0:
            self._bound()

    def record(
        self, type: str, key: str, value: Mapping[str, Any], *, session: str | None = None
    ) -> None:
        self._db.execute(INSERT, schema.prepare(type, key, value, session)[1])
        self._written()

    def open_fold(self, fold: str) -> tuple[int, str, dict[str, Any]] | None:
        """The newest event of a fold key (folds.py): (seq, id, value)."""
        row = self._db.execute(
            "SELECT seq, id, value_json FROM events WHERE fold = ? ORDER BY seq DESC LIMIT 1",
            (fold,),
        ).fetchone()
        if row is None:
            return None
        value = json.loads(row[2])
        return (int(row[0]), str(row[1]), value) if isinstance(value, dict) else None

    def write_fold(
        self,
        fold: str,
        type: str,
        key: str,
        value: Mapping[str, Any],
        *,
        session: str | None,
        replaces: tuple[int, str] | None = None,
    ) -> None:
        """Write a folded event; `replaces` (seq, id): the row it rewrites, whose id it
        keeps and whose place it leaves for a new `seq` (folds.py says why)."""
        event_id = None
        if replaces is not None:
            self._db.execute("DELETE FROM events WHERE seq = ?", (replaces[0],))
            event_id = replaces[1]
        row = schema.prepare(type, key, value, session, event_id)[1]
        self._db.execute(INSERT_FOLDED, (*row, fold))
        self._written()

    def get_state(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        schema.set_state(self._db, **{key: value})


class EventLog:
    """The event log in one SQLite file, optionally mirrored to MongoDB.

    `background_sync=False` turns off the detached flusher (then only `sync()` sends).
    `limits`: the size and age past which the oldest events are pruned (prune.py).
    """

    def __init__(
        self,
        db_path: Path | str,
        mongodb_uri: str | None = None,
        mongodb_db: str = DEFAULT_MONGODB_DB,
        *,
        background_sync: bool = True,
        sync_timeout_ms: int = 2000,
        limits: Limits | None = None,
    ) -> None:
        self.db_path = Path(db_path).expanduser().absolute()
        self.mongodb_uri = mongodb_uri or None
        self.mongodb_db = mongodb_db
        self.background_sync = background_sync
        self.sync_timeout_ms = sync_timeout_ms
        self.limits = limits or Limits()
        self._migrated = False
        self._warned = False
        self.moved_aside: list[str] = []  # damaged databases this log moved aside

    def __repr__(self) -> str:
        uri = mask_uri(self.mongodb_uri) if self.mongodb_uri else None
        return (
            f"EventLog({str(self.db_path)!r}, mongodb_uri={uri!r}, mongodb_db={self.mongodb_db!r})"
        )

    @property
    def lock_path(self) -> Path:
        """Held (flock) by whoever is sending events to MongoDB."""
        return self.db_path.with_name(self.db_path.name + ".sync.lock")

    @property
    def spawn_marker_path(self) -> Path:
        """Exists while a spawned flusher has not started yet."""
        return self.db_path.with_name(self.db_path.name + ".sync.spawned")

    # -- sqlite (db.py)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the database, migrated; a damaged one is moved aside first."""
        try:
            db = self._open()
        except sqlite3.DatabaseError as exc:
            if not self._recover(exc):
                raise
            db = self._open()
        try:
            yield db
        finally:
            db.close()

    def _open(self) -> sqlite3.Connection:
        db = event_db.open_db(self.db_path)
        if not self._migrated:
            try:
                migrate(db)
            except BaseException:
                db.close()
                raise
            self._migrated = True
        return db

    def _recover(self, exc: BaseException) -> bool:
        """Move a damaged database aside, with its WAL, and start a new one. Nothing in
        the old file is deleted. True when the database is usable again."""
        if not event_db.looks_damaged(self.db_path, exc):
            return False
        try:
            aside = event_db.move_aside(self.db_path)
        except OSError:
            return False
        if aside is None:  # another process moved it meanwhile
            return True
        self._migrated = False
        self.moved_aside.append(str(aside))
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        with contextlib.suppress(Exception):
            print(
                f"claude-cage: warning: the event log {self.db_path} was damaged ({reason}); "
                f"moved it aside to {aside} and started a new one",
                file=sys.stderr,
            )
        self.record(
            "events",
            "moved-aside:-",
            {"status": "warning", "reason": reason, "moved_to": str(aside)},
        )
        return True

    def warn(self, what: str, exc: BaseException) -> None:
        if self._warned:
            return
        self._warned = True
        detail = self.mask(f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):
            print(f"claude-cage: warning: {what} ({detail})", file=sys.stderr)

    def mask(self, text: str) -> str:
        """Mask URI credentials, and the configured password wherever it appears."""
        return mask_with_password(text, self.mongodb_uri)

    # -- writing

    def record(
        self,
        type: str,
        key: str,
        value: Mapping[str, Any] | None = None,
        *,
        session: str | None = None,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Record one event and return it. Never raises, unless `strict`: then a failure
        to record raises EventLogError.

        `key` is "<operation>:<name>". The `session` column (what `query(session=...)`
        filters on) is `session`, else `value["session"]`, else the name part of `key`.
        """
        event, row = schema.prepare(type, key, value, session)

        def write(db: sqlite3.Connection) -> None:
            self._drain(db)
            db.execute(INSERT, row)
            if prune.over(db, self.limits):
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._prune(db)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise

        try:
            self._with_db(write)
        except Exception as exc:
            if strict:
                raise EventLogError(
                    f"event {event['key']!r} not recorded in {self.db_path}: {exc}"
                ) from None
            try:  # kept, and written once the database can take it (spool.py)
                spool.append(self.db_path, row)
            except OSError as lost:
                self.warn(f"event {event['key']!r} not recorded in {self.db_path}", lost)
                return event
            self.warn(
                f"event {event['key']!r} kept in {spool.spool_path(self.db_path)} "
                "until the event log can take it",
                exc,
            )
            return event
        if self.mongodb_uri and self.background_sync:
            self.kick()
        return event

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """One write transaction: the events and state a batch adds land together or not
        at all, and a reader of the state inside it sees no other writer's changes.
        Thousands of events cost one commit. Raises EventLogError when the log is broken."""
        try:
            with self.connect() as db:
                self._drain(db)
                db.execute("BEGIN IMMEDIATE")
                batch = Batch(db, lambda: self._bound(db))
                try:
                    yield batch
                    if batch.count:
                        self._bound(db)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot write the event log {self.db_path}: {exc}") from None
        if batch.count and self.mongodb_uri and self.background_sync:
            self.kick()

    def _drain(self, db: sqlite3.Connection, *, reading: bool = False) -> None:
        """Write the spooled events first (spool.py). A write raises what SQLite
        raises; a read tries once, briefly, and reads on whatever happens."""
        if not spool.pending(self.db_path):
            return
        if not reading:
            try:
                spool.drain(self.db_path, db)
            except OSError as exc:
                self.warn(f"cannot read the event spool beside {self.db_path}", exc)
            return
        db.execute("PRAGMA busy_timeout = 100")
        try:
            spool.drain(self.db_path, db)
        except (sqlite3.Error, OSError):
            pass
        finally:
            db.execute(f"PRAGMA busy_timeout = {int(event_db.BUSY_TIMEOUT_S * 1000)}")

    def _bound(self, db: sqlite3.Connection) -> None:
        """Prune the log if it is past its bounds; in the caller's write transaction."""
        if prune.over(db, self.limits):
            self._prune(db)

    def _prune(self, db: sqlite3.Connection) -> None:
        """In the caller's write transaction (prune.py)."""
        prune.prune(db, self.limits, mirrored=bool(self.mongodb_uri))

    def _with_db(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` on a connection; damage found past opening (a truncated file) is
        moved aside once and the work done again on the new database."""
        try:
            with self.connect() as db:
                return work(db)
        except sqlite3.DatabaseError as exc:
            if not self._recover(exc):
                raise
        with self.connect() as db:
            return work(db)

    def kick(self) -> bool:
        """Start a detached flusher unless one is running or starting; True if started.
        Never raises and never waits on MongoDB (outbox.kick)."""
        return outbox.kick(self)

    # -- reading

    def _select(
        self,
        *,
        session: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[tuple[Any, ...]]:
        where: list[str] = []
        params: list[Any] = []
        if session is not None:
            where.append("session = ?")
            params.append(schema.storable(session))  # as prepare() stored it
        if type is not None:
            where.append("type = ?")
            params.append(schema.storable(type))
        if since is not None:
            where.append("ts >= ?")
            params.append(schema.iso(since))
        if after_seq is not None:
            where.append("seq > ?")
            params.append(after_seq)
        sql = f"SELECT {schema.COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)

        def run(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            self._drain(db, reading=True)
            if limit is None:
                return list(db.execute(sql + " ORDER BY seq", params))
            rows = list(db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit]))
            rows.reverse()
            return rows

        return self._read(run)

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run a read: on a connection that may write (a migration, the spool), else, when
        the data directory cannot take a write (read-only, full), on one that writes
        nothing: reading the log needs no free space."""
        try:
            return self._with_db(work)
        except sqlite3.OperationalError as exc:
            if not self.db_path.is_file():
                raise EventLogError(f"cannot read the event log {self.db_path}: {exc}") from None
            failed = exc
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot read the event log {self.db_path}: {exc}") from None
        try:
            return event_db.read_only(self.db_path, work)
        except sqlite3.Error:
            raise EventLogError(f"cannot read the event log {self.db_path}: {failed}") from None

    def query(
        self,
        session: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Matching events, oldest first; with `limit`, the last `limit` of them."""
        rows = self._select(session=session, type=type, since=since, limit=limit)
        return [schema.row_event(r) for r in rows]

    def follow(
        self,
        session: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        backlog: int | None = 10,
        *,
        poll_interval: float = 0.5,
        stop: threading.Event | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Yield the last `backlog` matching events (None: all), then new ones as they land.

        Polls SQLite every `poll_interval` seconds for a higher `seq`. Stops when `stop` is
        set, or when the caller closes the generator (breaking out of the loop does).
        """
        last_seq = 0
        if backlog is None or backlog > 0:
            for row in self._select(session=session, type=type, since=since, limit=backlog):
                last_seq = row[0]
                yield schema.row_event(row)
        if last_seq == 0:
            with self.connect() as db:
                last_seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        while stop is None or not stop.is_set():
            rows = self._select(session=session, type=type, since=since, after_seq=last_seq)
            for row in rows:
                last_seq = row[0]
                yield schema.row_event(row)
                if stop is not None and stop.is_set():
                    return
            if stop is not None:
                stop.wait(poll_interval)
            else:
                time.sleep(poll_interval)

    # -- state

    def get_state(self, key: str) -> str | None:
        with self.connect() as db:
            return schema.get_state(db).get(key)

    def pending(self) -> int:
        with self.connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM events WHERE synced = 0").fetchone()[0])

    def status(self) -> dict[str, Any]:
        """Where events go and how the MongoDB mirror is doing (URIs and errors masked)."""

        def counts(db: sqlite3.Connection) -> tuple[int, int, dict[str, str | None], int]:
            self._drain(db, reading=True)
            pending = db.execute("SELECT COUNT(*) FROM events WHERE synced = 0").fetchone()[0]
            total = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            return pending, total, schema.get_state(db), prune.used_bytes(db)

        pending, total, state, used = self._read(counts)
        last_error = state.get("last_error")
        return {
            "sink": "sqlite+mongodb" if self.mongodb_uri else "sqlite",
            "db_path": str(self.db_path),
            "mongodb_uri": mask_uri(self.mongodb_uri) if self.mongodb_uri else None,
            "mongodb_db": self.mongodb_db if self.mongodb_uri else None,
            "pending": int(pending),
            "total": int(total),
            "last_error": self.mask(last_error) if last_error else None,
            "last_error_at": state.get("last_error_at"),
            "last_sync": state.get("last_sync"),
            "size": used,
            "max_size": self.limits.max_size,
            "max_age_days": self.limits.max_age_days,
            "pruned": prune.state_int(state, "pruned"),
            "pruned_unsent": prune.state_int(state, "pruned_unsent"),
            "pruned_last": prune.state_int(state, "pruned_last"),
            "pruned_at": state.get("pruned_at"),
            "spooled": spool.waiting(self.db_path),
        }

    # -- syncing (outbox.py)

    def sync(self, timeout_ms: int = 2000, *, lock_timeout: float | None = None) -> int:
        """Send pending events to MongoDB, in order; return how many were sent.

        Each event is an upsert keyed by `_id = id`, so a resend never stores it twice.
        Waits (up to `lock_timeout` seconds) for a running flusher to finish first.
        Raises EventSyncError (message masked) if MongoDB is not configured or fails; the
        events then stay pending and the error shows in `status()`.
        """
        try:
            return outbox.sync(self, timeout_ms, lock_timeout)
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot read the event log {self.db_path}: {exc}") from None

    def flush(self, timeout_ms: int = 2000) -> int:
        """The detached flusher's job: sync if no one else is; swallow every error."""
        return outbox.flush(self, timeout_ms)
