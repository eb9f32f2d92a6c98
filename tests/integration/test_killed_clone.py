"""A `start --clone` killed before its clone arrived (CAGE_TEST_KILL_AT, see
operations.checkpoint): its record says from the first that a clone was asked for, so
`list` shows it as a start that failed, `start NAME` refuses to run it without its clone
(naming how to start it afresh), and `gc` removes all of it."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_cage import audit
from claude_cage.metadata import parse
from tests.conftest import Cage
from tests.integration.workspace_helpers import git, make_repo

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


# Kills at random points of a `start --clone` of a 100 MB repository: seeded, so a run
# can be repeated (CAGE_TEST_KILL_SEED), and spread over the whole start: one point in
# each of KILLS equal slices of the time an unkilled start of the same repository takes
# on this machine, measured first (start_seconds).
KILL_SEED = int(os.environ.get("CAGE_TEST_KILL_SEED", "3027"))
KILLS = 6


def kill_points() -> list[float]:
    """Where each kill falls, as a fraction of a whole start (0.05 to 1.05)."""
    rng = random.Random(KILL_SEED)
    return [round(0.05 + (i + rng.random()) / KILLS, 3) for i in range(KILLS)]


@pytest.fixture(scope="module")
def start_seconds(cage_module: Cage, big_repo: Path) -> float:
    name = cage_module.name("timed")
    began = time.monotonic()
    started = cage_module("start", "--name", name, "--detach", "--clone", str(big_repo))
    took = time.monotonic() - began
    assert started.code == 0, started.output
    assert cage_module("destroy", "--force", "--discard", name).code == 0
    return took


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 files of 100 KiB of hex text (100 MB checked out, about 55 MB packed),
    one commit, packed, and uncommitted changes so the snapshot's working-tree path
    runs too."""
    root = tmp_path_factory.mktemp("big") / "big"
    root.mkdir()
    rng = random.Random(KILL_SEED)
    for i in range(1000):
        folder = root / f"d{i % 20:02}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:04}.txt").write_text(rng.randbytes(50 * 1024).hex())
    git(root, "init", "-q", "-b", "main")
    for args in (["add", "."], ["commit", "-qm", "big"], ["gc", "-q"]):
        git(root, "-c", "gc.auto=0", *args)
    (root / "d00" / "f0000.txt").write_text("changed\n")
    (root / "new.txt").write_text("untracked\n")
    return root


def left_anywhere(cage: Cage, system_tmp: Path) -> dict[str, list[str]]:
    """Everything of this data directory's: engine objects by its owner label, files
    under the data directory other than the event log, lock files and the archives
    `destroy` keeps of destroyed sessions (history/), loop mounts of
    its volume images, and the system temporary directory the command was given."""
    mine = ["--filter", f"label=cage.owner={cage.owner()}"]
    found = {
        "containers": subprocess.run(
            ["docker", "ps", "-a", *mine, "--format", "{{.Names}}"], capture_output=True, text=True
        ).stdout.split(),
        "volumes": subprocess.run(
            ["docker", "volume", "ls", *mine, "--format", "{{.Name}}"],
            capture_output=True,
            text=True,
        ).stdout.split(),
        "data": [
            str(p.relative_to(cage.data_dir))
            for p in cage.data_dir.rglob("*")
            if p.is_file()
            and p.parent.name not in ("locks", "history")  # history: destroy's archives
            and not p.name.startswith("events.")
        ],
        "mounts": [
            m for m in Path("/proc/mounts").read_text().splitlines() if str(cage.data_dir) in m
        ],
        "loops": [
            line
            for line in subprocess.run(
                ["losetup", "-a"], capture_output=True, text=True
            ).stdout.splitlines()
            if str(cage.data_dir) in line
        ],
        "processes": processes_of(cage.data_dir, wait=audit.IDLE_EXIT_SECONDS + 5),
        "tmp": [str(p) for p in system_tmp.iterdir()],
    }
    return {k: v for k, v in found.items() if v}


def processes_of(data_dir: Path, wait: float) -> list[str]:
    """Processes still running for this data directory (their environment names it)
    after `wait` seconds: a killed command's git or upload left at work. The egress
    audit's follower ends on its own, IDLE_EXIT_SECONDS after the last companion."""
    deadline = time.monotonic() + wait
    while (found := _processes_of(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def _processes_of(data_dir: Path) -> list[str]:
    wanted = f"CAGE_DATA_DIR={data_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if wanted in (proc / "environ").read_bytes().split(b"\0"):
                    found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return found


@pytest.mark.parametrize("kill", range(KILLS))
def test_start_clone_killed_at_a_random_point(
    cage: Cage, big_repo: Path, start_seconds: float, tmp_path: Path, kill: int
) -> None:
    delay = round(kill_points()[kill] * start_seconds, 2)
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    env = {**cage.env, "TMPDIR": str(system_tmp)}
    name = cage.name()
    argv = [sys.executable, "-m", "claude_cage", "start", "--name", name, "--detach",
            "--clone", str(big_repo)]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.kill()
    out, err = proc.communicate(timeout=60)
    said = (
        f"seed {KILL_SEED}, kill {kill} at {delay} s of {start_seconds:.1f}: "
        f"exit {proc.returncode}: {err.decode()}"
    )
    assert proc.returncode in (0, KILLED), said
    assert b"Traceback" not in out + err, said

    listed = cage("list", "--json", env={"TMPDIR": str(system_tmp)})
    assert listed.code == 0 and "Traceback" not in listed.output, (said, listed.output)
    entry = {s["name"]: s for s in listed.json()["sessions"]}.get(name)
    if entry and entry["status"] == "running":  # never running without its clone
        assert entry["base"], (said, entry)

    again = cage("start", name, "--detach", env={"TMPDIR": str(system_tmp)})
    assert "Traceback" not in again.output, (said, again.output)
    if again.code == 2:  # a start that did not finish, or one that did (not killed)
        finished = entry and entry["status"] == "running"
        assert ("already running" if finished else "did not finish") in again.stderr, (
            said,
            again.output,
        )
    else:
        assert again.code == 0, (said, again.output)

    done = cage("gc", "--yes", "--json", env={"TMPDIR": str(system_tmp)})
    assert done.code == 0, (said, done.output)
    if name in {s["name"] for s in cage("list", "--json").json()["sessions"]}:
        # a start that finished (before the kill, or again): a session the user keeps
        gone = cage("destroy", "--force", "--discard", name, env={"TMPDIR": str(system_tmp)})
        assert gone.code == 0, (said, gone.output)
    assert left_anywhere(cage, system_tmp) == {}, said
