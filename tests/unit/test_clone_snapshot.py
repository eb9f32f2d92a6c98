"""The snapshot `start --clone` takes of the user's repository runs nothing its config
names: no hook (post-index-change runs on `git add`) and no fsmonitor, also when an
included config file or a core.hooksPath names them; it still takes the untracked work,
and what crosses is HEAD's history only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from claude_cage import hostgit


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x", "GIT_COMMITTER_NAME": "u",
           "GIT_COMMITTER_EMAIL": "u@x"}  # fmt: skip
    run = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _script(path: Path, marker: Path) -> Path:
    path.write_text(f"#!/bin/sh\necho ran >> {marker}\nexit 1\n")
    path.chmod(0o755)
    return path


def test_the_snapshot_runs_no_hook_or_fsmonitor_of_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    repo, ran = tmp_path / "repo", tmp_path / "ran"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "a").write_text("one\n")
    _git(repo, "add", "a")
    _git(repo, "commit", "-qm", "first")
    _git(repo, "checkout", "-qb", "other")
    (repo / "a").write_text("SECRET on another branch\n")
    _git(repo, "commit", "-qam", "other")
    _git(repo, "checkout", "-q", "main")
    (repo / "a").write_text("SECRET in a stash\n")
    _git(repo, "stash", "-q")

    _script(repo / ".git" / "hooks" / "post-index-change", ran)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    _script(hooks / "post-index-change", ran)
    monitor = _script(tmp_path / "monitor", ran)
    included = tmp_path / "included"
    included.write_text(f"[core]\n\tfsmonitor = {monitor}\n\thooksPath = {hooks}\n")
    _git(repo, "config", "include.path", str(included))
    (repo / "untracked.txt").write_text("work\n")
    (repo / "link").symlink_to("/etc/passwd")
    assert _git(repo, "config", "core.fsmonitor") == f"{monitor}\n"
    _git(repo, "status", "--porcelain")  # the repository's own git runs them
    assert ran.exists()
    ran.unlink()

    with hostgit.snapshot(hostgit.find_repo(str(repo)), tmp_path / "scratch") as snap:
        assert not ran.exists(), "the snapshot ran the repository's hook or fsmonitor"
        look = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(snap.tmp / "objects")}
        tree = hostgit.git(repo, "ls-tree", "-r", snap.work, env=look).stdout.decode()
        assert "untracked.txt" in tree
        link = hostgit.git(repo, "hash-object", "--stdin", input=b"/etc/passwd")
        assert f"120000 blob {link.stdout.decode().strip()}\tlink" in tree  # a link, as a link
        packed = subprocess.run(
            ["git", "verify-pack", "-v", str(snap.pack.with_suffix(".idx"))],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        commits = {line.split()[0] for line in packed.splitlines() if " commit " in line}
        assert commits == {_git(repo, "rev-parse", "main").strip(), snap.work}
