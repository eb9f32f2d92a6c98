"""`exec` behaves like `docker exec`: stdin passes through, the exit code comes back,
and Ctrl-C, SIGTERM and SIGHUP reach the command in the session. Nothing the command
started outlives the claude-cage that ran it, even one killed with SIGKILL."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import Cage
from tests.integration.terminal import Terminal
from tests.polling import within

pytestmark = [pytest.mark.engine, pytest.mark.podman]


@pytest.fixture(scope="module")
def session(cage_module: Cage) -> str:
    name = cage_module.name("exec")
    started = cage_module("start", "--name", name, "--detach", "--network", "none")
    assert started.code == 0, started.output
    return name


def running(cage: Cage, session: str, marker: str) -> list[str]:
    """The processes in the session whose command line holds `marker`."""
    out = subprocess.run(
        ["docker", "exec", f"cage-{session}", "ps", "-eo", "args"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


# How long what a command left may take to go, once claude-cage is done: its grace time
# (1 s) and a loaded machine's slow engine calls, far short of the 300 s it would run.
GONE = 15.0
# How long claude-cage may take to end after a signal (the command ends in its grace time).
ENDS = 30


def gone_within(cage: Cage, session: str, marker: str, seconds: float) -> bool:
    return within(lambda: not running(cage, session, marker), seconds, 0.05)


def background(cage: Cage, session: str, marker: str) -> subprocess.Popen:
    """`exec` of a command that runs for a long time, with a child of its own."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_cage", "exec", session, "--", "sh", "-c",
         f"sleep 300{marker} & sleep 300{marker}; echo never"],
        env=cage.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while len(running(cage, session, f"sleep 300{marker}")) < 2:
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    return proc


def test_a_mebibyte_of_stdin_passes_through_intact(cage_module: Cage, session: str) -> None:
    data = os.urandom(1024 * 1024)
    run = subprocess.run(
        [sys.executable, "-m", "claude_cage", "exec", session, "--", "cat"],
        input=data,
        capture_output=True,
        env=cage_module.env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert len(run.stdout) == len(data)
    assert hashlib.sha256(run.stdout).digest() == hashlib.sha256(data).digest()


def test_the_exit_code_workdir_and_env_come_through(
    cage_module: Cage, session: str, tmp_path: object
) -> None:
    assert cage_module("exec", session, "--", "sh", "-c", "exit 7").code == 7
    assert cage_module("exec", session, "--", "false").code == 1
    missing = cage_module("exec", session, "--", "no-such-command")
    assert missing.code == 127
    # docker exec's words, not the wrapper's (which would name cage-exec)
    assert missing.stderr == 'exec: "no-such-command": executable file not found in $PATH\n'
    not_here = cage_module("exec", session, "--", "./nowhere/tool")
    assert not_here.code == 126 and not_here.stderr.endswith("no such file or directory\n")
    shown = cage_module(
        "exec", "--workdir", "/tmp", "--env", "GREETING=hi there", session,
        "--", "sh", "-c", 'echo "$GREETING in $(pwd)"',
    )  # fmt: skip
    assert shown.code == 2  # /tmp is outside the project (/workspace): refused
    shown = cage_module(
        "exec", "--env", "GREETING=hi there", session, "--", "sh", "-c", 'echo "$GREETING"'
    )
    assert shown.stdout == "hi there\n", shown.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_a_signal_to_claude_cage_ends_the_command_in_the_session(
    cage_module: Cage, session: str, sig: signal.Signals
) -> None:
    marker = f".{uuid.uuid4().int % 10**6:06d}"
    proc = background(cage_module, session, marker)
    proc.send_signal(sig)
    code = proc.wait(timeout=ENDS)
    assert gone_within(cage_module, session, f"sleep 300{marker}", GONE), running(
        cage_module, session, marker
    )
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig)
    assert b"never" not in proc.stdout.read()  # type: ignore[union-attr]


def test_ctrl_c_on_the_terminal_ends_the_command(cage_module: Cage, session: str) -> None:
    marker = f".{uuid.uuid4().int % 10**6:06d}"
    terminal = Terminal(
        ["claude-cage", "exec", session, "--", "sh", "-c", f"echo started; sleep 300{marker}"],
        cage_module.env,
    )
    try:
        terminal.expect("started")
        terminal.type(b"\x03")  # Ctrl-C: the terminal sends SIGINT to claude-cage
        assert terminal.wait() == 130
        assert gone_within(cage_module, session, f"sleep 300{marker}", GONE)
    finally:
        terminal.close()


def test_what_the_command_left_running_ends_with_it(cage_module: Cage, session: str) -> None:
    marker = f".{uuid.uuid4().int % 10**6:06d}"
    result = cage_module("exec", session, "--", "sh", "-c", f"sleep 300{marker} & echo ok")
    assert result.code == 0 and result.stdout == "ok\n"
    assert gone_within(cage_module, session, f"sleep 300{marker}", GONE)


def test_ctrl_c_ends_the_command_when_the_output_is_piped(cage_module: Cage, session: str) -> None:
    """`exec NAME -- long-build | tee log`: Ctrl-C reaches the whole pipeline's process
    group, claude-cage among them, with its stdout a pipe."""
    marker = f".{uuid.uuid4().int % 10**6:06d}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_cage", "exec", session, "--", "sh", "-c",
         f"echo started; sleep 300{marker}"],
        env=cage_module.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"started\n"
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert proc.wait(timeout=ENDS) == 130
        assert gone_within(cage_module, session, f"sleep 300{marker}", GONE), running(
            cage_module, session, marker
        )
    finally:
        if proc.poll() is None:
            proc.kill()


def test_ctrl_c_ends_a_piped_command_on_the_terminal(cage_module: Cage, session: str) -> None:
    """The same, typed at a terminal: `exec ... | cat` is the foreground job."""
    marker = f".{uuid.uuid4().int % 10**6:06d}"
    terminal = Terminal(
        [
            "sh",
            "-c",
            f"claude-cage exec {session} -- sh -c 'echo started; sleep 300{marker}' | cat",
        ],
        cage_module.env,
    )
    try:
        terminal.expect("started")
        terminal.type(b"\x03")  # Ctrl-C: SIGINT to claude-cage and cat
        terminal.wait(timeout=ENDS)
        assert terminal.proc.poll() is not None, "exec kept running after Ctrl-C"
        assert gone_within(cage_module, session, f"sleep 300{marker}", GONE)
    finally:
        terminal.close()
