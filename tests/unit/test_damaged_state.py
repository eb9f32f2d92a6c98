"""Fault injection, offline: each file of claude-cage's state (a session's record, the
config file, the event log, a session's lock), damaged in each way, under every command
that reads state. Whatever the damage, a command answers with one `error:` line naming
the file (plus a hint), exits with a documented code, never shows a traceback, and leaves
the other session alone; `list` shows the others and marks a damaged record `damaged`;
a damaged event log is moved aside and a new one takes the events.

These commands find the damage in the data and config directories: they run in-process
over a Context whose engine answers from captured `docker inspect` JSON and refuses any
call that would change something. tests/integration/test_damaged_state.py runs the
commands that act on the engine (start, stop, exec, destroy --force, gc --yes) on the
real one, and the damage only an unprivileged reader meets (a mode 000 file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_cage import paths
from claude_cage.context import Context
from claude_cage.engine.answers import Network, Stats, Volume
from claude_cage.metadata import SessionStore
from tests.conftest import Result
from tests.damage import DAMAGES as ALL_DAMAGES
from tests.damage import DOCUMENTED, FILES, GOOD_CONFIG
from tests.unit.fake_engine import FakeEngine, record
from tests.unit.inprocess import run_main

GOOD, VICTIM = "good", "victim"
# "unreadable" (mode 000) needs a reader without CAP_DAC_OVERRIDE: the integration test.
DAMAGES = {name: damage for name, damage in ALL_DAMAGES.items() if name != "unreadable"}


class ReadingEngine(FakeEngine):
    """Answers the queries of list, status, gc --dry-run and reap --dry-run (no volumes
    or networks beyond the sessions' containers); any call that changes something is
    refused (UnusedEngine), so a damaged file never leads a reader to act."""

    def list_volumes(self) -> list[Volume]:
        self.calls.append("list_volumes")
        return []

    def list_networks(self) -> list[Network]:
        self.calls.append("list_networks")
        return []

    def stats_many(self, names: list[str]) -> dict[str, Stats | None]:
        self.calls.append("stats_many")
        return {name: None for name in names}  # no figures: reap finds nothing to do


def commands(victim: str, good: str) -> list[list[str]]:
    """Every command that reads state without changing the engine's."""
    return [
        ["list"],
        ["list", "--json"],
        ["status", good],
        ["status", victim],
        ["status", victim, "--json"],
        ["gc", "--dry-run"],
        ["events", "--limit", "5"],
        ["events", "--status"],
        ["log", "session", f"check:{victim}", '{"status": "ok"}'],
        ["config", "show"],
        ["config", "validate"],
        ["reap", "--dry-run"],
    ]


def assert_well_behaved(result: Result, args: list[str]) -> None:
    what = f"claude-cage {' '.join(args)} -> {result.code}\n{result.output}"
    assert "Traceback" not in result.output, what
    assert result.code in DOCUMENTED, what
    if result.code == 0:
        return
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, what
    if args[:2] != ["config", "validate"]:  # validate names each problem on its own line
        others = [
            line
            for line in result.stderr.splitlines()
            if not line.startswith(("error:", "hint:", "warning:", "claude-cage: warning:"))
        ]
        assert others == [], what


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("which", FILES)
def test_every_command_survives_a_damaged_file(
    config_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    which: str,
    damage: str,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("CAGE_CLAUDE_CONFIG", "off")
    engine = ReadingEngine(paths.owner_id())
    (config_dir / "config.yaml").write_text(GOOD_CONFIG)
    store = SessionStore(paths.sessions_dir())
    for name in (GOOD, VICTIM):
        record(name, network="none")  # with the settings a start records:
        store.update(name, runtime="runc", memory="2g", cpus="2.0", pids="512", idle_timeout="30")
        engine.add_session(name, companion=False)
    logged = run_main(capsys, monkeypatch, Context(engine=engine), "log", "session", "x:y", "{}")
    assert logged.code == 0, logged.output
    data = paths.data_dir()
    good_record = (data / "sessions" / GOOD / "metadata").read_bytes()
    path = {
        "metadata": data / "sessions" / VICTIM / "metadata",
        "config": config_dir / "config.yaml",
        "events": data / "events.sqlite3",
        "lock": data / "locks" / f"{VICTIM}.lock",
    }[which]
    assert path.exists(), path
    DAMAGES[damage](path)
    damaged_bytes = path.read_bytes() if path.is_file() else None

    results = {}
    for args in commands(VICTIM, GOOD):
        result = run_main(capsys, monkeypatch, Context(engine=engine), *args)
        assert_well_behaved(result, args)
        results[" ".join(args[:2])] = result
        if args[0] == "list" and "--json" in args:
            entries = {s["name"]: s for s in result.json()["sessions"]}
            assert GOOD in entries and not entries[GOOD]["damaged"]
            if which == "metadata":
                assert entries[VICTIM]["damaged"], entries[VICTIM]

    # The damage is noticed, and the file named, wherever a command fails because of
    # it. Harmless: any content in a lock file (flock needs only to open it), and an
    # empty config file (an empty YAML document: no settings).
    harmless = (which == "lock" and damage != "directory") or (
        which == "config" and damage == "empty"
    )
    failed = [r for r in results.values() if r.code != 0]
    if which == "config" and not harmless:
        assert any(str(path) in r.stderr for r in failed), [r.stderr for r in failed]
    if which == "metadata":  # shown as damaged, with the way out
        shown = results["status victim"].json()["session"]
        assert shown["damaged"] and f"destroy --force {VICTIM}" in shown["hint"], shown
    if harmless:
        assert not [r for r in failed if str(path) in r.output], failed
    if which == "events" and damage != "empty":  # moved aside, nothing deleted, a new log
        aside = sorted(data.glob("events.sqlite3.damaged-*"))
        assert aside, list(data.iterdir())
        if damaged_bytes is not None:
            assert aside[0].read_bytes() == damaged_bytes
        assert any("moved it aside" in r.stderr for r in results.values())
        assert results["log session"].code == 0, results["log session"].output
    # the other session is untouched
    assert (data / "sessions" / GOOD / "metadata").read_bytes() == good_record
    assert run_main(capsys, monkeypatch, Context(engine=engine), "status", GOOD).code == 0
