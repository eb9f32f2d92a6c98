"""list and status, offline: the engine is the truth for runtime state, metadata follows
it, and the number of engine calls does not grow with the number of sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_cage import metadata, paths
from claude_cage.context import Context
from claude_cage.errors import SessionNotFound
from claude_cage.operations import views
from tests.unit.fake_engine import FakeEngine, record, with_state


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    monkeypatch.setenv("CAGE_DATA_DIR", str(tmp_path / "data"))
    return FakeEngine(paths.owner_id())


def recorded_status(name: str) -> str:
    data = metadata.SessionStore().read(name)
    assert data is not None
    return data["status"]


def test_removed_behind_our_back(engine: FakeEngine) -> None:
    record("web", status="running")
    [entry] = views.list_sessions(Context(engine=engine))
    assert entry["status"] == "removed" and entry["orphan"] is False
    assert recorded_status("web") == "removed"


def test_stopped_behind_our_back(engine: FakeEngine) -> None:
    record("web", status="running")
    engine.add_session("web", running=False)
    [entry] = views.list_sessions(Context(engine=engine))
    assert entry["status"] == "stopped"
    assert recorded_status("web") == "stopped"
    assert views.status(Context(engine=engine), "web", live=False)["status"] == "stopped"


def test_running_again(engine: FakeEngine) -> None:
    record("web", status="stopped")
    engine.add_session("web")
    assert views.status(Context(engine=engine), "web", live=False)["status"] == "running"
    assert recorded_status("web") == "running"


def test_orphan(engine: FakeEngine) -> None:
    engine.add_session("lost")
    [entry] = views.list_sessions(Context(engine=engine))
    assert entry["name"] == "lost" and entry["orphan"] is True and entry["status"] == "running"
    assert entry["network"] == "filtered"  # from the container's labels
    assert metadata.SessionStore().read("lost") is None  # listing creates nothing


def test_other_owners_are_not_listed(engine: FakeEngine) -> None:
    engine.add_session("mine")
    stranger = FakeEngine("someone-else")
    stranger.add_session("theirs")
    engine.listed += stranger.listed
    assert [s["name"] for s in views.list_sessions(Context(engine=engine))] == ["mine"]


def test_status_of_an_unknown_session(engine: FakeEngine) -> None:
    with pytest.raises(SessionNotFound) as err:
        views.status(Context(engine=engine), "nope")
    assert err.value.exit_code == 3


@pytest.mark.parametrize("count", [1, 50])
def test_list_makes_one_engine_call(engine: FakeEngine, count: int) -> None:
    for i in range(count):
        record(f"s{i}")
        engine.add_session(f"s{i}")
    assert len(views.list_sessions(Context(engine=engine))) == count
    assert engine.calls == ["list_containers"]


def test_status_makes_a_fixed_number_of_calls(engine: FakeEngine) -> None:
    record("web")
    engine.add_session("web")
    views.status(Context(engine=engine), "web")
    few = list(engine.calls)
    for i in range(30):
        record(f"s{i}")
        engine.add_session(f"s{i}")
    engine.calls.clear()
    views.status(Context(engine=engine), "web")
    assert engine.calls == few and len(few) <= 6


def test_status_reports_the_engines_oom_killed(engine: FakeEngine) -> None:
    record("web")
    engine.add_session("web", running=False)
    engine.containers["cage-web"] = with_state(engine.containers["cage-web"], oom_killed=True)
    entry = views.status(Context(engine=engine), "web")
    assert entry["oom_killed"] is True and "--memory 8g" in entry["oom_hint"]
