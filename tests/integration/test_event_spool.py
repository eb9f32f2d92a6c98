"""Events the database cannot take now are kept, not lost: a `stop` while another
process holds the event log's write lock past its busy timeout succeeds, its event
waits in the spool beside the database (`events --status` counts it), and it is in the
log, once, as soon as the lock is gone."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import Cage

pytestmark = pytest.mark.engine


def test_a_stop_under_a_locked_event_log_is_in_the_log_once_the_lock_is_gone(
    cage: Cage,
) -> None:
    name = cage.name("spool")
    assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    db = cage.data_dir / "events.sqlite3"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than 10 s
    try:
        stopped = cage("stop", name)
        assert stopped.code == 0, stopped.output
        assert "Traceback" not in stopped.output
        assert "kept in" in stopped.stderr, stopped.stderr
        status = cage("events", "--status", "--json").json()["status"]
        assert status["spooled"] >= 1
        with sqlite3.connect(db) as reader:
            keys = [k for (k,) in reader.execute("SELECT key FROM events")]
        assert f"stop:{name}" not in keys  # not in the database yet
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    found = cage("events", "--session", name, "--json").json()["events"]
    assert [e["key"] for e in found].count(f"stop:{name}") == 1, found
    assert cage("events", "--status", "--json").json()["status"]["spooled"] == 0
    assert not (cage.data_dir / "events.sqlite3.spool").exists()
