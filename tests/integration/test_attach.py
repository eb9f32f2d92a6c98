"""On a terminal, `start` without --detach hands the terminal to Claude Code (through the
docker CLI); `shell` gives a bash in the session. A pseudo-terminal stands in for one."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from tests.conftest import CLI_PROBE as PROBE
from tests.conftest import Cage
from tests.integration.terminal import Terminal, plain

pytestmark = [pytest.mark.engine, pytest.mark.podman]


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


def test_an_interactive_start_whose_claude_exits_at_once_says_why(cage: Cage) -> None:
    name = cage.name("tty")
    # With no network Claude Code cannot reach any model, and exits at once.
    terminal = Terminal(["claude-cage", "start", "--network", "none", "--name", name], cage.env)
    try:
        assert terminal.wait(120) == 1
        text = plain(terminal.output)
    finally:
        terminal.close()
    assert "cannot reach any model" in text  # start warned before it began
    assert "Claude Code exited at once (status 1)" in text
    assert "Unable to connect to Anthropic services" in text  # why, in its own words
    assert f"'claude-cage attach {name}' starts Claude Code again" in text
    # The session is left for `attach NAME`: one session, running, not a new one.
    sessions = cage("list", "--json").json()["sessions"]
    assert [(s["name"], s["status"]) for s in sessions] == [(name, "running")]


def test_an_ephemeral_session_ends_with_its_claude_code(cage: Cage) -> None:
    name = cage.name("eph")
    argv = ["claude-cage", "start", "--network", "none", "--ephemeral", "--name", name]
    terminal = Terminal(argv, cage.env)
    try:
        terminal.wait(120)
        text = plain(terminal.output)
    finally:
        terminal.close()
    assert "Claude Code" in text  # Claude Code drew its screen on the terminal
    assert f"ephemeral session {name} removed" in text
    gone = subprocess.run(["docker", "inspect", f"cage-{name}"], capture_output=True)
    assert gone.returncode != 0


def test_shell_is_bash_in_the_workspace(cage: Cage) -> None:
    name = cage.name("sh")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    out = on_a_tty(cage, ["claude-cage", "shell", name], b'echo "in=$(pwd) uid=$(id -u)"; exit\n')
    assert "in=/workspace uid=1000" in out


def quit_caught(pid: int) -> bool:
    """Whether the process handles SIGQUIT itself (its SigCgt mask has signal 3)."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(line for line in status if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << 2))


def test_the_detach_key_before_the_screen_shows_does_not_kill_claude_cage(cage: Cage) -> None:
    """Ctrl-\\ pressed while attach still prepares (the terminal not yet raw, so the
    key is SIGQUIT): attach says it did not attach, exits 0, and leaves Claude Code be."""
    name = cage.name("early")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    term = Terminal(["claude-cage", "attach", name], cage.env)
    try:
        deadline = time.monotonic() + 30
        while not quit_caught(term.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        term.type(b"\x1c")
        code = term.wait()
        out = plain(term.output)
    finally:
        term.close()
    assert code == 0, out  # not 131 (killed by SIGQUIT)
    assert f"detached: Claude Code keeps working in {name}" in out, out
    assert "Quit" not in out


def test_attach_name_refuses_as_the_click_command_does(cage: Cage) -> None:
    """`attach NAME` runs without Click (cli/quick.py): a stopped session and an unknown
    one get the Click command's one-line errors and exit codes, word for word."""
    name = cage.name("stopped")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    assert cage("stop", name).code == 0
    for target, error in ((name, "is not running"), (cage.name("nosuch"), "no session")):
        quick = on_a_tty(cage, [sys.executable, "-c", PROBE, "attach", target]).splitlines()
        full = on_a_tty(
            cage, [sys.executable, "-c", PROBE, "attach", "--raw-terminal", target]
        ).splitlines()
        assert quick[-1] == "CLICK False" and full[-1] == "CLICK True", (quick, full)
        assert quick[:-1] == full[:-1], (quick, full)  # the lines, the exit code
        assert len(quick) == 4 and error in quick[0] and quick[2] != "EXIT 0", quick
