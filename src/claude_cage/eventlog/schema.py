"""What an event is in SQLite: its id and times, its row, the state table, and the
migrations that build the schema.

The schema is built by named migrations (`m001_initial`, ...) recorded in `_migrations`,
each applied once, in order. A new one is a function decorated with `@migration` at the
end of the list; a migration already applied somewhere is never edited.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from claude_cage.eventlog.redaction import mask_uri, redact

PROJECT = "claude-cage"

# --------------------------------------------------------------------------- ids, times


def new_event_id(ns: int | None = None) -> str:
    """A time-ordered id: 20 digits of nanoseconds since the epoch, then 8 random hex."""
    if ns is None:
        ns = time.time_ns()
    return f"{ns:020d}-{uuid.uuid4().hex[:8]}"


def iso_ns(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    dt = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso(dt: datetime) -> str:
    """A datetime as stored in `ts`; a naive datetime is taken as UTC."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> str:
    return iso_ns(time.time_ns())


_HOST: str | None = None


def hostname() -> str:
    global _HOST
    if _HOST is None:
        _HOST = socket.gethostname()
    return _HOST


# --------------------------------------------------------------------------- rows

COLUMNS = "seq, id, type, key, value_json, ts, host, project"


def row_event(row: tuple[Any, ...]) -> dict[str, Any]:
    """An event as returned to callers and sent to MongoDB, from a row of COLUMNS."""
    _seq, id_, type_, key, value_json, ts, host, project = row
    return {
        "id": id_,
        "type": type_,
        "key": key,
        "value": json.loads(value_json),
        "_ts": ts,
        "_host": host,
        "_project": project,
    }


INSERT = (
    "INSERT INTO events (id, type, key, session, status, value_json, ts, host, project)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A folded event (folds.py): the row of INSERT, then its fold key.
INSERT_FOLDED = (
    "INSERT INTO events (id, type, key, session, status, value_json, ts, host, project, fold)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def storable(text: str) -> str:
    """`text` with each lone surrogate (an argument's byte that is not UTF-8, as Python
    decodes it) written out as \\udcXX: SQLite, and the spool, take only UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def prepare(
    type: str,
    key: str,
    value: Mapping[str, Any] | None,
    session: str | None,
    event_id: str | None = None,
) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """(the event, its row for INSERT), secrets redacted. `event_id` keeps the id of
    the event a folded one rewrites (the mirror replaces its document by id)."""
    ns = time.time_ns()
    try:
        clean = redact(dict(value or {}))
        value_json = json.dumps(clean, default=str, skipkeys=True)
    except Exception as exc:  # a cycle, say: keep the event, not the value
        status = value.get("status") if isinstance(value, Mapping) else None
        clean = {"status": None if status is None else mask_uri(str(status))}
        clean["error"] = f"value not recordable: {exc.__class__.__name__}"
        value_json = json.dumps(clean)
    event: dict[str, Any] = {
        "id": event_id or new_event_id(ns),
        "type": mask_uri(storable(str(type))),
        "key": mask_uri(storable(str(key))),
        "value": json.loads(value_json),
        "_ts": iso_ns(ns),
        "_host": hostname(),
        "_project": PROJECT,
    }
    if session is None:
        sess = clean.get("session")
        if isinstance(sess, str) and sess:
            session = sess
        elif ":" in event["key"]:
            session = event["key"].split(":", 1)[1] or None
    status = clean.get("status")
    row = (
        event["id"],
        event["type"],
        event["key"],
        None if session is None else storable(session),
        None if status is None else storable(str(status)),
        value_json,
        event["_ts"],
        event["_host"],
        event["_project"],
    )
    return event, row


# --------------------------------------------------------------------------- state


def get_state(db: sqlite3.Connection) -> dict[str, str | None]:
    return {k: v for k, v in db.execute("SELECT key, value FROM state")}


def set_state(db: sqlite3.Connection, **values: str | None) -> None:
    db.executemany(
        "INSERT INTO state (key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )


# --------------------------------------------------------------------------- migrations

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register a migration; they run in the order they are defined, each once."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            key TEXT NOT NULL,
            session TEXT,
            status TEXT,
            value_json TEXT NOT NULL,
            ts TEXT NOT NULL,
            host TEXT,
            project TEXT,
            synced INTEGER NOT NULL DEFAULT 0
        )
        """
    )


@migration
def m002_indexes(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX events_ts ON events(ts)")
    db.execute("CREATE INDEX events_session ON events(session, seq)")
    db.execute("CREATE INDEX events_type ON events(type, seq)")
    db.execute("CREATE INDEX events_pending ON events(seq) WHERE synced = 0")


@migration
def m003_state(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT)")


@migration
def m004_folds(db: sqlite3.Connection) -> None:
    """Repeated blocked requests are one event (folds.py), found again by its key."""
    db.execute("ALTER TABLE events ADD COLUMN fold TEXT")
    db.execute("CREATE INDEX events_fold ON events(fold, seq) WHERE fold IS NOT NULL")


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet recorded in `_migrations`; return their names.

    `db` must be in autocommit mode (isolation_level=None). Safe against other processes
    migrating at the same time: the work happens under BEGIN IMMEDIATE and is re-checked.
    """
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)"
    )
    applied = {row[0] for row in db.execute("SELECT name FROM _migrations")}
    if all(m.__name__ in applied for m in MIGRATIONS):
        return []
    done: list[str] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        applied = {row[0] for row in db.execute("SELECT name FROM _migrations")}
        for fn in MIGRATIONS:
            if fn.__name__ in applied:
                continue
            fn(db)
            db.execute(
                "INSERT INTO _migrations (name, applied) VALUES (?, ?)", (fn.__name__, now())
            )
            done.append(fn.__name__)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return done
