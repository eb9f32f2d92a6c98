"""Workspaces for a user who is not root: the CLI runs as an unprivileged host user this
test creates (in the docker group, as such users are), on that user's own repository."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import isolation
from tests.conftest import Result, inspect, release_volumes, remove_owned
from tests.integration.workspace_helpers import GIT_ENV

pytestmark = [pytest.mark.engine, pytest.mark.slow]
SYSTEM_PYTHON = "/usr/bin/python3"
# claude-cage itself, and what the commands used here import
LIBS = ("claude_cage", "click", "yaml", "platformdirs", "publicsuffixlist")


def _libraries(target: Path) -> None:
    """The test's own Python and this checkout may sit where other users cannot read (a
    pyenv, a clone under /root): the user runs the system's Python, with copies of
    claude-cage and its imports."""
    import importlib

    for lib in LIBS:
        source = Path(importlib.import_module(lib).__file__ or "").parent
        shutil.copytree(source, target / lib)


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path
    data: Path

    def run(self, *argv: str, cwd: Path | None = None) -> Result:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "PYTHONPATH": f"{self.home / 'lib'}:{os.environ.get('PYTHONPATH', '')}",
            "CAGE_DATA_DIR": str(self.data),
            "CAGE_CONFIG_DIR": str(self.home / "config"),
            **isolation.cage_env(),
            **GIT_ENV,
        }
        run = subprocess.run(
            ["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
             *argv],
            capture_output=True, text=True, timeout=300, cwd=cwd or self.home,
        )  # fmt: skip
        return Result(run.returncode, run.stdout, run.stderr)

    def cage(self, *args: str) -> Result:
        return self.run(SYSTEM_PYTHON, "-m", "claude_cage", *args)

    def git(self, repo: Path, *args: str) -> str:
        run = self.run("git", "-C", str(repo), *args)
        assert run.code == 0, run.output
        return run.stdout


@pytest.fixture
def user() -> Iterator[User]:
    if os.geteuid() != 0 or shutil.which("runuser") is None or not Path(SYSTEM_PYTHON).exists():
        pytest.skip("making a host user needs root, runuser and a system Python")
    name = f"cage{uuid.uuid4().hex[:8]}"
    home = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    subprocess.run(["useradd", "--home-dir", str(home), "--no-create-home", "--user-group",
                    "--groups", "docker", name], check=True)  # fmt: skip
    entry = pwd.getpwnam(name)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    _libraries(home / "lib")
    subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(home)], check=True)
    home.chmod(0o700)
    instance = User(name, entry.pw_uid, entry.pw_gid, home, home / "data")
    try:
        yield instance
    finally:
        from claude_cage import paths

        remove_owned(paths.owner_id(instance.data))
        release_volumes(instance.data)
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_clone_and_mounts_as_an_unprivileged_user(user: User) -> None:
    assert user.run("id", "-u").stdout.strip() == str(user.uid)
    assert "docker" in [g.gr_name for g in grp.getgrall() if user.name in g.gr_mem]
    repo = user.home / "proj"
    user.run("mkdir", str(repo))
    user.git(repo, "init", "-q", "-b", "main")
    user.run("sh", "-c", f"echo one > {repo}/a.txt && echo wip > {repo}/b.txt")
    user.git(repo, "add", "a.txt")
    user.git(repo, "commit", "-qm", "first")

    name = f"u{uuid.uuid4().hex[:6]}"
    started = user.cage("start", "--name", name, "--network", "none", "-d", "--clone", str(repo))
    assert started.code == 0, started.output
    inside = user.cage("exec", name, "--", "sh", "-c",
                       "git branch --show-current; cat b.txt; echo agent > c.txt")  # fmt: skip
    assert inside.stdout.split() == [f"cage/{name}", "wip"], inside.output
    assert user.cage("diff", name, "--stat").stdout.count("c.txt") == 1
    assert user.cage("fetch", name).code == 0
    assert f"cage/{name}" in user.git(repo, "branch", "--list")
    user.run("rm", str(repo / "b.txt"))
    merged = user.cage("merge", name)
    assert merged.code == 0, merged.output
    made = repo / "c.txt"
    assert made.read_text() == "agent\n" and made.stat().st_uid == user.uid

    # A read-write mount of the user's: the session runs as the user.
    mounted = user.home / "notes"
    user.run("mkdir", str(mounted))
    other = f"m{uuid.uuid4().hex[:6]}"
    started = user.cage("start", "--name", other, "--network=none", "-d", "--mount", str(mounted))
    assert started.code == 0, started.output
    assert inspect(f"cage-{other}")["Config"]["User"] == f"{user.uid}:{user.gid}"
    wrote = user.cage("exec", other, "--", "sh", "-c", "whoami && echo x > note.txt && pwd")
    assert wrote.stdout.split() == ["claude", "/workspace/notes"], wrote.output
    assert (mounted / "note.txt").stat().st_uid == user.uid
