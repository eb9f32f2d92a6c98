"""A `start --clone` killed before its clone arrived (CAGE_TEST_KILL_AT, see
operations.checkpoint): its record says from the first that a clone was asked for, so
`list` shows it as a start that failed, `start NAME` refuses to run it without its clone
(naming how to start it afresh), and `gc` removes all of it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from claude_cage.metadata import parse
from tests.conftest import Cage
from tests.integration.workspace_helpers import make_repo

pytestmark = pytest.mark.engine

KILLED = -9


def left_of(cage: Cage, name: str) -> dict[str, list[str]]:
    every = [
        "--filter",
        f"label=cage.owner={cage.owner()}",
        "--filter",
        f"label=cage.session={name}",
    ]
    found = {
        "containers": subprocess.run(
            ["docker", "ps", "-a", *every, "--format", "{{.Names}}"], capture_output=True, text=True
        ).stdout.split(),
        "volumes": subprocess.run(
            ["docker", "volume", "ls", *every, "--format", "{{.Name}}"],
            capture_output=True,
            text=True,
        ).stdout.split(),
        "metadata": [str(p) for p in (cage.data_dir / "sessions").glob(f"{name}/*")],
    }
    return {k: v for k, v in found.items() if v}


def test_a_clone_start_killed_before_its_clone_arrived(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "project")
    name = cage.name()
    killed = cage(
        "start", "--name", name, "--detach", "--clone", str(repo),
        env={"CAGE_TEST_KILL_AT": "start:before-clone"},
    )  # fmt: skip
    assert killed.code == KILLED, killed.output

    record = parse((cage.data_dir / "sessions" / name / "metadata").read_text())
    assert record["status"] == "starting"
    assert record["repo_name"] == "project" and record["repo"] == str(repo)
    assert not record.get("base")

    listed = cage("list", "--json")
    assert listed.code == 0, listed.output
    entry = {s["name"]: s for s in listed.json()["sessions"]}[name]
    assert entry["status"] == "failed", entry
    status = cage("status", name, "--json")
    assert "Traceback" not in status.output
    assert status.json()["session"]["status"] == "failed"
    # the record stays "starting": list and status never take it for a running session
    assert parse((cage.data_dir / "sessions" / name / "metadata").read_text())["status"] == (
        "starting"
    )

    again = cage("start", name, "--detach")
    assert again.code == 2, again.output
    assert "did not finish" in again.stderr and f"destroy --force {name}" in again.stderr
    assert "Traceback" not in again.output

    done = cage("gc", "--yes", "--json")
    assert done.code == 0, done.output
    mine = [i for i in done.json()["items"] if i["session"] == name]
    assert mine and all(i["outcome"] == "removed" for i in mine), mine
    assert left_of(cage, name) == {}

    fresh = cage("start", "--name", name, "--detach", "--clone", str(repo))
    assert fresh.code == 0, fresh.output
    entry = {s["name"]: s for s in cage("list", "--json").json()["sessions"]}[name]
    assert entry["status"] == "running" and entry["base"], entry
    assert cage("destroy", "--force", "--discard", name).code == 0


@pytest.mark.parametrize("step", ["start:snapshot", "start:before-clone"])
def test_a_killed_clone_start_leaves_no_snapshot_after_gc(
    cage: Cage, tmp_path: Path, step: str
) -> None:
    """The snapshot pack lives in the data directory, never the system's temporary
    directory, and `gc` removes one a killed start left."""
    repo = make_repo(tmp_path / "project")
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    name = cage.name()
    killed = cage(
        "start", "--name", name, "--detach", "--clone", str(repo),
        env={"CAGE_TEST_KILL_AT": step, "TMPDIR": str(system_tmp)},
    )  # fmt: skip
    assert killed.code == KILLED, killed.output
    incoming = cage.data_dir / "incoming"
    left = list(incoming.glob("cage-snapshot-*"))
    assert len(left) == 1 and list(left[0].rglob("*.pack")), left
    assert list(system_tmp.iterdir()) == []

    planned = cage("gc", "--dry-run", "--json")
    assert ("files", str(left[0])) in {(i["kind"], i["target"]) for i in planned.json()["items"]}
    assert left[0].exists()
    done = cage("gc", "--yes", "--json")
    assert done.code == 0, done.output
    assert list(incoming.iterdir()) == []
    assert left_of(cage, name) == {}
    assert list(system_tmp.iterdir()) == []


def test_gc_leaves_the_scratch_of_a_running_command(cage: Cage) -> None:
    """A snapshot or quarantine whose process still runs is at work, not garbage."""
    incoming = cage.data_dir / "incoming"
    incoming.mkdir(parents=True)
    mine = incoming / f"cage-snapshot-{os.getpid()}-abcd"
    mine.mkdir()
    sleeper = subprocess.Popen(["sleep", "1"])
    sleeper.wait()
    gone = incoming / f"cage-incoming-{sleeper.pid}-abcd"
    (gone / "objects").mkdir(parents=True)
    done = cage("gc", "--yes", "--json")
    assert done.code == 0, done.output
    assert mine.exists() and not gone.exists()
