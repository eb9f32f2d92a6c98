"""Snapshots offline: the JSON contract of `snapshot list`, damaged snapshot files,
and the refusals that come before any engine call (exit 2 and 3, one line each)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from claude_cage import metadata, paths, record
from claude_cage.cli import cli
from claude_cage.context import Context
from claude_cage.errors import CageError
from claude_cage.operations import snapshot
from claude_cage.record import Mount, SessionRecord

LISTED_KEYS = {"name", "source", "created", "engine", "size", "volumes", "age", "source_exists"}


def keep(snap: str, source: str = "web", kinds: tuple[str, ...] = ("work", "data")) -> None:
    found = snapshot.Snapshot(snap, source, "2026-01-02T03:04:05Z", "", 1234, kinds)
    kept = SessionRecord(name=source, repo_name="proj", branch=f"cage/{source}")
    snapshot._save(Context(), found, kept)


def run(*args: str) -> tuple[int, str, str]:
    """The command in-process: its exit code, stdout, and its error as main() shows it."""
    result = CliRunner().invoke(cli, list(args))
    if isinstance(result.exception, CageError):
        return result.exception.exit_code, result.stdout, f"error: {result.exception.message}"
    return result.exit_code, result.stdout, result.stderr


def test_snapshot_list_json_contract(config_dir: Path) -> None:
    keep("web-1")
    code, out, _err = run("snapshot", "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["version"] == 1 and data["damaged"] == []
    (entry,) = data["snapshots"]
    assert entry.keys() == LISTED_KEYS
    assert entry["volumes"] == ["cage-snap-web-1-work", "cage-snap-web-1-data"]
    assert (entry["source"], entry["size"], entry["source_exists"]) == ("web", 1234, False)
    found, kept = snapshot.load("web-1")
    assert kept.branch == "cage/web" and found.kinds == ("work", "data")


def test_a_damaged_snapshot_is_listed_apart_never_a_traceback(config_dir: Path) -> None:
    keep("good")
    keep("bad")
    (paths.snapshots_dir() / "bad" / "snapshot").write_text("garbage\n")
    (paths.snapshots_dir() / "bad" / "record").write_bytes(b"\xff\xfe")
    code, out, _err = run("snapshot", "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert [s["name"] for s in data["snapshots"]] == ["good"] and data["damaged"] == ["bad"]
    code, _out, err = run("restore", "web", "bad")
    assert code == 1 and "Traceback" not in err


def test_unknown_snapshots_exit_3(config_dir: Path) -> None:
    for args in (["snapshot", "rm", "nosuch"], ["restore", "web", "nosuch"],
                 ["start", "--from", "nosuch", "new"]):  # fmt: skip
        code, _out, err = run(*args)
        assert code == 3, err
        assert "no snapshot named 'nosuch'" in err


def test_a_mount_session_is_refused_before_any_engine_call(config_dir: Path) -> None:
    store = metadata.SessionStore()
    mount = (Mount("/src", "/workspace/src", False),)
    mounted = SessionRecord(
        name="web", created="2026-01-02T03:04:05Z", container="cage-web", mounts=mount
    )
    with store.lock("web"):
        store.write("web", record.to_fields(mounted))
    for args in (["snapshot", "web"], ["fork", "web", "web2"]):
        code, _out, err = run(*args)
        assert code == 2, err
        assert "--mount" in err
    code, _out, err = run("fork", "nosuch", "other")
    assert code == 3 and "no session named 'nosuch'" in err


def test_restore_refuses_another_sessions_snapshot_and_an_ephemeral_session(
    config_dir: Path,
) -> None:
    keep("web-1", source="web")
    store = metadata.SessionStore()
    for name, ephemeral in (("web", True), ("api", False)):
        rec = SessionRecord(name=name, created="2026-01-02T03:04:05Z",
                            container=f"cage-{name}", ephemeral=ephemeral)  # fmt: skip
        with store.lock(name):
            store.write(name, record.to_fields(rec))
    code, _out, err = run("restore", "api", "web-1")
    assert code == 2 and "is of session web" in err
    code, _out, err = run("restore", "web", "web-1")
    assert code == 2 and "--ephemeral" in err


def test_a_fork_into_itself_is_refused_not_a_deadlock(config_dir: Path) -> None:
    store = metadata.SessionStore()
    rec = SessionRecord(name="web", created="2026-01-02T03:04:05Z", container="cage-web")
    with store.lock("web"):
        store.write("web", record.to_fields(rec))
    code, _out, err = run("fork", "web", "web")
    assert code == 2 and "into itself" in err
