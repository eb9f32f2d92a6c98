"""Real operations land in the event log with the right type, key and status, and
secrets never do."""

from __future__ import annotations

import secrets

import pytest

from tests.conftest import Cage

pytestmark = pytest.mark.engine


def test_operations_are_logged_by_themselves(cage: Cage) -> None:
    name, key = cage.name("ev"), f"sk-ant-test-{secrets.token_hex(12)}"
    env = {"ANTHROPIC_API_KEY": key}
    assert cage("start", "--name", name, "--detach", env=env).code == 0
    assert cage("exec", name, "--", "true").code == 0
    assert cage("allow", name, "example.test").code == 0
    assert cage("key", "set", name, input=f"sk-ant-test-{secrets.token_hex(12)}\n").code == 0
    assert cage("stop", name).code == 0
    assert cage("destroy", name).code == 0
    assert cage("destroy", name).code == 3  # a failure is an event too
    assert cage("log", "note", f"review:{name}", '{"status": "ok", "by": "test"}').code == 0

    events = cage("events", "--session", name, "--json").json()
    assert events["version"] == 1
    seen = [(e["type"], e["key"], e["value"]["status"]) for e in events["events"]]
    assert seen == [
        ("session", f"start:{name}", "ok"),
        ("session", f"exec:{name}", "ok"),
        ("session", f"allow:{name}", "ok"),
        ("session", f"key-set:{name}", "ok"),
        ("session", f"stop:{name}", "ok"),
        ("session", f"destroy:{name}", "ok"),
        ("session", f"destroy:{name}", "error"),
        ("note", f"review:{name}", "ok"),
    ]
    for event in events["events"]:
        assert {"id", "type", "key", "value", "_ts", "_host", "_project"} <= set(event)
        assert event["_project"] == "claude-cage"
    assert len({e["id"] for e in events["events"]}) == len(seen)
    assert cage("events", "--type", "note", "--json").json()["events"][-1]["value"]["by"] == "test"
    raw = b"".join(p.read_bytes() for p in cage.data_dir.glob("events.sqlite3*"))
    assert key.encode() not in raw
    assert key not in cage("events", "--json").stdout
