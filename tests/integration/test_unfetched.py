"""Nothing lost: `destroy` keeps a clone-mode session whose work is not in cage/NAME."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cage, owned
from tests.integration.test_clone import inside, start_clone
from tests.integration.test_clone_hostile import POUR, STALL
from tests.integration.workspace_helpers import git, make_repo

pytestmark = pytest.mark.engine


def objects_of(cage: Cage, name: str) -> tuple[list[str], list[str], bool]:
    """The session's containers and volumes, and whether its record is listed."""
    containers, volumes = owned(cage.owner())
    listed = {s["name"] for s in cage("list", "--json").json()["sessions"]}
    return (
        sorted(c for c in containers if name in c),
        sorted(v for v in volumes if name in v),
        name in listed,
    )


def refused(cage: Cage, name: str, *flags: str) -> str:
    """destroy refuses with exit 1 and one error line plus the hint; nothing is removed."""
    before = objects_of(cage, name)
    run = cage("destroy", name, *flags)
    assert run.code == 1, run.output
    assert f"hint: run 'claude-cage fetch {name}' first, or destroy with --discard" in run.stderr
    assert "Traceback" not in run.output
    assert objects_of(cage, name) == before
    assert before[0] and before[1] and before[2]
    return run.stderr


def test_destroy_refuses_commits_and_changes_not_fetched(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")  # with uncommitted changes: the session's start
    name = start_clone(cage, repo)
    inside(cage, name, "git add -A && git commit -qm 'agent: first' && echo wip > wip.txt")
    first = inside(cage, name, "git rev-parse --short HEAD").strip()

    # --force is about a running session, not about its work.
    said = refused(cage, name, "--force")
    assert f"session {name} has work that is not in cage/{name}" in said
    assert f"1 commit not fetched ({first} agent: first)" in said
    assert "uncommitted changes in the session" in said

    # Fetched, uncommitted work included: nothing is lost. A new commit is, alone.
    assert cage("fetch", name).code == 0
    inside(cage, name, "git add -A && git commit -qm 'agent: second'")
    second = inside(cage, name, "git rev-parse --short HEAD").strip()
    assert cage("stop", name).code == 0
    said = refused(cage, name)
    assert f"1 commit not fetched ({second} agent: second)" in said and first not in said
    assert "uncommitted" not in said

    assert cage("fetch", name).code == 0
    assert git(repo, "log", "-1", "--format=%s", f"cage/{name}").strip() == "agent: second"
    done = cage("destroy", name)
    assert done.code == 0, done.output
    assert objects_of(cage, name) == ([], [], False)


def test_uncommitted_changes_and_discard(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    name = start_clone(cage, repo)
    inside(cage, name, "echo more >> staged.txt && rm untracked.txt")
    assert cage("stop", name).code == 0
    said = refused(cage, name)  # checked in a throwaway container: the session is stopped
    assert "uncommitted changes in the session" in said and "commit not" not in said
    assert not [c for c in owned(cage.owner())[0] if c.startswith("export-")]

    done = cage("destroy", name, "--discard")
    assert done.code == 0, done.output
    assert objects_of(cage, name) == ([], [], False)
    assert git(repo, "branch", "--list", f"cage/{name}") == ""


def test_sessions_with_nothing_to_lose_destroy_without_flags(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    # Nothing new: its uncommitted changes are the user's own, which it started from.
    fresh = start_clone(cage, repo)
    # Uncommitted work that a fetch captured: the same work makes the same commit.
    fetched = start_clone(cage, repo)
    inside(cage, fetched, "echo wip > wip.txt")
    assert cage("fetch", fetched).code == 0
    for name in (fresh, fetched):
        assert cage("stop", name).code == 0
        done = cage("destroy", name)
        assert done.code == 0, done.output
        assert objects_of(cage, name) == ([], [], False)


def test_a_commit_message_cannot_write_to_the_terminal(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    name = start_clone(cage, repo)
    inside(cage, name, "git commit -qam \"$(printf 'evil \\033]52;c;aGk=\\007 end')\"")
    said = refused(cage, name, "--force")
    assert "\x1b" not in said and "\x07" not in said
    assert "evil ?]52;c;aGk=? end" in said
    assert cage("destroy", name, "--force", "--discard").code == 0


def test_a_flooding_session_is_refused_within_the_cap(cage: Cage, tmp_path: Path) -> None:
    # The check runs none of the clone's filters; so the agent stalls it (a FIFO for
    # a ref) and pours zeros into its stderr through /proc.
    repo = make_repo(tmp_path / "proj")
    name = start_clone(cage, repo)
    inside(cage, name, f"echo more >> staged.txt && {STALL} && {POUR}")
    said = refused(cage, name, "--force")
    assert f"cannot check session {name}'s work: the session sent more than 1024 KiB" in said
    assert cage("destroy", name, "--force", "--discard").code == 0


def test_gc_keeps_a_clone_whose_work_is_not_fetched(cage: Cage, tmp_path: Path) -> None:
    # Its container removed by hand: the record and the clone's volume remain, and
    # `fetch` still reads the work from the volume. gc --yes must not drop them.
    repo = make_repo(tmp_path / "proj")
    name = start_clone(cage, repo)
    inside(cage, name, "git add -A && git commit -qm 'agent: work'")
    assert cage("stop", name).code == 0
    subprocess.run(["docker", "rm", f"cage-{name}"], check=True, capture_output=True)

    def gc_items() -> dict[tuple[str, str], dict[str, str]]:
        run = cage("gc", "--yes", "--json")
        assert run.code == 0, run.output
        return {(i["kind"], i["target"]): i for i in run.json()["items"] if i["session"] == name}

    kept = gc_items()
    for key in (("metadata", name), ("volume", f"cage-work-{name}")):
        assert kept[key]["outcome"] == "unfetched", kept
        assert "1 commit not fetched" in kept[key]["reason"], kept
    assert f"cage-work-{name}" in owned(cage.owner())[1]

    assert cage("fetch", name).code == 0
    assert git(repo, "log", "-1", "--format=%s", f"cage/{name}").strip() == "agent: work"
    removed = gc_items()
    assert removed[("metadata", name)]["outcome"] == "removed", removed
    assert objects_of(cage, name) == ([], [], False)


def test_an_ephemeral_clone_is_thrown_away_on_stop_as_start_says(
    cage: Cage, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "proj")
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--clone", str(repo),
                   "--ephemeral")  # fmt: skip
    assert started.code == 0, started.output
    assert f"stopping {name} removes its clone, with any work not fetched" in started.stderr
    inside(cage, name, "git add -A && git commit -qm 'agent: work'")
    assert cage("stop", name).code == 0
    assert objects_of(cage, name) == ([], [], False)
