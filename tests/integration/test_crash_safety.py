"""Crash safety: the CLI is killed with SIGKILL between two steps of start, stop or
destroy (CAGE_TEST_KILL_AT=<step>, see operations.checkpoint). Afterwards `list` still
tells the truth, its metadata follows the engine, `gc --dry-run` and `gc --yes` agree
with it, `gc` cleans what was half made and never removes a running session, and the
name can be used again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from claude_cage.metadata import REQUIRED, parse
from tests.conftest import Cage

pytestmark = pytest.mark.engine

KILLED = -9
START_STEPS = [
    "start:record-written",
    "start:volumes",
    "start:companion-created",
    "start:companion-started",
    "start:session-created",
    "start:session-started",
    "start:before-metadata",
]
DESTROY_STEPS = ["remove:containers", "remove:volume", "destroy:before-metadata"]
EPHEMERAL_STOP_STEPS = ["stop:session-stopped", "stop:companion-stopped", "remove:volume"]
STOP_STEPS = ["stop:session-stopped", "stop:companion-stopped"]


def docker_names(kind: list[str], cage: Cage, name: str) -> list[str]:
    filters = [
        "--filter",
        f"label=cage.owner={cage.owner()}",
        "--filter",
        f"label=cage.session={name}",
    ]
    fmt = "{{.Name}}" if kind[0] == "volume" else "{{.Names}}"
    out = subprocess.run(
        ["docker", *kind, *filters, "--format", fmt], capture_output=True, text=True, check=True
    ).stdout
    return sorted(out.split())


def leftovers(cage: Cage, name: str) -> dict[str, list[str]]:
    found = {
        "containers": docker_names(["ps", "-a"], cage, name),
        "volumes": docker_names(["volume", "ls"], cage, name),
        "metadata": [str(p) for p in (cage.data_dir / "sessions").glob(f"{name}/*")],
    }
    return {k: v for k, v in found.items() if v}


def engine_status(container: str) -> str:
    run = subprocess.run(
        ["docker", "inspect", "--format", "{{.State.Status}}", container],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        return "removed"
    return "running" if run.stdout.strip() in ("running", "restarting") else "stopped"


def read_metadata(cage: Cage, name: str) -> dict | None:
    path = cage.data_dir / "sessions" / name / "metadata"
    if not path.exists():
        return None
    data = parse(path.read_text())
    assert all(key in data for key in REQUIRED), data
    return data


def assert_consistent(cage: Cage, name: str) -> dict | None:
    """`list` answers without a traceback, agrees with the engine, and the metadata
    (when there is any) agrees with `list`. Returns the session's list entry."""
    result = cage("list", "--json")
    assert result.code == 0, result.output
    assert "Traceback" not in result.output
    entries = {s["name"]: s for s in result.json()["sessions"]}
    entry = entries.get(name)
    truth = engine_status(f"cage-{name}")
    meta = read_metadata(cage, name)
    if entry is None:
        assert truth == "removed" and meta is None
        return None
    assert entry["status"] == truth, (entry, truth)
    assert entry["orphan"] == (meta is None)
    if meta is not None:  # a start that never finished keeps saying so, until it runs
        assert meta["status"] == entry["status"] or (
            meta["status"] == "starting" and entry["status"] != "running"
        ), (meta, entry)
    return entry


def gc_yes(cage: Cage) -> dict:
    result = cage("gc", "--yes", "--json")
    assert result.code == 0, result.output
    return result.json()


def start(cage: Cage, name: str, *extra: str, env: dict | None = None):
    return cage("start", "--name", name, "--detach", *extra, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("step", START_STEPS)
def test_killed_start_of_a_new_session(cage: Cage, step: str, tmp_path: Path) -> None:
    """The record is written before the first container: whatever the step, `list`
    shows the session (not an orphan), `gc --dry-run` plans exactly what `gc --yes`
    then does, and a session that runs is kept, never removed."""
    name = cage.name()
    key = tmp_path / "key"
    key.write_text("sk-ant-test-0123456789abcdef\n")
    killed = start(
        cage,
        name,
        "--network",
        "filtered",
        "--api-key-file",
        str(key),
        env={"CAGE_TEST_KILL_AT": step},
    )
    assert killed.code == KILLED, killed.output

    entry = assert_consistent(cage, name)
    assert entry is not None and not entry["orphan"], entry
    running = entry["status"] == "running"
    dry = cage("gc", "--dry-run", "--yes", "--json")
    assert dry.code == 0, dry.output
    planned = {(i["kind"], i["target"]) for i in dry.json()["items"] if i["session"] == name}
    done = {
        (i["kind"], i["target"])
        for i in gc_yes(cage)["items"]
        if i["session"] == name and i["outcome"] == "removed"
    }
    assert planned == done, (planned, done)
    if running:  # a session: nothing of it is garbage
        assert planned == set()
        assert engine_status(f"cage-{name}") == "running"
        assert (read_metadata(cage, name) or {}).get("status") == "running"
        assert f"cage-data-{name}" in docker_names(["volume", "ls"], cage, name)
        assert cage("stop", name).code == 0
    else:  # a start that did not finish: all of it goes, the record too
        assert ("metadata", name) in planned
        assert leftovers(cage, name) == {}
    assert_consistent(cage, name)

    again = start(cage, name, "--network", "filtered")
    assert again.code == 0, again.output
    assert engine_status(f"cage-{name}") == "running"


def test_a_running_session_without_metadata_is_adopted(cage: Cage) -> None:
    """Its record is rebuilt from the labels and the engine; its data volume stays."""
    name = cage.name()
    project = cage.data_dir.parent / "my project: a=b"
    project.mkdir()
    assert start(cage, name, "--network", "filtered", "--mount", f"{project}:ro").code == 0
    original = read_metadata(cage, name)
    assert original is not None
    (cage.data_dir / "sessions" / name / "metadata").unlink()

    listed = assert_consistent(cage, name)
    assert listed is not None and listed["orphan"] and listed["status"] == "running"
    dry = cage("gc", "--dry-run", "--json").json()["items"]
    assert [(i["kind"], i["outcome"]) for i in dry if i["session"] == name] == [
        ("session", "planned")
    ]
    plain = cage("gc", "--yes")
    assert plain.code == 0, plain.output
    assert f"adopting session {name}" in plain.stderr  # named before anything is done
    assert engine_status(f"cage-{name}") == "running"
    assert f"cage-data-{name}" in docker_names(["volume", "ls"], cage, name)
    rebuilt = read_metadata(cage, name)
    assert rebuilt is not None
    for key in ("mode", "network", "container", "image", "mounts"):
        assert rebuilt[key] == original[key], key
    assert sorted(rebuilt["allowed_hosts"]) == sorted(original["allowed_hosts"])
    listed = assert_consistent(cage, name)
    assert listed is not None and not listed["orphan"]
    assert cage("gc", "--dry-run", "--json").json()["items"] == []


def test_start_adopts_a_running_session_with_damaged_metadata(cage: Cage) -> None:
    name = cage.name()
    assert start(cage, name, "--network", "none").code == 0
    path = cage.data_dir / "sessions" / name / "metadata"
    path.write_text("")
    listed = {s["name"]: s for s in cage("list", "--json").json()["sessions"]}
    assert listed[name]["damaged"] == "empty" and listed[name]["status"] == "running"
    again = start(cage, name)
    assert again.code == 0, again.output
    assert "adopted" in again.stderr
    assert [p.name.split("-")[0] for p in path.parent.glob("metadata.damaged-*")] == [
        "metadata.damaged"
    ]  # kept, not deleted
    meta = read_metadata(cage, name)
    assert meta is not None and meta["network"] == "none"
    assert engine_status(f"cage-{name}") == "running"


@pytest.mark.parametrize("step", ["start:companion-created", "start:session-started"])
def test_killed_restart_of_a_stopped_session(cage: Cage, step: str) -> None:
    name = cage.name()
    assert start(cage, name, "--network", "filtered").code == 0
    assert cage("stop", name).code == 0

    killed = start(cage, name, env={"CAGE_TEST_KILL_AT": step})
    assert killed.code == KILLED, killed.output
    entry = assert_consistent(cage, name)
    assert entry is not None and not entry["orphan"]

    gc_yes(cage)  # a stopped or running session with metadata is not garbage
    assert read_metadata(cage, name) is not None
    volumes = [f"cage-data-{name}", f"cage-scratch-{name}", f"cage-sock-{name}"]
    assert docker_names(["volume", "ls"], cage, name) == volumes  # the scratch /workspace too
    if entry["status"] == "stopped":
        assert start(cage, name).code == 0
    assert engine_status(f"cage-{name}") == "running"
    assert engine_status(f"companion-cage-{name}") == "running"
    assert cage("stop", name).code == 0


@pytest.mark.parametrize("step", STOP_STEPS)
def test_killed_stop(cage: Cage, step: str) -> None:
    name = cage.name()
    assert start(cage, name, "--network", "filtered").code == 0

    killed = cage("stop", name, env={"CAGE_TEST_KILL_AT": step})
    assert killed.code == KILLED, killed.output
    entry = assert_consistent(cage, name)
    assert entry is not None and entry["status"] == "stopped"

    gc_yes(cage)  # takes the stray proxy, keeps the stopped session
    assert engine_status(f"companion-cage-{name}") != "running"
    assert read_metadata(cage, name) is not None
    assert cage("start", "--name", name, "--detach").code == 0
    assert engine_status(f"cage-{name}") == "running"


@pytest.mark.parametrize("step", EPHEMERAL_STOP_STEPS)
def test_killed_stop_of_an_ephemeral_session(cage: Cage, step: str) -> None:
    name = cage.name()
    assert start(cage, name, "--network", "filtered", "--ephemeral").code == 0

    killed = cage("stop", name, env={"CAGE_TEST_KILL_AT": step})
    assert killed.code == KILLED, killed.output
    assert_consistent(cage, name)
    gc_yes(cage)
    assert leftovers(cage, name) == {}
    assert start(cage, name, "--network", "filtered", "--ephemeral").code == 0


@pytest.mark.parametrize("step", DESTROY_STEPS)
def test_killed_destroy(cage: Cage, step: str) -> None:
    name = cage.name()
    assert start(cage, name, "--network", "filtered").code == 0

    killed = cage("destroy", "--force", name, env={"CAGE_TEST_KILL_AT": step})
    assert killed.code == KILLED, killed.output
    entry = assert_consistent(cage, name)
    assert entry is not None and entry["status"] == "removed"

    plain = cage("gc", "--json")  # no TTY, no --yes: the metadata stays
    assert plain.code == 0, plain.output
    kept = [i for i in plain.json()["items"] if i["kind"] == "metadata"]
    assert [(i["target"], i["outcome"]) for i in kept] == [(name, "kept")]
    assert read_metadata(cage, name) is not None

    gc_yes(cage)
    assert leftovers(cage, name) == {}
    assert start(cage, name).code == 0


def test_gc_dry_run_reports_and_changes_nothing(cage: Cage) -> None:
    name = cage.name()
    killed = start(
        cage, name, "--network", "filtered", env={"CAGE_TEST_KILL_AT": "start:session-created"}
    )
    assert killed.code == KILLED
    before = leftovers(cage, name)
    assert before["containers"] and before["volumes"] and before["metadata"]

    dry = cage("gc", "--dry-run", "--yes", "--json")
    assert dry.code == 0, dry.output
    planned = {(i["kind"], i["target"]) for i in dry.json()["items"]}
    assert ("container", f"cage-{name}") in planned
    assert ("volume", f"cage-data-{name}") in planned
    assert leftovers(cage, name) == before


def test_gc_never_touches_objects_of_another_data_dir(cage: Cage, tmp_path: Path) -> None:
    """Another data directory's half-made session is not this one's garbage."""
    other_env = {"CAGE_DATA_DIR": str(tmp_path / "other-data")}
    name = cage.name()
    killed = start(
        cage,
        name,
        "--network",
        "none",
        env={**other_env, "CAGE_TEST_KILL_AT": "start:session-created"},
    )
    assert killed.code == KILLED
    try:
        assert cage("gc", "--yes").code == 0
        out = subprocess.run(
            ["docker", "inspect", "--format", "{{json .Config.Labels}}", f"cage-{name}"],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, "gc removed another data directory's container"
        assert json.loads(out.stdout)["managed-by"] == "claude-cage"
    finally:
        assert cage("gc", "--yes", env=other_env).code == 0
    assert engine_status(f"cage-{name}") == "removed"
