"""On a terminal, `start` without --detach hands the terminal to Claude Code (through the
docker CLI); `shell` gives a bash in the session. A pseudo-terminal stands in for one."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

import pytest

from tests.conftest import Cage

pytestmark = pytest.mark.engine


def on_a_tty(cage: Cage, args: list[str], keys: bytes = b"", timeout: float = 120) -> str:
    """Run a command with a pseudo-terminal as its stdin, stdout and stderr; return what
    it wrote there once it exits."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=cage.env)
    os.close(slave)
    if keys:
        os.write(master, keys)
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # EIO: every writer of the terminal is gone
            break
        out += chunk
        if not ready and proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    os.close(master)
    return out.decode(errors="replace")


def test_start_attaches_claude_code_and_an_ephemeral_session_ends_with_it(cage: Cage) -> None:
    name = cage.name("tty")
    # With no network, Claude Code cannot reach its API and exits by itself.
    out = on_a_tty(
        cage, ["claude-cage", "start", "--network", "none", "--ephemeral", "--name", name]
    )
    text = " ".join(re.sub(r"\x1b(\[[0-?]*[ -/]*[@-~]|[78])", " ", out).split())
    assert "Claude Code" in text  # Claude Code drew its screen on the terminal
    assert f"ephemeral session {name} removed" in out
    gone = subprocess.run(["docker", "inspect", f"cage-{name}"], capture_output=True)
    assert gone.returncode != 0


def test_shell_is_bash_in_the_workspace(cage: Cage) -> None:
    name = cage.name("sh")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    out = on_a_tty(cage, ["claude-cage", "shell", name], b'echo "in=$(pwd) uid=$(id -u)"; exit\n')
    assert "in=/workspace uid=1000" in out
