"""The event log: every operation records one event, kept in SQLite, mirrored to MongoDB.

An event looks like::

    {"id": "00001764000000000000-1a2b3c4d", "type": "operation", "key": "start:web",
     "value": {"status": "ok", ...}, "_ts": "2025-11-24T09:00:00.000000Z",
     "_host": "laptop", "_project": "claude-cage"}

`id` is made once, ordered by time, and is the same in SQLite and in MongoDB (`_id`).

Design:

* `record()` only writes SQLite (WAL mode, a busy timeout, so several CLI processes can
  write at once) and never raises: a broken log costs one warning line on stderr.
* Secrets never reach an event: `redact()` masks keys named like passwords, tokens and
  API keys, and credentials inside URIs; `record()` always applies it.
* When a MongoDB URI is configured, `record()` then starts a detached flusher process
  (`python -m claude_cage.events sync DB --background`, URI in its environment, never in
  argv) and returns at once. The flusher takes a non-blocking `flock` next to the DB, so
  only one runs at a time, and sends pending events in `seq` order as upserts keyed by
  `_id`, so a resend never stores an event twice. If MongoDB is down, events stay pending
  and go out, in order, with a later sync.
* The schema is built by named migrations (`m001_initial`, ...) recorded in `_migrations`,
  each applied once, in order.

Only the standard library is imported here; pymongo is imported by the sync alone.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from claude_cage.errors import CageError

if TYPE_CHECKING:
    import threading

_T = TypeVar("_T")

__all__ = [
    "COLLECTION",
    "MIGRATIONS",
    "PROJECT",
    "EventLog",
    "EventLogError",
    "EventSyncError",
    "mask_uri",
    "migrate",
    "new_event_id",
    "redact",
]

PROJECT = "claude-cage"
DEFAULT_MONGODB_DB = "claude_cage"
COLLECTION = "events"
MASK = "****"
URI_ENV = "MONGODB_URI"
BUSY_TIMEOUT_S = 10.0
SPAWN_MARKER_STALE_S = 5.0
SYNC_BATCH = 500
MAX_ERROR_CHARS = 500
# What SQLite says about a file that is not (or no longer) a database.
_DAMAGE = ("not a database", "malformed")


class EventLogError(CageError):
    """The SQLite event log cannot be read."""

    hint = "check that the data directory is writable (or move the events database aside)"


class EventSyncError(CageError):
    """Events could not be sent to MongoDB; they stay pending for the next sync."""

    hint = (
        "the events stay pending in SQLite and go out with the next sync; "
        "check that MongoDB answers at the configured URI"
    )


# --------------------------------------------------------------------------- redaction

_SECRET_SUBSTRINGS = ("password", "passwd", "secret", "apikey", "authorization")
_SECRET_WORDS = frozenset({"token", "passphrase", "credential", "credentials", "cookie"})
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key")})
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

# scheme://user:PASSWORD@host: the password runs to the last '@' before a blank or quote,
# so an unescaped '@' or '/' in it is masked too.
_URI_USERINFO_RE = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:@/\s'\"<>]*:)(?P<pw>[^\s'\"<>]*)@"
)
_URI_QUERY_SECRET_RE = re.compile(
    r"(?P<head>[?&;][^=&\s'\"]*(?:password|secret|token|apikey|api_key)[^=&\s'\"]*=)"
    r"[^&#\s'\"]*",
    re.IGNORECASE,
)


def _is_secret_key(key: str) -> bool:
    flat = re.sub(r"[^a-z0-9]", "", key.lower())
    if any(s in flat for s in _SECRET_SUBSTRINGS):
        return True
    words = [w.lower() for w in _WORD_RE.findall(key)]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def mask_uri(uri: str) -> str:
    """`mongodb://user:pass@h/db` -> `mongodb://user:****@h/db`, for every URI in `uri`.

    Passwords-like query parameters (`?password=...`, `&token=...`) are masked too.
    Text without credentials comes back unchanged.
    """
    if "://" not in uri and "=" not in uri:
        return uri
    masked = _URI_USERINFO_RE.sub(lambda m: f"{m.group('head')}{MASK}@", uri)
    return _URI_QUERY_SECRET_RE.sub(lambda m: f"{m.group('head')}{MASK}", masked)


def redact(value: Any) -> Any:
    """A copy of `value` with secrets masked, recursively.

    Keys named like api_key/apikey, password, secret, token, authorization (any case, any
    separator: `ANTHROPIC_API_KEY`, `authToken`, `X-Api-Key`) get `"****"` (None stays
    None); every string has URI credentials masked (`mask_uri`). Counters such as
    `input_tokens` are kept: only the singular word `token` marks a secret.
    """
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and _is_secret_key(k):
                out[k] = None if v is None else MASK
            else:
                out[k] = redact(v)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return mask_uri(value)
    return value


# --------------------------------------------------------------------------- ids, times


def new_event_id(ns: int | None = None) -> str:
    """A time-ordered id: 20 digits of nanoseconds since the epoch, then 8 random hex."""
    if ns is None:
        ns = time.time_ns()
    return f"{ns:020d}-{uuid.uuid4().hex[:8]}"


def _iso_ns(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    dt = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso(dt: datetime) -> str:
    """A datetime as stored in `ts`; a naive datetime is taken as UTC."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now() -> str:
    return _iso_ns(time.time_ns())


_HOST: str | None = None


def _hostname() -> str:
    global _HOST
    if _HOST is None:
        _HOST = socket.gethostname()
    return _HOST


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
                "INSERT INTO _migrations (name, applied) VALUES (?, ?)", (fn.__name__, _now())
            )
            done.append(fn.__name__)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return done


# --------------------------------------------------------------------------- the log

_COLUMNS = "seq, id, type, key, value_json, ts, host, project"


def _row_event(row: tuple[Any, ...]) -> dict[str, Any]:
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


_INSERT = (
    "INSERT INTO events (id, type, key, session, status, value_json, ts, host, project)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _prepare(
    type: str, key: str, value: Mapping[str, Any] | None, session: str | None
) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """(the event, its row for _INSERT), secrets redacted."""
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
        "id": new_event_id(ns),
        "type": mask_uri(str(type)),
        "key": mask_uri(str(key)),
        "value": json.loads(value_json),
        "_ts": _iso_ns(ns),
        "_host": _hostname(),
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
        session,
        None if status is None else str(status),
        value_json,
        event["_ts"],
        event["_host"],
        event["_project"],
    )
    return event, row


class Batch:
    """Events and state written in one transaction (see EventLog.batch)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.count = 0

    def record(
        self, type: str, key: str, value: Mapping[str, Any], *, session: str | None = None
    ) -> None:
        self._db.execute(_INSERT, _prepare(type, key, value, session)[1])
        self.count += 1

    def get_state(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        EventLog._set_state(self._db, **{key: value})


# Detached flushers this process started: kept so they are reaped, never waited for.
_FLUSHERS: list[subprocess.Popen[bytes]] = []


class EventLog:
    """The event log in one SQLite file, optionally mirrored to MongoDB.

    `background_sync=False` turns off the detached flusher (then only `sync()` sends).
    """

    def __init__(
        self,
        db_path: Path | str,
        mongodb_uri: str | None = None,
        mongodb_db: str = DEFAULT_MONGODB_DB,
        *,
        background_sync: bool = True,
        sync_timeout_ms: int = 2000,
    ) -> None:
        self.db_path = Path(db_path).expanduser().absolute()
        self.mongodb_uri = mongodb_uri or None
        self.mongodb_db = mongodb_db
        self.background_sync = background_sync
        self.sync_timeout_ms = sync_timeout_ms
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

    # -- sqlite

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
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
        if not self.db_path.exists():
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._ensure_wal(db)
            db.execute("PRAGMA synchronous = NORMAL")
            if not self._migrated:
                migrate(db)
                self._migrated = True
        except BaseException:
            db.close()
            raise
        return db

    def _read_only(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` on a connection that writes nothing (a read-only filesystem). With
        no WAL file left, everything is in the database file, which is read as is."""
        wal = Path(f"{self.db_path}-wal")
        mode = "ro" if wal.exists() else "ro&immutable=1"
        from urllib.parse import quote

        db = sqlite3.connect(f"file:{quote(str(self.db_path))}?mode={mode}", uri=True)
        try:
            return work(db)
        finally:
            db.close()

    # -- damage

    def _looks_damaged(self, exc: BaseException) -> bool:
        """Damage, as opposed to a busy, full or read-only database (those pass)."""
        if self.db_path.is_dir():
            return True
        if "unable to open database file" in str(exc):  # also said of a read-only directory
            return self.db_path.exists() and not os.access(self.db_path, os.R_OK | os.W_OK)
        return any(sign in str(exc) for sign in _DAMAGE)

    def _still_damaged(self) -> bool:
        if self.db_path.is_dir():
            return True
        try:
            db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S)
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            return self._looks_damaged(exc)
        return False

    def _recover(self, exc: BaseException) -> bool:
        """Move a damaged database aside, with its WAL, and start a new one. Nothing in
        the old file is deleted. True when the database is usable again."""
        if not self._looks_damaged(exc):
            return False
        import fcntl

        guard = self.db_path.with_name(self.db_path.name + ".repair.lock")
        try:
            fd = os.open(guard, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return False
        try:
            # Another process may have repaired it meanwhile: move only what is still
            # damaged, never the new database it started.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not self._still_damaged():
                return True
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            aside = self.db_path.with_name(f"{self.db_path.name}.damaged-{stamp}")
            os.rename(self.db_path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.rename(f"{self.db_path}{suffix}", f"{aside}{suffix}")
        except OSError:
            return False
        finally:
            os.close(fd)
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

    @staticmethod
    def _ensure_wal(db: sqlite3.Connection) -> None:
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

    def _warn(self, what: str, exc: BaseException) -> None:
        if self._warned:
            return
        self._warned = True
        detail = self._mask(f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):
            print(f"claude-cage: warning: {what} ({detail})", file=sys.stderr)

    def _mask(self, text: str) -> str:
        """Mask URI credentials, and the configured password wherever it appears."""
        text = mask_uri(text)
        if self.mongodb_uri:
            for m in _URI_USERINFO_RE.finditer(self.mongodb_uri):
                pw = m.group("pw")
                if len(pw) >= 3:
                    from urllib.parse import unquote

                    for form in {pw, unquote(pw)}:
                        text = text.replace(form, MASK)
        return text

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
        event, row = _prepare(type, key, value, session)
        try:
            self._with_db(lambda db: db.execute(_INSERT, row))
        except Exception as exc:
            if strict:
                raise EventLogError(
                    f"event {event['key']!r} not recorded in {self.db_path}: {exc}"
                ) from None
            self._warn(f"event {event['key']!r} not recorded in {self.db_path}", exc)
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
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                batch = Batch(db)
                try:
                    yield batch
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot write the event log {self.db_path}: {exc}") from None
        if batch.count and self.mongodb_uri and self.background_sync:
            self.kick()

    def _with_db(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` on a connection; damage found past opening (a truncated file) is
        moved aside once and the work done again on the new database."""
        try:
            with self._connect() as db:
                return work(db)
        except sqlite3.DatabaseError as exc:
            if not self._recover(exc):
                raise
        with self._connect() as db:
            return work(db)

    def kick(self) -> bool:
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
        if not self.mongodb_uri or not sys.executable:
            return False
        try:
            fd = self._try_lock()
            if fd is None:
                return False
            self._unlock(fd)
            marker = self.spawn_marker_path
            with contextlib.suppress(FileNotFoundError):
                if time.time() - marker.stat().st_mtime < SPAWN_MARKER_STALE_S:
                    return False
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600))
            os.utime(marker)
            for proc in list(_FLUSHERS):
                if proc.poll() is not None:
                    _FLUSHERS.remove(proc)
            env = dict(os.environ)
            env[URI_ENV] = self.mongodb_uri
            pkg_parent = str(Path(__file__).resolve().parent.parent)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (pkg_parent, env.get("PYTHONPATH", "")) if p
            )
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "claude_cage.events",
                    "sync",
                    str(self.db_path),
                    "--mongodb-db",
                    self.mongodb_db,
                    "--timeout-ms",
                    str(self.sync_timeout_ms),
                    "--background",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                cwd="/",
                env=env,
            )
            _FLUSHERS.append(proc)
            return True
        except Exception as exc:
            with contextlib.suppress(OSError):
                self.spawn_marker_path.unlink()
            self._warn("could not start the event flusher", exc)
            return False

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
            params.append(session)
        if type is not None:
            where.append("type = ?")
            params.append(type)
        if since is not None:
            where.append("ts >= ?")
            params.append(_iso(since))
        if after_seq is not None:
            where.append("seq > ?")
            params.append(after_seq)
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)

        def run(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if limit is None:
                return list(db.execute(sql + " ORDER BY seq", params))
            rows = list(db.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit]))
            rows.reverse()
            return rows

        try:
            return self._with_db(run)
        except sqlite3.OperationalError as exc:
            if os.access(self.db_path.parent, os.W_OK) or not self.db_path.is_file():
                raise EventLogError(f"cannot read the event log {self.db_path}: {exc}") from None
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot read the event log {self.db_path}: {exc}") from None
        try:  # a read-only data directory: read without writing anything
            return self._read_only(run)
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot read the event log {self.db_path}: {exc}") from None

    def query(
        self,
        session: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Matching events, oldest first; with `limit`, the last `limit` of them."""
        rows = self._select(session=session, type=type, since=since, limit=limit)
        return [_row_event(r) for r in rows]

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
                yield _row_event(row)
        if last_seq == 0:
            with self._connect() as db:
                last_seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        while stop is None or not stop.is_set():
            rows = self._select(session=session, type=type, since=since, after_seq=last_seq)
            for row in rows:
                last_seq = row[0]
                yield _row_event(row)
                if stop is not None and stop.is_set():
                    return
            if stop is not None:
                stop.wait(poll_interval)
            else:
                time.sleep(poll_interval)

    # -- state

    def _get_state(self, db: sqlite3.Connection) -> dict[str, str | None]:
        return {k: v for k, v in db.execute("SELECT key, value FROM state")}

    @staticmethod
    def _set_state(db: sqlite3.Connection, **values: str | None) -> None:
        db.executemany(
            "INSERT INTO state (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            list(values.items()),
        )

    def get_state(self, key: str) -> str | None:
        with self._connect() as db:
            return self._get_state(db).get(key)

    def pending(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM events WHERE synced = 0").fetchone()[0])

    def status(self) -> dict[str, Any]:
        """Where events go and how the MongoDB mirror is doing (URIs and errors masked)."""
        try:
            with self._connect() as db:
                pending = db.execute("SELECT COUNT(*) FROM events WHERE synced = 0").fetchone()[0]
                total = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
                state = self._get_state(db)
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot read the event log {self.db_path}: {exc}") from None
        last_error = state.get("last_error")
        return {
            "sink": "sqlite+mongodb" if self.mongodb_uri else "sqlite",
            "db_path": str(self.db_path),
            "mongodb_uri": mask_uri(self.mongodb_uri) if self.mongodb_uri else None,
            "mongodb_db": self.mongodb_db if self.mongodb_uri else None,
            "pending": int(pending),
            "total": int(total),
            "last_error": self._mask(last_error) if last_error else None,
            "last_error_at": state.get("last_error_at"),
            "last_sync": state.get("last_sync"),
        }

    # -- syncing

    def _try_lock(self) -> int | None:
        import fcntl

        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def _unlock(fd: int) -> None:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def sync(self, timeout_ms: int = 2000, *, lock_timeout: float | None = None) -> int:
        """Send pending events to MongoDB, in order; return how many were sent.

        Each event is an upsert keyed by `_id = id`, so a resend never stores it twice.
        Waits (up to `lock_timeout` seconds) for a running flusher to finish first.
        Raises EventSyncError (message masked) if MongoDB is not configured or fails; the
        events then stay pending and the error shows in `status()`.
        """
        if not self.mongodb_uri:
            raise EventSyncError(
                "no MongoDB URI is configured; events are kept in SQLite only",
                "configure a MongoDB URI to mirror events",
            )
        if lock_timeout is None:
            lock_timeout = max(10.0, 3 * timeout_ms / 1000)
        deadline = time.monotonic() + lock_timeout
        fd = self._try_lock()
        while fd is None:
            if time.monotonic() > deadline:
                raise EventSyncError("another event sync is still running; try again shortly")
            time.sleep(0.05)
            fd = self._try_lock()
        try:
            return self._sync_locked(timeout_ms)
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot read the event log {self.db_path}: {exc}") from None
        finally:
            self._unlock(fd)

    def flush(self, timeout_ms: int = 2000) -> int:
        """The detached flusher's job: sync if no one else is; swallow every error.

        After unlocking it looks again for pending events, so an event whose recorder saw
        the lock taken (and started no flusher) still goes out now.
        """
        with contextlib.suppress(OSError):
            self.spawn_marker_path.unlink()
        sent = 0
        for _ in range(20):
            fd = self._try_lock()
            if fd is None:
                break
            try:
                sent += self._sync_locked(timeout_ms)
            except Exception:
                return sent
            finally:
                self._unlock(fd)
            try:
                if self.pending() == 0:
                    break
            except Exception:
                break
        return sent

    def _sync_locked(self, timeout_ms: int) -> int:
        assert self.mongodb_uri
        # One connection for the whole sync: no transaction stays open across the calls
        # to MongoDB (so writers are never blocked), and recorders closing their own
        # connections meanwhile do not each pay for a WAL checkpoint.
        with self._connect() as db:
            top = db.execute("SELECT MAX(seq) FROM events WHERE synced = 0").fetchone()[0]
            if top is None:
                return 0
            sent = 0
            client: Any = None
            try:
                import pymongo
                from pymongo import ReplaceOne

                client = pymongo.MongoClient(
                    self.mongodb_uri,
                    serverSelectionTimeoutMS=timeout_ms,
                    connectTimeoutMS=timeout_ms,
                    socketTimeoutMS=max(10_000, 5 * timeout_ms),
                    appname=PROJECT,
                )
                collection = client[self.mongodb_db][COLLECTION]
                after = 0
                while True:
                    rows = db.execute(
                        f"SELECT {_COLUMNS} FROM events WHERE synced = 0 AND seq > ?"
                        " AND seq <= ? ORDER BY seq LIMIT ?",
                        (after, top, SYNC_BATCH),
                    ).fetchall()
                    if not rows:
                        break
                    docs = [_row_event(r) for r in rows]
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
                        self._set_state(db, last_sync=_now(), last_error=None, last_error_at=None)
                        db.execute("COMMIT")
                    except BaseException:
                        if db.in_transaction:
                            db.execute("ROLLBACK")
                        raise
                    sent += len(rows)
            except Exception as exc:
                message = self._mask(f"{type(exc).__name__}: {exc}").splitlines()[0]
                # pymongo appends the whole topology description: keep the gist
                message = message.split(", Topology Description:", 1)[0]
                if len(message) > MAX_ERROR_CHARS:
                    message = message[: MAX_ERROR_CHARS - 3] + "..."
                with contextlib.suppress(Exception):
                    self._set_state(db, last_error=message, last_error_at=_now())
                raise EventSyncError(
                    f"could not sync events to MongoDB ({sent} sent): {message}"
                ) from None
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
        return sent


# --------------------------------------------------------------------------- flusher CLI


def main(argv: list[str] | None = None) -> int:
    """`python -m claude_cage.events sync DB_PATH [...]`; the URI comes from $MONGODB_URI."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m claude_cage.events")
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

    log = EventLog(args.db_path, os.environ.get(URI_ENV), args.mongodb_db, background_sync=False)
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


if __name__ == "__main__":
    sys.exit(main())
