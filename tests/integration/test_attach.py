"""On a terminal, `start` without --detach hands the terminal to Claude Code (through the
docker CLI); `shell` gives a bash in the session. `script` provides the terminal."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from tests.conftest import Cage

pytestmark = pytest.mark.engine


def on_a_tty(cage: Cage, command: str, keys: str, timeout: float = 120) -> str:
    run = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        input=keys,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cage.env,
    )
    return run.stdout + run.stderr


def test_start_attaches_claude_code_and_an_ephemeral_session_ends_with_it(cage: Cage) -> None:
    name = cage.name("tty")
    # With no network, Claude Code cannot reach its API and exits by itself; Ctrl-C
    # twice covers a version that waits at a prompt instead.
    out = on_a_tty(cage, f"claude-cage start --network none --ephemeral --name {name}", "\x03\x03")
    assert "Claude Code" in out or "claude" in out.lower()
    assert f"ephemeral session {name} removed" in out
    gone = subprocess.run(["docker", "inspect", f"cage-{name}"], capture_output=True)
    assert gone.returncode != 0


def test_shell_is_bash_in_the_workspace(cage: Cage) -> None:
    name = cage.name("sh")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    out = on_a_tty(
        cage, f"claude-cage shell {shlex.quote(name)}", 'echo "in=$(pwd) uid=$(id -u)"; exit\n'
    )
    assert "in=/workspace uid=1000" in out
