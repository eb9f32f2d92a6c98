"""Every bad input is refused the same way: exit 2, one `error:` line and one `hint:`
line, no traceback, and nothing created (no container, volume or metadata).

Each kind of bad input is a unit test (tests/unit/test_bad_input.py): the refusal comes
before any engine call, so it runs in-process over an engine that refuses every call.
Here: a few of them through the real console script on the real engine, and the
refusals that need the engine's answer (a name taken, a setting the engine refuses)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.conftest import Cage, inspect, owned

pytestmark = pytest.mark.engine


def refused(cage: Cage, *args: str, name: str | None = None, existing: tuple[str, ...] = ()) -> str:
    """Run `start` with bad input; check the refusal and that nothing was created (but
    the `existing` containers). Returns the error line."""
    name = name if name is not None else cage.name("bad")
    argv = ["start", "--name", name, "--network", "none", "--detach", *args]
    result = cage(*argv)
    assert result.code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert owned(cage.owner()) == ([], [])
    sessions = cage.data_dir / "sessions"
    assert not sessions.exists() or not any(sessions.iterdir())
    if name and "/" not in name:
        for kind, objects in (
            ("container", [f"cage-{name}", f"companion-cage-{name}"]),
            ("volume", [f"cage-data-{name}", f"cage-scratch-{name}", f"cage-sock-{name}"]),
        ):
            found = subprocess.run(
                ["docker", kind, "inspect", "--format", "{{.Name}}", *objects],
                capture_output=True,
                text=True,
            ).stdout.split()
            assert [f.lstrip("/") for f in found] == [o for o in objects if o in existing]
    return lines[0]


# --- through the real console script -------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["--name", "Bad"], ["--mount", "/"], ["--memory", "lots"], ["--port", "80"]],
    ids=["name", "mount", "memory", "port"],
)
def test_subprocess(cage_module: Cage, args: list[str]) -> None:
    flag, value = args
    if flag == "--name":
        refused(cage_module, name=value)
    else:
        refused(cage_module, flag, value)


# --- names taken by containers that are not ours ---------------------------------------


def test_name_of_a_container_claude_cage_does_not_manage(cage_module: Cage) -> None:
    name = f"t{uuid.uuid4().hex[:6]}-foreign"
    container = f"cage-{name}"
    subprocess.run(
        ["docker", "create", "--name", container, "claude-cage-base:bookworm", "true"],
        check=True,
        capture_output=True,
    )
    try:
        before = inspect(container)["Id"]
        line = refused(cage_module, name=name, existing=(container,))
        assert "not managed by claude-cage" in line
        assert inspect(container)["Id"] == before  # left alone
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def test_name_of_another_data_dirs_session(cage_module: Cage, cage: Cage) -> None:
    """A session of another data directory is not ours to restart or replace."""
    name = f"t{uuid.uuid4().hex[:6]}-theirs"
    assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    before = inspect(f"cage-{name}")["Id"]
    theirs = (f"cage-{name}", f"cage-data-{name}", f"cage-scratch-{name}")
    line = refused(cage_module, name=name, existing=theirs)
    assert "another data directory" in line
    assert inspect(f"cage-{name}")["Id"] == before


@pytest.mark.engine
def test_a_setting_the_engine_refuses_is_bad_input_and_leaves_nothing(cage) -> None:
    name = cage.name("cpus")
    result = cage("start", "--name", name, "--detach", "--network", "none", "--cpus", "200")
    assert result.code == 2, result.output
    assert "hint: " in result.stderr
    assert (
        subprocess.run(["docker", "inspect", f"cage-{name}"], capture_output=True).returncode != 0
    )
    assert not (cage.data_dir / "sessions" / name).exists()


@pytest.mark.engine
def test_commands_leave_namesakes_alone(cage, tmp_path) -> None:
    """A container named like a session but not ours (not claude-cage's, or another data
    directory's) is invisible: not found, and never stopped or removed."""
    name = cage.name("twin")
    foreign = f"cage-{name}"
    try:  # the namesake goes, even when it never started
        subprocess.run(
            ["docker", "create", "--name", foreign, "--label", "cage-test=1",
             "claude-cage-base:bookworm", "sleep", "60"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        subprocess.run(["docker", "start", foreign], check=True, capture_output=True)
        for args in (
            ("stop", name),
            ("destroy", "--force", name),
            ("status", name),
            ("logs", name),
            ("exec", name, "--", "true"),
        ):
            result = cage(*args)
            assert result.code == 3, (args, result.output)
        assert inspect(foreign)["State"]["Running"]
    finally:
        subprocess.run(["docker", "rm", "-f", foreign], capture_output=True)
    # Another data directory's session is just as invisible.
    mine = cage.name("mine")
    assert cage("start", "--name", mine, "--detach", "--network", "none").code == 0
    other = {"CAGE_DATA_DIR": str(tmp_path / "other-data")}
    for args in (
        ("stop", mine),
        ("destroy", "--force", mine),
        ("exec", mine, "--", "true"),
        ("status", mine),
    ):
        assert cage(*args, env=other).code == 3, args
    assert inspect(f"cage-{mine}")["State"]["Running"]
