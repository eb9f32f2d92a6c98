"""The event log without a network: SQLite, migrations, redaction, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from claude_cage.eventlog import events, outbox, schema
from claude_cage.eventlog import spool as event_spool
from claude_cage.eventlog.events import EventLog, EventSyncError, mask_uri, migrate, redact

SECRET = "s3cret-Pa55"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "events.sqlite3"


@pytest.fixture
def log(db_path: Path) -> EventLog:
    return EventLog(db_path)


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# --------------------------------------------------------------------------- migrations


def test_migrations_are_recorded_once_in_order(log: EventLog, db_path: Path) -> None:
    log.record("operation", "start:web", {"status": "ok"})
    db = _connect(db_path)
    rows = db.execute("SELECT name, applied FROM _migrations ORDER BY rowid").fetchall()
    names = [name for name, _ in rows]
    assert names == [m.__name__ for m in events.MIGRATIONS]
    assert names[0] == "m001_initial"
    assert names == sorted(names)

    # Re-running is a no-op: nothing applied, nothing rewritten.
    assert migrate(db) == []
    assert EventLog(db_path).query() != []  # a fresh instance migrates (nothing) and reads
    assert db.execute("SELECT name, applied FROM _migrations ORDER BY rowid").fetchall() == rows


def test_schema_has_indexes_wal_and_state(log: EventLog, db_path: Path) -> None:
    log.record("operation", "start:web", {"status": "ok"})
    db = _connect(db_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    columns = [r[1] for r in db.execute("PRAGMA table_info(events)")]
    assert columns == [
        "seq",
        "id",
        "type",
        "key",
        "session",
        "status",
        "value_json",
        "ts",
        "host",
        "project",
        "synced",
        "fold",
    ]
    indexes = {r[1]: r for r in db.execute("PRAGMA index_list(events)")}
    assert {"events_ts", "events_session", "events_type", "events_pending", "events_fold"} <= set(
        indexes
    )
    assert indexes["events_pending"][4] == 1  # partial
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'state'").fetchone()


def test_a_new_migration_is_applied_once(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    EventLog(db_path).record("operation", "start:web", {"status": "ok"})
    calls: list[int] = []

    def m999_test_column(db: sqlite3.Connection) -> None:
        calls.append(1)
        db.execute("ALTER TABLE events ADD COLUMN extra TEXT")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, m999_test_column])
    db = _connect(db_path)
    assert migrate(db) == ["m999_test_column"]
    assert migrate(db) == []
    assert calls == [1]
    assert "extra" in [r[1] for r in db.execute("PRAGMA table_info(events)")]


def test_a_failing_migration_rolls_back(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    EventLog(db_path).record("operation", "start:web", {"status": "ok"})

    def m998_broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, m998_broken])
    db = _connect(db_path)
    with pytest.raises(RuntimeError):
        migrate(db)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    assert db.execute("SELECT 1 FROM _migrations WHERE name = 'm998_broken'").fetchone() is None


# --------------------------------------------------------------------------- record, query


def test_record_returns_the_event_shape(log: EventLog) -> None:
    event = log.record("operation", "start:web", {"status": "ok", "image": "cli"})
    assert set(event) == {"id", "type", "key", "value", "_ts", "_host", "_project"}
    assert event["type"] == "operation"
    assert event["key"] == "start:web"
    assert event["value"] == {"status": "ok", "image": "cli"}
    assert event["_project"] == "claude-cage"
    assert event["_ts"].endswith("Z")
    ts = datetime.fromisoformat(event["_ts"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - ts) < timedelta(minutes=1)
    digits, _, rand = event["id"].partition("-")
    assert len(digits) == 20 and digits.isdigit() and len(rand) == 8
    assert log.query() == [event]


def test_ids_are_unique_and_time_ordered(log: EventLog) -> None:
    ids = [log.record("operation", f"op:{i}", {"status": "ok"})["id"] for i in range(20)]
    assert len(set(ids)) == 20
    assert ids == sorted(ids)


def test_query_filters_session_type_since_and_limit(log: EventLog) -> None:
    a = log.record("operation", "start:alpha", {"status": "ok"})
    b = log.record("operation", "start:beta", {"status": "ok"})
    c = log.record("health", "check:alpha", {"status": "degraded"})
    d = log.record("operation", "stop:alpha", {"status": "ok"})
    e = log.record("operation", "build:cli", {"status": "ok", "session": "gamma"})
    f = log.record("operation", "exec:x", {"status": "ok"}, session="delta")

    assert log.query() == [a, b, c, d, e, f]
    assert log.query(session="alpha") == [a, c, d]
    assert log.query(session="gamma") == [e]
    assert log.query(session="delta") == [f]
    assert log.query(type="health") == [c]
    assert log.query(session="alpha", type="operation") == [a, d]
    # limit: the last N, still oldest first
    assert log.query(limit=2) == [e, f]
    assert log.query(session="alpha", limit=2) == [c, d]
    assert log.query(limit=0) == []
    # since: inclusive, on _ts; aware and naive (taken as UTC) datetimes
    since = datetime.fromisoformat(d["_ts"].replace("Z", "+00:00"))
    assert log.query(since=since) == [d, e, f]
    assert log.query(since=since.replace(tzinfo=None)) == [d, e, f]
    later = since.astimezone(timezone_plus_two())
    assert log.query(since=later) == [d, e, f]
    assert log.query(since=datetime.now(UTC) + timedelta(hours=1)) == []


def timezone_plus_two() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=2))


def test_status_column_and_values_are_json(log: EventLog, db_path: Path) -> None:
    log.record("operation", "start:web", {"status": "failed", "path": Path("/x"), "n": [1, 2]})
    row = _connect(db_path).execute("SELECT status, value_json, synced FROM events").fetchone()
    assert row[0] == "failed"
    assert row[2] == 0
    assert log.query()[0]["value"] == {"status": "failed", "path": "/x", "n": [1, 2]}


def test_follow_yields_backlog_then_new_events_and_stops(log: EventLog) -> None:
    first = [log.record("operation", f"start:s{i}", {"status": "ok"}) for i in range(3)]
    stop = threading.Event()
    gen = log.follow(backlog=2, poll_interval=0.01, stop=stop)
    assert [next(gen), next(gen)] == first[1:]
    new = log.record("operation", "stop:s1", {"status": "ok"})
    assert next(gen) == new
    # another writer (another instance, as another process would be)
    other = EventLog(log.db_path).record("operation", "stop:s2", {"status": "ok"})
    assert next(gen) == other
    stop.set()
    assert list(gen) == []


def test_follow_filters_and_can_start_empty(log: EventLog) -> None:
    log.record("operation", "start:a", {"status": "ok"})
    stop = threading.Event()
    gen = log.follow(session="b", backlog=0, poll_interval=0.01, stop=stop)

    def later() -> None:
        log.record("operation", "start:a", {"status": "ok"})
        log.record("operation", "start:b", {"status": "ok"})

    threading.Timer(0.05, later).start()
    event = next(gen)
    assert event["key"] == "start:b"
    gen.close()


# --------------------------------------------------------------------------- redaction


def test_redact_masks_secret_keys_recursively() -> None:
    value = {
        "status": "ok",
        "api_key": SECRET,
        "ApiKey": SECRET,
        "ANTHROPIC_API_KEY": SECRET,
        "apikey": SECRET,
        "X-Api-Key": SECRET,
        "Password": SECRET,
        "db_password": SECRET,
        "client_secret": SECRET,
        "GITHUB_TOKEN": SECRET,
        "authToken": SECRET,
        "Authorization": f"Bearer {SECRET}",
        "nested": {"headers": [{"authorization": SECRET}, {"token": {"deep": SECRET}}]},
        "tuple": ("a", {"secret": SECRET}),
        "unset_token": None,
        "input_tokens": 1234,
        "max_tokens": 8,
        "name": "web",
    }
    out = redact(value)
    assert SECRET not in repr(out)
    assert out["status"] == "ok"
    assert out["api_key"] == out["Authorization"] == out["GITHUB_TOKEN"] == "****"
    assert out["nested"]["headers"][1]["token"] == "****"
    assert out["tuple"] == ["a", {"secret": "****"}]
    assert out["unset_token"] is None
    assert out["input_tokens"] == 1234 and out["max_tokens"] == 8
    assert out["name"] == "web"
    # the input is not modified
    assert value["api_key"] == SECRET


def test_mask_uri() -> None:
    assert mask_uri("mongodb://user:pass@h") == "mongodb://user:****@h"
    assert (
        mask_uri("mongodb+srv://cage:s3cret@db.example.com/x?retryWrites=true")
        == "mongodb+srv://cage:****@db.example.com/x?retryWrites=true"
    )
    assert mask_uri("mongodb://a:b@h1:1,h2:2/db") == "mongodb://a:****@h1:1,h2:2/db"
    # an unescaped '@' in the password is still masked whole
    assert mask_uri("mongodb://u:p@ss@h/db") == "mongodb://u:****@h/db"
    # no password: unchanged
    for plain in ("mongodb://h:27017/db", "mongodb://user@h/db", "no uri here", ""):
        assert mask_uri(plain) == plain
    assert mask_uri("mongodb://h/db?authSource=admin&password=x1") == (
        "mongodb://h/db?authSource=admin&password=****"
    )
    text = "failed: mongodb://cage:pw1@h1/ then https://bot:ghp_x@github.com/r.git"
    assert (
        mask_uri(text) == "failed: mongodb://cage:****@h1/ then https://bot:****@github.com/r.git"
    )


def test_redact_masks_uris_in_strings() -> None:
    out = redact({"uri": "mongodb://cage:s3cret@10.0.0.1/", "msg": ["x mongodb://u:s3cret@h y"]})
    assert out == {"uri": "mongodb://cage:****@10.0.0.1/", "msg": ["x mongodb://u:****@h y"]}


def test_record_always_redacts(log: EventLog, db_path: Path) -> None:
    event = log.record(
        "operation",
        "start:web",
        {
            "status": "ok",
            "token": SECRET,
            "env": {"ANTHROPIC_API_KEY": SECRET},
            "uri": (f"mongodb://cage:{SECRET}@h/"),
        },
    )
    assert SECRET not in repr(event)
    assert SECRET not in repr(log.query())
    for f in db_path.parent.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f


@pytest.mark.parametrize(
    "token",
    [
        "sk-ant-api03-" + "A1b2" * 10,
        "ghp_" + "a1B2" * 9,
        "github_pat_11ABCDEFG0" + "x" * 40,
        "glpat-" + "abcd1234" * 3,
        "xoxb-1234567890-abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
    ],
)
def test_a_token_of_a_known_form_is_masked_wherever_it_stands(token: str) -> None:
    """A transcript line quoting a token, or a URL with one as its user (no password to
    mask), keeps no trace of it in an event or an archive."""
    value = {"text": f"use {token} here", "url": f"https://{token}@github.com/acme/app.git"}
    assert token not in repr(redact(value))
    assert redact({"text": "scikit-learn and sk-video, input_tokens=12"}) == {
        "text": "scikit-learn and sk-video, input_tokens=12"
    }


# --------------------------------------------------------------------------- robustness


def _write_many(db_path: str, worker: int, count: int) -> None:
    log = EventLog(Path(db_path))
    for i in range(count):
        log.record("operation", f"exec:w{worker}", {"status": "ok", "worker": worker, "i": i})


def test_concurrent_writers_lose_no_events(db_path: Path) -> None:
    # Several processes at once, on a database that does not exist yet: they race on
    # creating it, on WAL mode, on the migrations and on every insert.
    workers, count = 6, 40
    ctx = multiprocessing.get_context("fork")  # the project is POSIX-only (flock, Docker)
    procs = [ctx.Process(target=_write_many, args=(str(db_path), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    log = EventLog(db_path)
    all_events = log.query()
    assert len(all_events) == workers * count
    assert len({e["id"] for e in all_events}) == workers * count
    for w in range(workers):
        mine = log.query(session=f"w{w}")
        assert [e["value"]["i"] for e in mine] == list(range(count))
    db = _connect(db_path)
    assert db.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(events.MIGRATIONS)


def test_record_never_raises_on_a_broken_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "events.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    log = EventLog(bad)
    event = log.record("operation", "start:web", {"status": "ok"})
    log.record("operation", "start:web", {"status": "ok"})
    assert event["key"] == "start:web"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err

    # a database path that is a directory
    d = tmp_path / "dir.sqlite3"
    d.mkdir()
    assert EventLog(d).record("operation", "x:y", {"status": "ok"})["key"] == "x:y"


def test_record_never_raises_on_an_odd_value(log: EventLog) -> None:
    cyclic: dict[str, Any] = {"status": "ok"}
    cyclic["self"] = cyclic
    event = log.record("operation", "start:web", cyclic)
    assert event["value"]["status"] == "ok"
    assert json.dumps(event["value"]).endswith('"self": "****"' + "}" * 100)  # MAX_DEPTH

    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no")

    unencodable = log.record("operation", "start:web", {"status": "ok", "x": Unprintable()})
    assert "not recordable" in unencodable["value"]["error"]
    odd_value: Any = {"status": "ok", (1, 2): "tuple key", 3: "x"}
    odd = log.record("operation", "start:web", odd_value)
    assert odd["value"] == {"status": "ok", "3": "x"}
    assert log.query()[-3:] == [event, unencodable, odd]


def test_status_counts_pending(log: EventLog) -> None:
    st = log.status()
    assert st["sink"] == "sqlite"
    assert st["pending"] == 0
    assert st["mongodb_uri"] is None
    assert st["last_error"] is None and st["last_sync"] is None
    assert st["db_path"] == str(log.db_path)
    for i in range(3):
        log.record("operation", f"start:s{i}", {"status": "ok"})
    assert log.status()["pending"] == 3
    assert log.status()["total"] == 3


def test_status_masks_the_uri(db_path: Path) -> None:
    log = EventLog(db_path, f"mongodb://cage:{SECRET}@127.0.0.1:1/", background_sync=False)
    st = log.status()
    assert st["sink"] == "sqlite+mongodb"
    assert st["mongodb_uri"] == "mongodb://cage:****@127.0.0.1:1/"
    assert st["mongodb_db"] == "claude_cage"
    assert SECRET not in repr(st)
    assert SECRET not in repr(log)


def test_sync_without_a_uri_is_a_clear_error(log: EventLog) -> None:
    log.record("operation", "start:web", {"status": "ok"})
    with pytest.raises(EventSyncError, match="no MongoDB URI"):
        log.sync()
    assert log.status()["pending"] == 1


def test_no_uri_starts_no_flusher(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("Popen called")

    monkeypatch.setattr(subprocess, "Popen", boom)
    log.record("operation", "start:web", {"status": "ok"})
    assert log.kick() is False


def test_flusher_is_detached_and_gets_the_uri_by_environment(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[str], dict[str, Any]]] = []

    class FakePopen:
        def __init__(self, args: list[str], **kwargs: Any) -> None:
            calls.append((args, kwargs))

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.setattr(outbox, "_FLUSHERS", [])
    uri = f"mongodb://cage:{SECRET}@127.0.0.1:1/"
    log = EventLog(db_path, uri, "mydb", sync_timeout_ms=700)
    log.record("operation", "start:web", {"status": "ok"})
    assert len(calls) == 1
    args, kwargs = calls[0]
    assert args[:4] == [sys.executable, "-m", "claude_cage.eventlog", "sync"]
    assert str(db_path) in args and "mydb" in args and "700" in args and "--background" in args
    assert all(SECRET not in a for a in args)
    assert kwargs["env"]["MONGODB_URI"] == uri
    assert kwargs["start_new_session"] is True
    for stream in ("stdin", "stdout", "stderr"):
        assert kwargs[stream] is subprocess.DEVNULL

    # A spawned flusher has not started yet (its marker is there): no second one.
    assert log.spawn_marker_path.exists()
    log.record("operation", "stop:web", {"status": "ok"})
    assert len(calls) == 1

    # A flusher holds the lock (it looks again after unlocking): no second one.
    log.spawn_marker_path.unlink()
    fd = outbox.try_lock(log.lock_path)
    assert fd is not None
    try:
        log.record("operation", "stop:web", {"status": "ok"})
    finally:
        outbox.unlock(fd)
    assert len(calls) == 1

    # Neither: a new one.
    log.record("operation", "rm:web", {"status": "ok"})
    assert len(calls) == 2

    # A stale marker (a flusher that never started) does not block spawning forever.
    old = time.time() - 3600
    os.utime(log.spawn_marker_path, (old, old))
    log.record("operation", "rm:web", {"status": "ok"})
    assert len(calls) == 3


def test_background_flusher_without_mongo_keeps_events_pending(db_path: Path) -> None:
    # A real detached flusher against a port nothing listens on: it fails quietly,
    # records a masked error, and the events stay pending.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"mongodb://cage:{SECRET}@127.0.0.1:{port}/"
    log = EventLog(db_path, uri, background_sync=False, sync_timeout_ms=200)
    log.record("operation", "start:web", {"status": "ok"})
    env = dict(os.environ)
    env["MONGODB_URI"] = uri
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(events.__file__).parents[1]), env.get("PYTHONPATH")) if p
    )
    proc = subprocess.run(
        [sys.executable, "-m", "claude_cage.eventlog", "sync", str(db_path), "--timeout-ms", "200"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "could not sync" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    st = log.status()
    assert st["pending"] == 1
    assert st["last_error"] and SECRET not in st["last_error"]

    # The detached form reports nothing, exits 0 and removes the spawn marker.
    log.spawn_marker_path.touch()
    proc = subprocess.run(
        [*proc.args, "--background"], env=env, capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert not log.spawn_marker_path.exists()
    assert log.status()["pending"] == 1


# --------------------------------------------------------------------------- bounds

SMALL = events.Limits(max_size=256 * 1024, max_age_days=90)
PADDING = "x" * 400


def test_past_the_size_limit_the_oldest_events_are_pruned_and_counted(db_path: Path) -> None:
    log = EventLog(db_path, background_sync=False, limits=SMALL)
    for first in range(0, 2900, 100):  # the audit's way: batches
        with log.batch() as batch:
            for i in range(first, first + 100):
                batch.record("operation", f"start:s{i}", {"status": "ok", "pad": PADDING})
    for i in range(2900, 3000):  # an operation's way: one event at a time
        log.record("operation", f"start:s{i}", {"status": "ok", "pad": PADDING})
    status = log.status()
    assert status["size"] <= SMALL.max_size and status["max_size"] == SMALL.max_size
    assert status["pruned"] > 0 and status["pruned"] + status["total"] == 3000
    assert status["pruned_at"] and status["pruned_last"] > 0 and status["pruned_unsent"] == 0
    kept = [e["key"] for e in log.query()]
    assert kept[-1] == "start:s2999" and "start:s0" not in kept  # the oldest went first
    assert db_path.stat().st_size < SMALL.max_size * 1.25  # freed pages are reused


def test_one_large_batch_stays_near_the_size_limit(db_path: Path) -> None:
    """The audit's batches hold thousands of events: the bound is checked within them."""
    log = EventLog(db_path, background_sync=False, limits=SMALL)
    with log.batch() as batch:
        for i in range(3000):
            batch.record("egress", f"blocked:s{i}", {"status": "blocked-host", "pad": PADDING})
    assert log.status()["size"] <= SMALL.max_size
    assert db_path.stat().st_size < SMALL.max_size * 1.6  # at most EVERY events past it


def test_events_past_the_age_limit_are_pruned(db_path: Path) -> None:
    log = EventLog(db_path, background_sync=False)
    log.record("operation", "start:old", {"status": "ok"})
    long_ago = schema.iso(datetime.now(UTC) - timedelta(days=91))
    with _connect(db_path) as db:
        db.execute("UPDATE events SET ts = ?", (long_ago,))
    log.record("operation", "start:new", {"status": "ok"})
    assert [e["key"] for e in log.query()] == ["start:new"]
    assert log.status()["pruned"] == 1


def test_pruning_counts_what_the_mirror_never_had(db_path: Path) -> None:
    uri = "mongodb://127.0.0.1:1/"
    log = EventLog(db_path, uri, background_sync=False, limits=SMALL)
    for first in range(0, 1500, 100):
        with log.batch() as batch:
            for i in range(first, first + 100):
                batch.record("operation", f"start:s{i}", {"status": "ok", "pad": PADDING})
    status = log.status()
    assert status["pruned"] > 0 and status["pruned_unsent"] == status["pruned"]


def test_a_rewritten_fold_keeps_its_id_and_is_sent_again(log: EventLog, db_path: Path) -> None:
    with log.batch() as batch:
        batch.write_fold("k", "egress", "blocked:web", {"status": "blocked-host", "count": 1},
                         session="web")  # fmt: skip
    with _connect(db_path) as db:
        db.execute("UPDATE events SET synced = 1")
    assert log.pending() == 0
    with log.batch() as batch:
        found = batch.open_fold("k")
        assert found is not None and found[2]["count"] == 1
        batch.write_fold("k", "egress", "blocked:web", {**found[2], "count": 2}, session="web",
                         replaces=found[:2])  # fmt: skip
    [event] = log.query()
    assert event["id"] == found[1] and event["value"]["count"] == 2
    assert log.pending() == 1  # the outbox sends it again; the mirror replaces it by id


# --------------------------------------------------------------------------- the spool


def _locked(db_path: Path) -> sqlite3.Connection:
    """Another process's write lock, held until the connection rolls back."""
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_an_event_the_locked_database_cannot_take_waits_in_the_spool(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(events.event_db, "BUSY_TIMEOUT_S", 0.2)
    log = EventLog(db_path, background_sync=False)
    log.record("session", "start:web", {"status": "ok"})
    holder = _locked(db_path)
    stopped = log.record("session", "stop:web", {"status": "ok", "token": SECRET})
    assert "kept in" in capsys.readouterr().err
    spool = event_spool.spool_path(db_path)
    assert spool.stat().st_mode & 0o777 == 0o600 and SECRET not in spool.read_text()
    assert log.status()["spooled"] == 1  # a read while locked does not wait for it
    holder.execute("ROLLBACK")
    # the next read writes it, once, with its own id and time
    assert [e["key"] for e in log.query()] == ["start:web", "stop:web"]
    assert log.query()[-1] == stopped
    assert log.status()["spooled"] == 0 and not spool.exists()
    log.record("session", "start:api", {"status": "ok"})
    assert [e["key"] for e in log.query()].count("stop:web") == 1


def test_a_drain_cut_short_writes_nothing_twice(db_path: Path) -> None:
    log = EventLog(db_path, background_sync=False)
    log.record("session", "start:web", {"status": "ok"})
    event, row = schema.prepare("session", "stop:web", {"status": "ok"}, None)
    event_spool.append(db_path, row)
    with _connect(db_path) as db:  # written, but the drainer died before it deleted the file
        db.execute(schema.INSERT, row)
    event_spool.append(db_path, row)
    spool = event_spool.spool_path(db_path)
    with spool.open("ab") as f:
        f.write(b'["cut short')  # a crash halfway through an append
    assert log.status()["spooled"] == 0
    assert [e["id"] for e in log.query()].count(event["id"]) == 1


def test_a_batch_writes_the_spool_first(db_path: Path) -> None:
    log = EventLog(db_path, background_sync=False)
    log.record("session", "start:web", {"status": "ok"})
    event_spool.append(db_path, schema.prepare("session", "stop:web", {}, None)[1])
    with log.batch() as batch:
        batch.record("egress", "blocked:web", {"status": "blocked-host"})
    with _connect(db_path) as db:
        keys = [k for (k,) in db.execute("SELECT key FROM events ORDER BY seq")]
    assert keys == ["start:web", "stop:web", "blocked:web"]


@pytest.mark.parametrize("damage", ["garbage", "directory", "not an event"])
def test_a_damaged_spool_costs_no_event_and_no_traceback(db_path: Path, damage: str) -> None:
    log = EventLog(db_path, background_sync=False)
    log.record("session", "start:web", {"status": "ok"})
    spool = event_spool.spool_path(db_path)
    if damage == "directory":
        spool.mkdir()
    elif damage == "garbage":
        spool.write_bytes(os.urandom(300) + b"\n")
    else:
        spool.write_text('["id", "t", "k", null, null, "[not json", "ts", null, null]\n')
    log.record("session", "stop:web", {"status": "ok"})
    assert [e["key"] for e in log.query()] == ["start:web", "stop:web"]
    assert isinstance(log.status()["spooled"], int)


def test_redact_masks_what_is_nested_too_deep_and_stays_encodable() -> None:
    """A transcript turn (the session writes it) nested 900 deep, which json.loads
    takes: redact, json.dumps and the OTLP encoding of `events export` once recursed
    past the interpreter's limit. Past MAX_DEPTH it is masked whole, secrets with it."""
    from claude_cage.eventlog.redaction import MAX_DEPTH
    from claude_cage.operations.export import any_value

    value = json.loads('{"a":' + "[" * 900 + '{"password": "' + SECRET + '"}' + "]" * 900 + "}")
    out = redact(value)
    text = json.dumps(out)
    assert SECRET not in text and text.count("[") == MAX_DEPTH - 1
    assert any_value(out)
