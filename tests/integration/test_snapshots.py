"""Kept state: snapshot, restore, fork and start --from, on the real engine."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ON_PODMAN, Cage, inspect
from tests.integration.workspace_helpers import git, make_repo

pytestmark = [pytest.mark.engine, pytest.mark.podman]

TRANSCRIPT = "$HOME/.claude/projects/-workspace-proj/session.jsonl"


def start_clone(cage: Cage, repo: Path, name: str) -> None:
    started = cage("start", "--name", name, "--network", "none", "-d", "--clone", str(repo))
    assert started.code == 0, started.output


def inside(cage: Cage, name: str, script: str) -> str:
    run = cage("exec", name, "--", "sh", "-c", script)
    assert run.code == 0, run.output
    return run.stdout


STATE = (
    f"git branch --show-current; git log --format=%s; git status --short; cat *.txt; "
    f"cat {TRANSCRIPT}"
)


def volumes(prefix: str) -> list[str]:
    out = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True).stdout
    return sorted(v for v in out.split() if v.startswith(prefix))


def frozen_and_thawed(container: str, since: str) -> list[str]:
    """The container's pause and unpause events since `since` (epoch seconds), polled
    until both are there (the engine may report the last one a moment late) or 10 s."""
    deadline = time.monotonic() + 10
    while True:
        found = _pause_events(container, since)
        if len(found) >= 2 or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _pause_events(container: str, since: str) -> list[str]:
    run = subprocess.run(
        ["docker", "events", "--since", since, "--until", "0s", "--format", "{{.Action}}",
         "--filter", f"container={container}", "--filter", "event=pause",
         "--filter", "event=unpause"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return run.stdout.split()


def execs(container: str, since: str, until: str) -> list[str]:
    """The lines of the commands of the execs made in the container since `since` (epoch
    seconds), once an exec holding `until` is among them (the engine may report the
    last ones a moment late), or after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        run = subprocess.run(
            ["docker", "events", "--since", since, "--until", "0s", "--format", "{{.Action}}",
             "--filter", f"container={container}", "--filter", "event=exec_create"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        found = [line for line in run.stdout.split("\n") if line]
        if any(until in line for line in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_restore_brings_back_files_branch_and_transcript(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    name = cage.name()
    start_clone(cage, repo, name)
    turn = """'{"entrypoint":"cli","turn":1}'"""  # an interactive conversation's line
    first_turn = f"mkdir -p $(dirname {TRANSCRIPT}) && echo {turn} > {TRANSCRIPT}"
    inside(
        cage,
        name,
        f"git add -A && git commit -qm 'agent: one' && echo two > two.txt && {first_turn}",
    )
    before = inside(cage, name, STATE)

    since = subprocess.run(["date", "+%s"], capture_output=True, text=True).stdout.strip()
    taken = cage("snapshot", name, "--name", f"{name}-s", "--json")
    assert taken.code == 0, taken.output
    assert taken.json()["paused"] is True  # it ran: frozen for the copy, then thawed
    if not ON_PODMAN:  # (Podman logs its events to journald, which this machine lacks)
        assert frozen_and_thawed(f"cage-{name}", since) == ["pause", "unpause"]
    assert inspect(f"cage-{name}")["State"]["Paused"] is False
    assert cage("status", name, "--json").json()["session"]["status"] == "running"

    later = f"rm -f staged.txt && echo later >> two.txt && echo '{{\"turn\": 2}}' >> {TRANSCRIPT}"
    inside(
        cage,
        name,
        f"git add -A && git commit -qm 'agent: two' && git checkout -qb other && {later}",
    )
    assert inside(cage, name, STATE) != before

    restored = cage("restore", name, f"{name}-s", "--json")
    assert restored.code == 0, restored.output
    assert restored.json()["restarted"] is True
    assert restored.json()["continued"] is True  # Claude Code takes up its conversation
    assert inside(cage, name, STATE) == before
    assert cage("status", name, "--json").json()["session"]["branch"] == f"cage/{name}"


def test_fork_gives_each_session_only_its_own_work(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    parent, child = cage.name(), cage.name()
    start_clone(cage, repo, parent)
    inside(cage, parent, "git add -A && git commit -qm 'agent: shared' && echo wip > wip.txt")

    since = subprocess.run(["date", "+%s"], capture_output=True, text=True).stdout.strip()
    forked = cage("fork", parent, child, "--json")
    assert forked.code == 0, forked.output
    assert forked.json()["branch"] == f"cage/{child}"
    assert inside(cage, child, "git branch --show-current").strip() == f"cage/{child}"
    if not ON_PODMAN:  # (Podman logs its events to journald, which this machine lacks)
        # The starting point is found before the new session runs anything: a process of
        # its own could write into the output of an exec made there.
        made = execs(f"cage-{child}", since, until="git branch --show-current")
        assert not [e for e in made if "refs/cage/start" in e]
    assert inside(cage, child, "cat wip.txt") == "wip\n"  # uncommitted work came along
    assert cage("diff", child).stdout == ""  # nothing of its own yet
    idle = cage.name()  # a fork that did nothing holds nothing of its own to lose
    assert cage("fork", parent, idle).code == 0
    assert cage("destroy", idle, "--force").code == 0, "an idle fork counted as unfetched"

    inside(cage, parent, "echo parent > parent-only.txt")
    inside(cage, child, "echo child > child-only.txt && git add -A && git commit -qm 'fork: own'")
    parent_diff = cage("diff", parent, "--stat").stdout
    child_diff = cage("diff", child, "--stat").stdout
    assert "parent-only.txt" in parent_diff and "child-only.txt" not in parent_diff
    assert "child-only.txt" in child_diff
    assert "parent-only.txt" not in child_diff and "wip.txt" not in child_diff

    assert cage("fetch", parent).code == 0 and cage("fetch", child).code == 0
    assert "child-only.txt" not in git(repo, "ls-tree", "-r", "--name-only", f"cage/{parent}")
    assert "parent-only.txt" not in git(repo, "ls-tree", "-r", "--name-only", f"cage/{child}")


def test_stopped_session_snapshot_start_from_and_rm(cage: Cage, tmp_path: Path) -> None:
    name, new = cage.name(), cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d")  # a scratch /workspace
    assert started.code == 0, started.output
    inside(cage, name, "echo kept > /workspace/notes.txt")
    assert cage("stop", name).code == 0

    taken = cage("snapshot", name, "--name", f"{name}-s")
    assert taken.code == 0, taken.output
    listed = cage("snapshot", "list", name, "--json").json()["snapshots"]
    assert [s["name"] for s in listed] == [f"{name}-s"]
    assert listed[0]["source"] == name and listed[0]["size"] > 0
    assert sorted(listed[0]["volumes"]) == [
        f"cage-snap-{name}-s-data",
        f"cage-snap-{name}-s-scratch",
    ]
    assert "notes" not in cage("snapshot", "list").stderr

    made = cage("start", "--from", f"{name}-s", new, "-d", "--json")
    assert made.code == 0, made.output
    assert made.json()["restarted"] is False  # a new session
    assert inside(cage, new, "cat /workspace/notes.txt") == "kept\n"
    assert cage("status", name, "--json").json()["session"]["status"] == "stopped"
    twin = cage.name()
    forked = cage("fork", name, twin)  # from a stopped session too
    assert forked.code == 0, forked.output
    assert inside(cage, twin, "cat /workspace/notes.txt") == "kept\n"
    assert cage("status", name, "--json").json()["session"]["status"] == "stopped"

    assert cage("destroy", "--force", name).code == 0
    assert len(volumes(f"cage-snap-{name}-s-")) == 2  # destroy leaves its snapshots
    gc = cage("gc", "--json")  # a snapshot outlives its session; gc keeps and names it
    assert [s["name"] for s in gc.json()["kept_snapshots"]] == [f"{name}-s"]
    assert cage("snapshot", "rm", f"{name}-s").code == 0
    assert volumes(f"cage-snap-{name}-s") == []
    assert cage("snapshot", "list", "--json").json()["snapshots"] == []


@pytest.mark.parametrize("step", ["snapshot:copied", "snapshot:record-written"])
def test_gc_removes_a_killed_snapshot(cage: Cage, step: str) -> None:
    name = cage.name()
    assert cage("start", "--name", name, "--network", "none", "-d").code == 0
    killed = cage("snapshot", name, "--name", f"{name}-k", env={"CAGE_TEST_KILL_AT": step})
    assert killed.code == -9
    left = volumes(f"cage-snap-{name}-k")
    assert left == [f"cage-snap-{name}-k-data", f"cage-snap-{name}-k-scratch"]
    assert cage("snapshot", "list", "--json").json()["snapshots"] == []
    gc = cage("gc", "--json")
    removed = [i["target"] for i in gc.json()["items"] if i["outcome"] == "removed"]
    kept_dir = cage.data_dir / "snapshots" / f"{name}-k"
    assert sorted(removed) == sorted(left + ([str(kept_dir)] if step.endswith("written") else []))
    assert volumes(f"cage-snap-{name}-k") == [] and not kept_dir.exists()
    assert cage("status", name, "--json").json()["session"]["status"] == "running"
    again = cage("snapshot", name, "--name", f"{name}-k")  # the name is free again
    assert again.code == 0, again.output


def test_refusals(cage: Cage, tmp_path: Path) -> None:
    project = tmp_path / "mounted"
    project.mkdir()
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--mount", f"{project}:ro")
    assert started.code == 0, started.output
    for args in (("fork", name, cage.name()), ("snapshot", name)):
        refused = cage(*args)
        assert refused.code == 2, refused.output
        assert "--mount" in refused.stderr and "Traceback" not in refused.output
        assert refused.stderr.count("error:") == 1
    for args in (("restore", name, "nosuch"), ("start", "--from", "nosuch", cage.name()),
                 ("snapshot", "rm", "nosuch")):  # fmt: skip
        missing = cage(*args)
        assert missing.code == 3, missing.output
        assert "no snapshot named 'nosuch'" in missing.stderr
    assert cage("fork", "nosuch", cage.name()).code == 3
    assert json.loads(cage("list", "--json").stdout)["sessions"][0]["name"] == name


def test_a_fork_runs_nothing_of_the_agents_and_copies_links_as_links(
    cage: Cage, tmp_path: Path
) -> None:
    """The agent prepares its clone for the copy: a git hook that would run on a branch
    rename, a link to a file outside, a file it made unreadable. The fork copies each
    as it is and runs none of it."""
    repo = make_repo(tmp_path / "proj")
    parent, child = cage.name(), cage.name()
    start_clone(cage, repo, parent)
    inside(cage, parent, """
        for hook in reference-transaction post-checkout post-rewrite; do
            printf '#!/bin/sh\\ntouch /workspace/proj/HOOK-RAN\\n' > .git/hooks/$hook
            chmod +x .git/hooks/$hook
        done
        git config core.fsmonitor 'touch /workspace/proj/FSMONITOR-RAN; false'
        ln -s /etc/shadow leak && echo private > .git/locked && chmod 000 .git/locked
    """)  # fmt: skip
    forked = cage("fork", parent, child)
    assert forked.code == 0, forked.output
    found = inside(cage, child, "ls; readlink leak; stat -c %a .git/locked")
    assert "HOOK-RAN" not in found and "FSMONITOR-RAN" not in found
    assert "/etc/shadow\n0\n" in found  # mode 000, as it was
    assert inside(cage, child, "git branch --show-current").strip() == f"cage/{child}"


def test_a_snapshot_keeps_no_credential_and_a_fork_carries_the_key_file(
    cage: Cage, tmp_path: Path
) -> None:
    key = f"sk-ant-test-{uuid.uuid4().hex}"
    key_file = tmp_path / "key"
    key_file.write_text(key)
    name, twin = cage.name(), cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--api-key-file",
                   str(key_file))  # fmt: skip
    assert started.code == 0, started.output
    assert cage("snapshot", name, "--name", f"{name}-s").code == 0
    kept = [p for p in (cage.data_dir / "snapshots").rglob("*") if p.is_file()]
    assert kept and all(key.encode() not in p.read_bytes() for p in kept)
    forked = cage("fork", name, twin)
    assert forked.code == 0 and key not in forked.output
    secret = cage.data_dir / "sessions" / twin / "api_key"
    assert secret.read_text() == key and secret.stat().st_mode & 0o777 == 0o600
    inside_twin = cage("exec", twin, "--", "cat", "/run/cage/secrets/api_key").stdout.strip()
    assert inside_twin == key
    assert key not in (cage.data_dir / "sessions" / twin / "metadata").read_text()
