"""Git repositories for the workspace tests, and a fingerprint that proves one untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "user",
    "GIT_AUTHOR_EMAIL": "user@example.invalid",
    "GIT_COMMITTER_NAME": "user",
    "GIT_COMMITTER_EMAIL": "user@example.invalid",
}


def git(repo: Path, *args: str, check: bool = True) -> str:
    run = subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    )
    if check:
        assert run.returncode == 0, run.stderr
    return run.stdout


def make_repo(path: Path) -> Path:
    """A repository with one commit, then a staged change, an unstaged change, an
    untracked file and an ignored one."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "user")
    git(path, "config", "user.email", "user@example.invalid")
    (path / "staged.txt").write_text("one\n")
    (path / "unstaged.txt").write_text("one\n")
    (path / ".gitignore").write_text("ignored.txt\n")
    (path / "src").mkdir()
    (path / "src" / "main.py").write_text("print('hi')\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "first")
    (path / "staged.txt").write_text("one\nstaged\n")
    git(path, "add", "staged.txt")
    (path / "unstaged.txt").write_text("one\nunstaged\n")
    (path / "untracked.txt").write_text("untracked\n")
    (path / "ignored.txt").write_text("ignored\n")
    return path


def fingerprint(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every file and directory under root (.git included): content hash, mode, and the
    target of symlinks. Any new branch, object, hook or file changes it."""
    seen: dict[str, tuple[str, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = Path(dirpath) / entry
            stat = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                seen[rel] = ("link", stat.st_mode, os.readlink(path))
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                seen[rel] = (digest, stat.st_mode, "")
            else:
                seen[rel] = ("dir", stat.st_mode, "")
    return seen
