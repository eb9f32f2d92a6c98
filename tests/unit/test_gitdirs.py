"""What a read-write mount of a repository binds (no engine: the host's git and files)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from claude_cage import bindmounts
from claude_cage.engine import answers
from claude_cage.errors import BadInput
from claude_cage.record import Mount

ENV = {**os.environ, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@e",
       "GIT_COMMITTER_NAME": "u", "GIT_COMMITTER_EMAIL": "u@e"}  # fmt: skip


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, env=ENV)


def repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("a\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "first")
    return path


def binds_of(project: Path, home: Path) -> dict[str, Mount]:
    mounts = bindmounts.protections([Mount(str(project), "/workspace/proj", False)], home)
    return {m.target: m for m in mounts}


def test_the_git_directory_is_the_sessions_copy_and_the_hosts_is_read_only(
    tmp_path: Path,
) -> None:
    project = repo(tmp_path / "proj")
    (project / "team.gitconfig").write_text("")
    git(project, "config", "include.path", "../team.gitconfig")
    head = subprocess.run(["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    git(project, "update-index", "--add", "--cacheinfo", f"160000,{head},deep/er/lib")
    home = tmp_path / "home"
    binds = binds_of(project, home)
    copy = home / "workspace" / "proj" / ".git"
    assert binds["/workspace/proj/.git"] == Mount(str(copy), "/workspace/proj/.git", False)
    view = "/cage/git/workspace/proj/.git"
    assert binds[view] == Mount(str(project / ".git"), view, True)
    assert binds["/workspace/proj/team.gitconfig"].read_only
    # The gitlink with no .git: its directory is made, pinned read-only, parents pinned.
    assert (project / "deep" / "er" / "lib").is_dir()
    assert binds["/workspace/proj/deep/er/lib"].read_only
    assert not binds["/workspace/proj/deep"].read_only
    assert (copy / "objects" / "info" / "alternates").read_text() == f"{view}/objects\n"
    assert not list((copy / "objects").rglob("*.pack")) and (copy / "HEAD").is_file()
    assert (copy / "config").read_text() == (project / ".git" / "config").read_text()
    # Kept once made: a second start keeps what the session did to it.
    (copy / "commondir").write_text("../elsewhere\n")
    binds_of(project, home)
    assert (copy / "commondir").exists() and not (project / ".git" / "commondir").exists()


@pytest.mark.parametrize(
    ("key", "value"), [("include.path", "../missing"), ("core.hooksPath", ".husky/_")]
)
def test_a_missing_file_the_config_names_in_the_mount_is_refused(
    tmp_path: Path, key: str, value: str
) -> None:
    project = repo(tmp_path / "proj")
    git(project, "config", key, value)
    with pytest.raises(BadInput) as refused:
        binds_of(project, tmp_path / "home")
    assert Path(value).name in refused.value.message and refused.value.hint


def test_status_lists_the_copies_and_read_only_binds_not_the_pins() -> None:
    inspect = [
        answers.Mount("bind", "/h/proj", "/workspace/proj", writable=True),
        answers.Mount("bind", "/h/proj/a", "/workspace/proj/a", writable=True),
        answers.Mount("bind", "/d/git/x", "/workspace/proj/a/.git", writable=True),
        answers.Mount("bind", "/h/proj/a/.git", "/cage/git/x", writable=False),
        answers.Mount("bind", "/h/proj/lib", "/workspace/proj/lib", writable=False),
    ]
    assert bindmounts.protected_paths(inspect) == ["/workspace/proj/a/.git", "/workspace/proj/lib"]
