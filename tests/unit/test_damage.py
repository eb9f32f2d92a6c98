"""Damaged state files, offline: the metadata reader tells each damage by name, `list`
marks the damaged session and shows the others, a damaged event log is moved aside
(nothing in it deleted, every event still there), and `log` fails when it did not
record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from claude_cage import metadata, paths
from claude_cage.cli import cli
from claude_cage.context import Context
from claude_cage.errors import DamagedFile
from claude_cage.eventlog.events import EventLog, EventLogError
from claude_cage.metadata import DamagedMetadata, SessionStore
from claude_cage.operations import views
from tests.unit.fake_engine import FakeEngine, record

GOOD = b"name=web\nmode=cli\nstatus=running\ncreated=2026-01-02T03:04:05Z\ncontainer=cage-web\n"


@pytest.fixture
def store(tmp_path: Path) -> SessionStore:
    return SessionStore(tmp_path / "data" / "sessions")


def put(store: SessionStore, content: bytes | None) -> Path:
    path = store.dir("web") / "metadata"
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"name=caf\xe9\nmode=cli\n", "not UTF-8 text"),
        (b"", "empty"),
        (b"\n  \n", "empty"),
        (GOOD[:30], "cut short or not metadata: no created, container"),
        (b"\x00\x17garbage without any key", "cut short or not metadata"),
        (None, "a directory is in its place"),
        (GOOD.replace(b"mode=cli", b"mode=tv"), "unknown mode 'tv'"),
        (GOOD.replace(b"name=web", b"name=other"), "it names session 'other'"),
        (GOOD + b'mounts=["/a:/workspace/a:rw"\nschema=2\n', "mounts is not a list"),
        (GOOD + b"network=none\nimage=x\n", "cut short: its last line"),
    ],
)
def test_each_damage_is_told_by_name(
    store: SessionStore, content: bytes | None, reason: str
) -> None:
    path = put(store, content)
    with pytest.raises(DamagedMetadata) as caught:
        store.read("web")
    assert caught.value.reason.startswith(reason), caught.value.reason
    assert str(path) in caught.value.message
    assert "destroy --force web" in (caught.value.hint or "")
    assert store.names() == ["web"]  # listed, not hidden
    records, damaged = store.scan()
    assert records == {} and list(damaged) == ["web"]


def test_a_seed_record_and_a_full_one_read_back(store: SessionStore) -> None:
    put(store, GOOD)
    assert store.read("web") == metadata.parse(GOOD.decode())
    store.write("web", {**metadata.parse(GOOD.decode()), "network": "none"})
    last = (store.dir("web") / "metadata").read_text().splitlines()[-1]
    assert last == f"schema={metadata.SCHEMA}"
    data = store.read("web")
    assert data is not None and data["network"] == "none"


def test_update_skips_a_damaged_record(store: SessionStore) -> None:
    put(store, b"")
    assert store.update("web", status="stopped") is None
    assert (store.dir("web") / "metadata").read_bytes() == b""  # never overwritten


def test_a_directory_in_place_of_a_secret_is_named(store: SessionStore) -> None:
    put(store, GOOD)
    (store.dir("web") / "api_key").mkdir()
    with pytest.raises(DamagedFile, match="api_key"):
        store.read_secret("web", "api_key")


def test_list_marks_the_damaged_one_and_shows_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    engine = FakeEngine(paths.owner_id())
    record("good")
    record("bad")
    engine.add_session("good")
    engine.add_session("bad")
    (paths.sessions_dir() / "bad" / "metadata").write_bytes(b"\xff\xfe")
    entries = {e["name"]: e for e in views.list_sessions(Context(engine=engine))}
    assert entries["good"]["damaged"] is None and not entries["good"]["orphan"]
    assert entries["bad"]["damaged"] == "not UTF-8 text"
    assert entries["bad"]["status"] == "running"  # the engine still tells
    status = views.status(Context(engine=engine), "bad", live=False)
    assert status["damaged"] == "not UTF-8 text" and "destroy --force bad" in status["hint"]


# --- the event log ---------------------------------------------------------------------


def fill(db: Path, count: int) -> EventLog:
    log = EventLog(db, background_sync=False)
    for i in range(count):
        log.record("session", f"op{i}:web", {"status": "ok", "i": i}, strict=True)
    return log


def test_a_damaged_event_log_is_moved_aside_and_no_event_is_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "events.sqlite3"
    fill(db, 50)
    original = db.read_bytes()
    db.write_bytes(b"\x00" * 100 + original[100:])  # the header gone: "not a database"

    log = EventLog(db, background_sync=False)
    log.record("session", "after:web", {"status": "ok"}, strict=True)
    [aside] = log.moved_aside
    assert "moved it aside" in capsys.readouterr().err
    keys = [e["key"] for e in log.query()]
    assert keys == ["moved-aside:-", "after:web"]  # a new log, which says so

    # Nothing was deleted: with its header back, the old file has every event.
    Path(aside).write_bytes(original[:100] + Path(aside).read_bytes()[100:])
    old = EventLog(aside, background_sync=False).query()
    assert [e["value"]["i"] for e in old] == list(range(50))


@pytest.mark.parametrize("damage", ["garbage", "directory", "truncated"])
def test_every_damage_of_the_event_log_is_recovered(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "events.sqlite3"
    fill(db, 200)
    if damage == "garbage":
        db.write_bytes(b"this is not sqlite" * 100)
    elif damage == "directory":
        db.unlink()
        db.mkdir()
    else:
        db.write_bytes(db.read_bytes()[: 4096 + 100])
    log = EventLog(db, background_sync=False)
    log.record("session", "after:web", {"status": "ok"}, strict=True)
    assert [e["key"] for e in log.query()][-1] == "after:web"
    assert len(log.moved_aside) == 1 and Path(log.moved_aside[0]).exists()


def test_a_busy_database_is_never_moved_aside(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite3"
    fill(db, 1)
    log = EventLog(db, background_sync=False)
    assert not log._recover(sqlite3.OperationalError("database is locked"))
    assert not log._recover(sqlite3.OperationalError("database or disk is full"))
    assert db.exists() and log.moved_aside == []


def test_strict_record_raises_when_the_event_was_not_recorded(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    log = EventLog(blocker / "events.sqlite3", background_sync=False)  # its dir is a file
    assert log.record("session", "a:b", {})["key"] == "a:b"  # lenient: a warning only
    with pytest.raises(EventLogError, match="not recorded"):
        log.record("session", "a:b", {}, strict=True)


def test_log_exits_1_when_the_event_was_not_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CAGE_DATA_DIR", str(blocker))
    monkeypatch.setenv("CAGE_CONFIG_DIR", str(tmp_path / "config"))
    result = CliRunner().invoke(cli, ["log", "session", "review:web", '{"status": "ok"}'])
    assert result.exit_code == 1
    assert isinstance(result.exception, EventLogError)
