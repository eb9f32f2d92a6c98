"""Read-write bind mounts: the session runs as their owner (any uid, none of them root),
every tool works without a passwd entry, and a mounted repository's git directory is
never written from inside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Cage, inspect, owned
from tests.integration.workspace_helpers import fingerprint, git, make_repo

pytestmark = [pytest.mark.engine, pytest.mark.podman]


def owned_dir(path: Path, uid: int, gid: int | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(path):
        for entry in [root] + [os.path.join(root, e) for e in dirs + files]:
            os.lchown(entry, uid, uid if gid is None else gid)
    return path


def run_in(cage: Cage, name: str, script: str) -> str:
    run = cage("exec", name, "--", "sh", "-c", script)
    assert run.code == 0, run.output
    return run.stdout


@pytest.mark.parametrize("uid", [1000, 4242])
def test_the_session_runs_as_the_mount_owner(cage: Cage, tmp_path: Path, uid: int) -> None:
    project = owned_dir(tmp_path / "proj", uid, uid + 1)
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--mount", str(project))
    assert started.code == 0, started.output
    assert inspect(f"cage-{name}")["Config"]["User"] == f"{uid}:{uid + 1}"
    out = run_in(
        cage, name,
        "id -u; id -g; whoami; echo $HOME; touch new.txt ~/home.txt ~/.claude/data.txt /tmp/t"
        " && git init -q repo && cd repo && git config user.email a@b && git config user.name a"
        " && git commit -q --allow-empty -m x && git log --format=%an && claude --version"
        " >/dev/null && echo tools-ok",
    )  # fmt: skip
    assert out.split() == [str(uid), str(uid + 1), "claude", "/home/claude", "a", "tools-ok"]
    made = project / "new.txt"
    assert (made.stat().st_uid, made.stat().st_gid) == (uid, uid + 1)
    # A second start of the stopped session keeps the user and its data.
    assert cage("stop", name).code == 0
    assert cage("start", "--name", name, "-d").code == 0
    assert run_in(cage, name, "id -u; cat ~/.claude/data.txt && echo kept").split() == [
        str(uid), "kept",
    ]  # fmt: skip
    status = cage("status", name, "--json").json()["session"]
    check = [c for c in status["sandbox"]["checks"] if c["check"] == "mounts writable"]
    assert check and check[0]["ok"], status["sandbox"]


def test_root_owned_and_mixed_mounts_are_refused(cage: Cage, tmp_path: Path) -> None:
    root_owned = owned_dir(tmp_path / "rootdir", 0)
    a = owned_dir(tmp_path / "a", 1000)
    b = owned_dir(tmp_path / "b", 4242)
    refused = cage("start", "--name", cage.name(), "-d", "--mount", str(root_owned))
    assert refused.code == 2, refused.output
    assert "owned by root" in refused.stderr
    assert "--clone" in refused.stderr and ":ro" in refused.stderr and "chown" in refused.stderr
    # Owned by the companion's uid: the session would own the companion's files on the
    # volume they share, so it never runs as that uid.
    proxy_owned = owned_dir(tmp_path / "proxydir", 13)
    refused = cage("start", "--name", cage.name(), "-d", "--mount", str(proxy_owned))
    assert refused.code == 2, refused.output
    assert "the companion's own user" in refused.stderr and "Traceback" not in refused.output
    mixed = cage("start", "--name", cage.name(), "-d", "--mount", str(a), "--mount", str(b))
    assert mixed.code == 2, mixed.output
    assert f"{a} is owned by 1000:1000" in mixed.stderr
    assert f"{b} is owned by 4242:4242" in mixed.stderr
    assert owned(cage.owner()) == ([], []), "nothing half-created"
    # Read-only, root's directory is fine; the session runs as the image's user.
    name = cage.name()
    ok = cage("start", "--name", name, "--network", "none", "-d", "--mount", f"{root_owned}:ro",
              "--mount", str(b))  # fmt: skip
    assert ok.code == 0, ok.output
    assert inspect(f"cage-{name}")["Config"]["User"] == "4242:4242"


def test_git_control_files_are_read_only_inside(cage: Cage, tmp_path: Path) -> None:
    """The agent commits into its own git directory; the host's stays as it was, and
    cannot be moved, replaced or written (test_git_redirects.py plants every redirect)."""
    project = tmp_path / "proj"
    make_repo(project)
    make_repo(project / "vendor" / "lib")  # a repository the mount holds
    owned_dir(project, 4242)
    before = {p: fingerprint(p / ".git") for p in (project, project / "vendor" / "lib")}
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--mount", str(project))
    assert started.code == 0, started.output
    for repo in ("/workspace/proj", "/workspace/proj/vendor/lib"):
        attempts = run_in(
            cage, name,
            f"cd {repo}; for try in 'mv .git .git-old'"
            " 'touch /cage/git$PWD/.git/commondir' 'echo x > /cage/git$PWD/.git/config'"
            " 'cd .. && mv lib lib2' 'cd ../.. && mv vendor v2' 'cd .. && mv proj p2'; do"
            " sh -c \"$try\" 2>/dev/null && echo \"allowed: $try\"; done;"
            " git config core.fsmonitor 'touch /tmp/x' && echo evil > .git/hooks/post-checkout"
            " && git init -q --bare /tmp/b && echo /tmp/b > .git/commondir && rm .git/commondir"
            " && git add -A && git commit -qm agent && git branch side && git stash list"
            " && git log --format=%s -1",
        )  # fmt: skip
        assert attempts.strip() == "agent", attempts
    for path, print_before in before.items():
        assert fingerprint(path / ".git") == print_before, f"{path}/.git changed"
        assert git(path, "log", "--format=%s", "-1").strip() == "first"
    status = cage("status", name, "--json").json()["session"]
    assert {"/workspace/proj/.git", "/workspace/proj/vendor/lib/.git"} <= set(
        status["protections"]
    ), status
    assert "/workspace/proj/.git" in cage("status", name).stdout


def test_doctor_and_status_see_an_unwritable_mount(cage: Cage, tmp_path: Path) -> None:
    project = owned_dir(tmp_path / "proj", 4242)
    name = cage.name()
    started = cage("start", "--name", name, "--network", "none", "-d", "--mount", str(project))
    assert started.code == 0, started.output
    project.chmod(0o555)
    try:
        status = cage("status", name, "--json").json()["session"]
        check = next(c for c in status["sandbox"]["checks"] if c["check"] == "mounts writable")
        assert not check["ok"] and str(project) in check["detail"]
        doctor = cage("doctor", "--no-probe", "--json")
        found = [c for c in doctor.json()["checks"] if c["check"] == f"mounts of {name}"]
        assert found and found[0]["status"] == "fail", doctor.stdout
    finally:
        project.chmod(0o755)
