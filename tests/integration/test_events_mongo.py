"""The event log against a real MongoDB wire-protocol server (nx-27017, in memory).

nx-27017 is started on a free loopback port for each test and killed at teardown.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_cage.eventlog import events, outbox
from claude_cage.eventlog.events import EventLog, EventSyncError
from tests.conftest import REQUIRE_ENGINE

pymongo = pytest.importorskip("pymongo")

pytestmark = pytest.mark.mongo

PASSWORD = "s3cret"
READY_TIMEOUT = 30.0


def _nx_command() -> list[str]:
    beside = Path(sys.executable).with_name("nx-27017")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("nx-27017")
    if found:
        return [found]
    if REQUIRE_ENGINE:
        pytest.fail("nx-27017 is not installed, and CI requires it: pip install -e '.[dev]'")
    pytest.skip("nx-27017 is not installed (pip install -e '.[dev]')")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NxServer:
    """One nx-27017 process with an in-memory database on a fixed loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.command = _nx_command()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def client(self, timeout_ms: int = 2000) -> Any:
        return pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
        )

    def start(self) -> None:
        assert self.proc is None
        self.starts += 1
        log = self.workdir / f"nx-{self.starts}.log"
        self.proc = subprocess.Popen(
            [
                *self.command,
                "--db",
                "memory",
                "--host",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--log-file",
                str(log),
                "--pid-file",
                str(self.workdir / "nx.pid"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log.with_suffix(".out").open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        client = self.client(timeout_ms=200)
        try:
            while True:
                if self.proc.poll() is not None:
                    out = log.with_suffix(".out").read_text(errors="replace")
                    raise RuntimeError(f"nx-27017 exited with {self.proc.returncode}:\n{out}")
                try:
                    client.admin.command("ping")
                    return
                except pymongo.errors.PyMongoError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        # until the port refuses connections
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.02)


def _wait_for_flushers(timeout: float = 30.0) -> None:
    """Let the detached flushers this process started finish (they are never awaited)."""
    deadline = time.monotonic() + timeout
    for proc in list(outbox._FLUSHERS):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    outbox._FLUSHERS.clear()


@pytest.fixture
def mongo(tmp_path: Path) -> Iterator[NxServer]:
    server = NxServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        try:
            _wait_for_flushers()
        finally:
            server.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "events.sqlite3"


def _collection(server: NxServer) -> Any:
    return server.client()["claude_cage"]["events"]


def _poll(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def test_sync_sends_events_with_the_same_ids(mongo: NxServer, db_path: Path) -> None:
    log = EventLog(db_path, mongo.uri, background_sync=False)
    recorded = [
        log.record("operation", "start:web", {"status": "ok", "image": "cli"}),
        log.record("operation", "exec:web", {"status": "ok", "token": "hidden-value"}),
        log.record("health", "check:web", {"status": "degraded", "rss": 123}),
    ]
    assert log.status()["pending"] == 3

    assert log.sync() == 3
    docs = list(_collection(mongo).find())
    assert [d["_id"] for d in docs] == [e["id"] for e in recorded]
    for doc, event in zip(docs, recorded, strict=True):
        assert doc == {"_id": event["id"], **event}
    assert docs[1]["value"]["token"] == "****"

    st = log.status()
    assert st["sink"] == "sqlite+mongodb"
    assert st["pending"] == 0
    assert st["last_error"] is None
    assert st["last_sync"] is not None
    assert log.sync() == 0


def test_the_detached_flusher_sends_in_the_background(mongo: NxServer, db_path: Path) -> None:
    log = EventLog(db_path, mongo.uri)  # background_sync on: record() starts the flusher
    durations = []
    recorded = []
    for i in range(3):
        t0 = time.perf_counter()
        recorded.append(log.record("operation", f"start:s{i}", {"status": "ok"}))
        durations.append(time.perf_counter() - t0)
    assert max(durations) < 0.5, durations

    coll = _collection(mongo)
    assert _poll(lambda: coll.count_documents({}) == 3), list(coll.find())
    assert [d["_id"] for d in coll.find()] == [e["id"] for e in recorded]
    assert _poll(lambda: log.status()["pending"] == 0)
    assert log.status()["last_sync"] is not None


def test_events_recorded_while_down_arrive_once_in_order(
    mongo: NxServer, db_path: Path, record_property: Any
) -> None:
    log = EventLog(db_path, mongo.uri, sync_timeout_ms=300)
    before = [log.record("operation", f"start:b{i}", {"status": "ok"}) for i in range(2)]
    log.sync()
    coll = _collection(mongo)
    assert coll.count_documents({}) == 2

    mongo.stop()
    durations: list[float] = []
    during: list[dict[str, Any]] = []
    for i in range(6):
        t0 = time.perf_counter()
        during.append(log.record("operation", f"exec:d{i}", {"status": "ok", "i": i}))
        durations.append(time.perf_counter() - t0)
    record_property("record_seconds_while_down", [round(d, 4) for d in durations])
    print(f"record() while MongoDB is down: {[f'{d * 1000:.1f} ms' for d in durations]}")
    assert max(durations) < 0.5, durations

    with pytest.raises(EventSyncError) as info:
        log.sync(timeout_ms=300)
    assert "could not sync" in str(info.value)
    st = log.status()
    assert st["pending"] == 6
    assert st["last_error"]

    mongo.start()  # same port, a new (empty) in-memory database
    log.sync()
    _wait_for_flushers()
    coll = _collection(mongo)
    docs = list(coll.find())  # natural order: the order they were written in
    assert [d["_id"] for d in docs] == [e["id"] for e in during]
    assert [d["value"]["i"] for d in docs] == list(range(6))
    for e in during:
        assert coll.count_documents({"_id": e["id"]}) == 1
    st = log.status()
    assert st["pending"] == 0
    assert st["last_error"] is None

    # Syncing again stores nothing twice...
    assert log.sync() == 0
    assert coll.count_documents({}) == 6
    # ...nor does a full resend (upserts keyed by _id).
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("UPDATE events SET synced = 0")
    db.close()
    assert log.sync() == 8
    assert coll.count_documents({}) == 8
    for e in before + during:
        assert coll.count_documents({"_id": e["id"]}) == 1


def test_the_sync_command_line(mongo: NxServer, db_path: Path) -> None:
    log = EventLog(db_path, mongo.uri, background_sync=False)
    for i in range(4):
        log.record("operation", f"start:c{i}", {"status": "ok"})
    env = dict(os.environ)
    env["MONGODB_URI"] = mongo.uri
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(events.__file__).parents[1]), env.get("PYTHONPATH")) if p
    )
    cmd = [sys.executable, "-m", "claude_cage.eventlog", "sync", str(db_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "sent 4" in proc.stdout
    assert _collection(mongo).count_documents({}) == 4
    assert log.status()["pending"] == 0


def _assert_no_password_in_sqlite(db_path: Path) -> None:
    files = [p for p in db_path.parent.iterdir() if p.is_file()]
    assert db_path in files
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), path


def test_the_password_never_shows(mongo: NxServer, db_path: Path) -> None:
    uri = f"mongodb://cage:{PASSWORD}@127.0.0.1:{mongo.port}/"
    log = EventLog(db_path, uri, sync_timeout_ms=500)
    log.record(
        "operation",
        "start:web",
        {"status": "ok", "mongodb_uri": uri, "password": PASSWORD, "note": f"via {uri}"},
    )
    assert PASSWORD not in repr(log)

    # nx-27017 does not implement authentication, so this may fail; either way the
    # password must not show.
    errors: list[BaseException] = []
    try:
        log.sync(timeout_ms=500)
    except EventSyncError as exc:
        errors.append(exc)

    # Against a port nothing listens on, the sync fails for sure.
    mongo.stop()
    log.record("operation", "stop:web", {"status": "ok", "uri": uri})
    with pytest.raises(EventSyncError) as info:
        log.sync(timeout_ms=300)
    errors.append(info.value)
    _wait_for_flushers()

    for err in errors:
        assert PASSWORD not in str(err)
        assert PASSWORD not in repr(err)
        assert PASSWORD not in (getattr(err, "hint", None) or "")
        assert err.__cause__ is None and err.__suppress_context__
    st = log.status()
    assert st["last_error"]
    assert PASSWORD not in st["last_error"]
    assert st["mongodb_uri"] == f"mongodb://cage:****@127.0.0.1:{mongo.port}/"
    assert PASSWORD not in repr(st)
    assert PASSWORD not in repr(log.query())
    _assert_no_password_in_sqlite(db_path)


@pytest.mark.engine
def test_real_operations_survive_mongo_down_and_sync_later(mongo: NxServer, cage) -> None:
    """Operations log to SQLite and MongoDB; with MongoDB down they still succeed fast,
    and a later sync delivers every event exactly once, in order."""
    uri = f"mongodb://cage:{PASSWORD}@127.0.0.1:{mongo.port}/"
    env = {"MONGODB_URI": mongo.uri}
    name = cage.name("ev")
    assert cage("start", "--name", name, "--detach", "--network", "none", env=env).code == 0
    assert _poll(lambda: _collection(mongo).count_documents({"key": f"start:{name}"}) == 1)

    mongo.stop()
    durations = []
    for command in (
        ("stop", name),
        ("start", "--name", name, "--detach"),
        ("destroy", "-f", name),
        ("log", "note", f"review:{name}", '{"status": "ok"}'),
    ):
        began = time.monotonic()
        result = cage(*command, env=env)
        durations.append(time.monotonic() - began)
        assert result.code == 0, result.output
    status = cage("events", "--status", "--json", env={"MONGODB_URI": uri}).json()["status"]
    assert status["pending"] >= 4
    mongo.start()
    synced = cage("events", "--sync", env=env)
    assert synced.code == 0, synced.output
    local = [e["id"] for e in cage("events", "--session", name, "--json").json()["events"]]
    stored = [d["_id"] for d in _collection(mongo).find({"key": {"$regex": f":{name}$"}})]
    assert sorted(stored) == sorted(set(stored))  # none twice
    assert [i for i in local if i in stored] == [i for i in stored if i in local]  # same order
    assert set(local[1:]) <= set(stored)  # all but the first (sent before the restart)
    assert cage("events", "--sync", env=env).code == 0
    assert len(list(_collection(mongo).find({"key": {"$regex": f":{name}$"}}))) == len(stored)
    # A password in the URI shows nowhere.
    for args in (
        ("events", "--status"),
        ("events", "--status", "--json"),
        ("config", "show"),
        ("events", "--sync"),
    ):
        out = cage(*args, env={"MONGODB_URI": uri})
        assert PASSWORD not in out.output
    print("operation times with MongoDB down (s):", [round(d, 2) for d in durations])


@pytest.mark.engine
def test_the_mirror_holds_a_folded_event_with_its_final_count(
    mongo: NxServer, cage: Any, test_hosts: Any
) -> None:
    """A flood of blocked requests is one event in SQLite, rewritten as it counts; the
    mirror replaces its document each time and ends with the same event and count."""
    env = {"MONGODB_URI": mongo.uri}
    name = cage.name("fold")
    assert cage("start", "--name", name, "--detach", env=env).code == 0
    flood = "curl -s -o /dev/null -Z --parallel-max 32 'http://denied.test/[1-3000]'"
    subprocess.run(["docker", "exec", f"cage-{name}", "bash", "-c", flood], timeout=300)
    key = {"key": f"blocked:{name}", "value.host": "denied.test"}

    def mirrored() -> list[dict[str, Any]]:
        docs = list(_collection(mongo).find(key))
        return docs if sum(d["value"]["count"] for d in docs) == 3000 else []

    docs = _poll(mirrored, timeout=60)
    assert docs, list(_collection(mongo).find(key))
    local = [
        e
        for e in cage("events", "--session", name, "--type", "egress", "--json").json()["events"]
        if e["key"] == f"blocked:{name}" and e["value"]["host"] == "denied.test"
    ]
    assert sorted(d["_id"] for d in docs) == sorted(e["id"] for e in local)  # once each
    assert {d["_id"]: d["value"] for d in docs} == {e["id"]: e["value"] for e in local}
    assert _poll(lambda: cage("events", "--status", "--json", env=env).json()["status"][
        "pending"] == 0)  # fmt: skip
