"""Clone mode: the session's own copy, the host untouched, and the way back."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Cage, inspect, owned
from tests.integration.workspace_helpers import fingerprint, git, make_repo

pytestmark = [pytest.mark.engine, pytest.mark.podman]


def start_clone(cage: Cage, repo: Path, *extra: str) -> str:
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--clone", str(repo),
                   "--json", *extra)  # fmt: skip
    assert started.code == 0, started.output
    return name


def inside(cage: Cage, name: str, script: str) -> str:
    run = cage("exec", name, "--", "sh", "-c", script)
    assert run.code == 0, run.output
    return run.stdout


def test_the_copy_branch_and_uncommitted_work_with_the_host_untouched(
    cage: Cage, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "proj")
    head = git(repo, "rev-parse", "HEAD").strip()
    before = fingerprint(repo)
    status_before = git(repo, "status", "--porcelain")
    name = start_clone(cage, repo)
    other = start_clone(cage, repo)  # several sessions may clone one repository

    container = inspect(f"cage-{name}")
    binds = [m for m in container["Mounts"] if m["Type"] == "bind"]
    # No host directory: only the read-only managed settings claude-cage writes.
    assert [m["Destination"] for m in binds] == ["/etc/claude-code"], binds
    volume = [m for m in container["Mounts"] if m["Destination"] == "/workspace/proj"]
    assert volume and volume[0]["Type"] == "volume" and volume[0]["Name"] == f"cage-work-{name}"

    assert inside(cage, name, "pwd").strip() == "/workspace/proj"
    assert inside(cage, name, "git branch --show-current").strip() == f"cage/{name}"
    assert inside(cage, other, "git branch --show-current").strip() == f"cage/{other}"
    assert inside(cage, name, "git rev-parse HEAD").strip() == head
    # The same staged, unstaged and untracked state as the user's; no ignored file.
    assert inside(cage, name, "git status --porcelain") == status_before
    assert inside(cage, name, "cat staged.txt unstaged.txt") == "one\nstaged\none\nunstaged\n"
    assert inside(cage, name, "ls") == "src\nstaged.txt\nunstaged.txt\nuntracked.txt\n"
    owners = inside(cage, name, "id -u; stat -c %u . .git src/main.py; touch new && echo ok")
    uid = owners.split()[0]
    assert owners.split() == [uid, uid, uid, uid, "ok"]

    assert fingerprint(repo) == before, "the host repository changed"

    listed = {s["name"]: s for s in cage("list", "--json").json()["sessions"]}
    assert listed[name]["repo"] == str(repo)
    assert listed[name]["branch"] == f"cage/{name}"
    assert listed[name]["base"] == head
    status = cage("status", name, "--json").json()["session"]
    assert (status["repo"], status["branch"], status["base"]) == (str(repo), f"cage/{name}", head)
    text = cage("status", name).stdout
    assert f"cage/{name}" in text and str(repo) in text
    assert f"cage/{name}" in cage("list").stdout


def test_diff_fetch_apply_and_merge(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    head = git(repo, "rev-parse", "HEAD").strip()
    name = start_clone(cage, repo)
    inside(
        cage, name,
        "git add -A && git commit -qm 'agent: first' && echo agent >> src/main.py"
        " && git commit -qam 'agent: second' && echo wip > wip.txt && echo more >> staged.txt",
    )  # fmt: skip

    # diff: only what the session changed since it started (the user's own uncommitted
    # changes were its starting point), committed or not, with the user's paths.
    stat = cage("diff", name, "--stat")
    assert stat.code == 0, stat.output
    assert "src/main.py" in stat.stdout and "wip.txt" in stat.stdout
    assert "unstaged.txt" not in stat.stdout and "untracked.txt" not in stat.stdout
    full = cage("diff", name).stdout
    assert "+agent" in full and "+wip" in full and "+more" in full

    # fetch: the branch, with the commits plus one for the uncommitted work; the user's
    # checkout, index and working tree stay as they were.
    status_before, files_before = git(repo, "status", "--porcelain"), fingerprint(repo)
    fetched = cage("fetch", name, "--json")
    assert fetched.code == 0, fetched.output
    branch = f"cage/{name}"
    assert fetched.json()["branch"] == branch
    log = git(repo, "log", "--format=%s", f"{head}..{branch}").splitlines()
    assert log == [f"Uncommitted work in session {name}", "agent: second", "agent: first"]
    # The uncommitted work's commit: dated when the work was done, committed by the user
    # (their repository's identity), authored by the session.
    who = git(repo, "log", "-1", "--format=%an|%cn <%ce>|%ct", branch).strip().split("|")
    assert who[:2] == ["claude-cage", "user <user@example.invalid>"], who
    assert abs(int(who[2]) - time.time()) < 600, who  # not 1970
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert git(repo, "status", "--porcelain") == status_before
    worktree = {k: v for k, v in fingerprint(repo).items() if not k.startswith(".git")}
    assert worktree == {k: v for k, v in files_before.items() if not k.startswith(".git")}
    git(repo, "fsck", "--strict")  # the objects that came over are whole

    # apply: the change lands as uncommitted changes in the user's working tree.
    applied = cage("apply", name)
    assert applied.code == 0, applied.output
    assert (repo / "wip.txt").read_text() == "wip\n"
    assert (repo / "src/main.py").read_text() == "print('hi')\nagent\n"
    assert (repo / "staged.txt").read_text() == "one\nstaged\nmore\n"
    assert git(repo, "rev-parse", "HEAD").strip() == head

    # merge refuses while that would overwrite the user's uncommitted changes...
    refused = cage("merge", name)
    assert refused.code == 2, refused.output
    assert "error: merging" in refused.stderr and "hint: commit or stash" in refused.stderr
    assert git(repo, "rev-parse", "HEAD").strip() == head
    # ...and merges once the tree is clean, after the session has stopped too.
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfd")
    assert cage("stop", name).code == 0
    merged = cage("merge", name, "--json")
    assert merged.code == 0, merged.output
    assert git(repo, "rev-parse", "HEAD").strip() == git(repo, "rev-parse", branch).strip()
    assert (repo / "wip.txt").read_text() == "wip\n"
    assert not [c for c in owned(cage.owner())[0] if c.startswith("export-")]

    # After destroy: not found.
    assert cage("destroy", name).code == 0
    for command in ("diff", "fetch", "merge", "apply"):
        gone = cage(command, name)
        assert gone.code == 3, (command, gone.output)


def test_bad_input(cage: Cage, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    repo = make_repo(tmp_path / "proj")
    cases = [
        (["--clone", str(plain)], "not in a git repository"),
        (["--clone", str(bare)], "bare repository"),
        (["--clone", str(tmp_path / "missing")], "no such directory"),
        (["--clone", str(repo), "--mount", str(repo)], "would both be /workspace/proj"),
        (["--clone", str(repo / "src"), "--mount", f"{repo}:ro"], "would both be"),
    ]
    for args, message in cases:
        run = cage("start", "--name", cage.name(), "--network", "none", "-d", *args)
        assert run.code == 2, (args, run.output)
        assert message in run.stderr and "hint:" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
    assert owned(cage.owner()) == ([], []), "nothing half-created"
    assert not (cage.data_dir / "sessions").exists() or not list(
        (cage.data_dir / "sessions").iterdir()
    )

    plain_session = cage.name()
    assert cage("start", "--name", plain_session, "--network", "none", "-d").code == 0
    for command in ("diff", "fetch", "merge", "apply"):
        run = cage(command, plain_session)
        assert run.code == 2 and "has no clone" in run.stderr, run.output
        assert cage(command, "no-such-session").code == 3

    name = start_clone(cage, repo)
    git(repo, "stash", "-u")
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "staged.txt").write_text("side\n")
    git(repo, "commit", "-qam", "side")
    git(repo, "checkout", "-q", "main")
    (repo / "staged.txt").write_text("main\n")
    git(repo, "commit", "-qam", "main")
    git(repo, "merge", "side", check=False)  # a conflict: a merge in progress
    before = fingerprint(repo)
    run = cage("merge", name)
    assert run.code == 2, run.output
    assert "merge in progress" in run.stderr and "hint:" in run.stderr
    assert fingerprint(repo) == before


def test_json_of_start(cage: Cage, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj")
    name = cage.name()
    run = cage("start", "--name", name, "--network", "none", "-d", "--clone", str(repo), "--json")
    data = json.loads(run.stdout)
    assert data["branch"] == f"cage/{name}" and data["repo"] == str(repo)
    assert data["base"] == git(repo, "rev-parse", "HEAD").strip()


def test_a_repository_another_user_owns(cage: Cage, tmp_path: Path) -> None:
    """git refuses a repository another uid owns: claude-cage says the exact command
    that trusts it, and a configuration it names (GIT_CONFIG_GLOBAL too) is honoured."""
    repo = make_repo(tmp_path / "theirs")
    subprocess.run(["chown", "-R", "4242:4242", str(repo)], check=True)
    refused = cage("start", "--network", "none", "-d", "--clone", str(repo))
    assert refused.code == 2, refused.output
    assert "another user owns" in refused.stderr
    assert f"git config --global --add safe.directory {repo}" in refused.stderr
    config = tmp_path / "gitconfig"
    config.write_text(f"[safe]\n\tdirectory = {repo}\n")
    name = cage.name()
    started = cage(
        "start", "--name", name, "--network", "none", "-d", "--clone", str(repo),
        env={"GIT_CONFIG_GLOBAL": str(config)},
    )  # fmt: skip
    assert started.code == 0, started.output
    assert inside(cage, name, "git log --format=%s") == "first\n"


def test_a_read_only_mount_of_roots_repository_can_be_read(cage: Cage, tmp_path: Path) -> None:
    """The session's git reads a repository that root owns, mounted read-only (the
    session itself runs as uid 1000): no "dubious ownership"."""
    repo = make_repo(tmp_path / "roots")
    assert repo.stat().st_uid == 0
    name = cage.name()
    started = cage(
        "start", "--name", name, "--network", "none", "-d", "--mount", f"{repo}:ro"
    )  # fmt: skip
    assert started.code == 0, started.output
    assert inside(cage, name, "id -u") != "0\n"
    assert inside(cage, name, "git -C /workspace/roots log --format=%s") == "first\n"
    assert "staged.txt" in inside(cage, name, "git -C /workspace/roots status --porcelain")


def test_two_merges_into_one_repository_at_once(cage: Cage, tmp_path: Path) -> None:
    """Merges of two sessions into one repository take turns: both land, and neither
    meets the other's index.lock. The repository's own smudge filter makes each
    checkout take two seconds (git holds the index lock meanwhile), so without turns
    the second merge always runs into the first."""
    repo = make_repo(tmp_path / "proj")
    (repo / ".gitattributes").write_text("*.slow filter=slow\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "clean tree")
    git(repo, "config", "filter.slow.smudge", "sleep 2; cat")
    names = [start_clone(cage, repo) for _ in range(2)]
    for i, name in enumerate(names):
        inside(cage, name, f"echo {i} > part{i}.slow && git add -A && git commit -qm 'agent {i}'")

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda name: cage("merge", name), names))
    for result in results:
        assert result.code == 0, result.output
        assert "index.lock" not in result.output and "Traceback" not in result.output
    assert (repo / "part0.slow").read_text() == "0\n" and (repo / "part1.slow").read_text() == "1\n"
    for name in names:
        git(repo, "merge-base", "--is-ancestor", f"cage/{name}", "HEAD")
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".git" / "index.lock").exists()
    git(repo, "fsck", "--strict")
