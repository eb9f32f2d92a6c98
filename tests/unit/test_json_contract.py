"""The JSON contract of `list --json` and `status NAME --json`, pinned offline.

`list --json`:   {"version": 1, "sessions": [{name, mode, status, network, container,
                  created, engine, ...}], "engines": [{name, reachable, error}]}
`status --json`: {"version": 1, "session": {...the same keys..., "sandbox": {...}}}

The engine answers from captured inspect output (see fake_engine.py); an engine test in
tests/integration/test_sessions.py checks the same keys on real output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from claude_cage import paths
from claude_cage.cli import cli
from claude_cage.engine import fleet
from claude_cage.operations import views
from tests.unit.fake_engine import FakeEngine, container, record

SESSION_KEYS = {"name", "mode", "status", "network", "container", "created", "engine", "runtime"}
STATUSES = {"running", "stopped", "removed"}


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAGE_CONFIG_DIR", str(tmp_path / "config"))
    fake = FakeEngine(paths.owner_id())
    monkeypatch.setattr(
        fleet, "engine_named", lambda name=None, timeout=None, setting="", **_: fake
    )
    return fake


def check_session(entry: dict, name: str) -> None:
    assert entry.keys() >= SESSION_KEYS
    assert entry["name"] == name
    assert entry["mode"] in ("cli", "desktop")
    assert entry["status"] in STATUSES
    assert entry["network"] in ("none", "filtered", "host")
    assert entry["container"] == f"cage-{name}"
    assert isinstance(entry["created"], str)


def run_json(*args: str) -> dict:
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_view_has_the_contract_keys() -> None:
    meta = {
        "name": "web",
        "mode": "cli",
        "status": "running",
        "created": "2026-01-02T03:04:05Z",
        "container": "cage-web",
        "network": "none",
        "engine": "local",
        "runtime": "runsc",
    }
    entry = views.view("web", meta, container("cage-web"))
    check_session(entry, "web")
    assert {k: entry[k] for k in SESSION_KEYS} == {**meta, "status": "running"}
    json.dumps(entry)  # serialisable as it is


def test_list_json(engine: FakeEngine) -> None:
    record("web")
    engine.add_session("web")
    payload = run_json("list")
    assert payload.keys() == {"version", "sessions", "engines"}
    assert payload["version"] == 1
    assert payload["engines"] == [{"name": "local", "reachable": True, "error": None}]
    [entry] = payload["sessions"]
    check_session(entry, "web")
    assert entry["status"] == "running" and entry["created"] == "2026-01-02T03:04:05Z"
    assert entry["orphan"] is False and entry["damaged"] is None  # a string when damaged


def test_list_json_when_empty(engine: FakeEngine) -> None:
    assert run_json("list") == {
        "version": 1,
        "sessions": [],
        "engines": [{"name": "local", "reachable": True, "error": None}],
    }


def test_status_json(engine: FakeEngine) -> None:
    record("web")
    engine.add_session("web")
    payload = run_json("status", "web")
    assert payload.keys() == {"version", "session"}
    assert payload["version"] == 1
    session = payload["session"]
    check_session(session, "web")
    listed = run_json("list")["sessions"][0]
    assert {k: session[k] for k in SESSION_KEYS} == {k: listed[k] for k in SESSION_KEYS}
    sandbox = session["sandbox"]
    assert sandbox.keys() >= {"ok", "checks"}
    assert sandbox["ok"] is True, sandbox
    for check in sandbox["checks"]:
        assert check.keys() == {"check", "ok", "detail"}
        assert isinstance(check["ok"], bool)
    assert "oom_killed" in session and session["oom_killed"] is False


def test_status_json_of_a_removed_session(engine: FakeEngine) -> None:
    record("gone")
    session = run_json("status", "gone")["session"]
    check_session(session, "gone")
    assert session["status"] == "removed" and session["sandbox"] is None
