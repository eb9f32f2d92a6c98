"""The session's Claude Code outlives its terminals: a person attaches, detaches with
Ctrl-\\, comes back to the same Claude (screen redrawn), watches it from two terminals
at once, and after Claude Code exits, the next attach starts a new one. Each terminal
is a pseudo-terminal of its own, driven as a person would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cage
from tests.integration.model import ModelServer
from tests.integration.terminal import DETACH, Terminal, plain

pytestmark = pytest.mark.engine

KEY = "sk-ant-test-0123456789abcdef0123"


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def in_session(cage: Cage, name: str, *command: str) -> str:
    result = cage("exec", name, "--", *command)
    assert result.code == 0, result.output
    return result.stdout.strip()


def claude_pid(cage: Cage, name: str) -> str:
    return in_session(cage, name, "pgrep", "-x", "claude")


def reap_view(cage: Cage, name: str) -> dict:
    verdicts = cage("reap", "--dry-run", "--json").json()["sessions"]
    return next(v for v in verdicts if v["name"] == name)


def test_attach_detach_two_terminals_and_a_new_claude_after_exit(
    cage: Cage, model_server: ModelServer, terminals: list[Terminal]
) -> None:
    name = cage.name("agent")
    env = {**cage.env, "ANTHROPIC_API_KEY": KEY, **model_server.session_env()}
    started = cage("start", "--name", name, "--detach", env=env)
    assert started.code == 0, started.output
    first = claude_pid(cage, name)  # --detach started Claude Code, attached to nobody
    assert reap_view(cage, name)["attached"] == 0

    def attach() -> Terminal:
        terminal = Terminal(["claude-cage", "attach", name], cage.env)
        terminals.append(terminal)
        return terminal

    # Attach, answer Claude Code's first question, detach with the documented key.
    one = attach()
    one.expect("Choose the text style")
    mark = one.type(b"\r")
    one.expect("Press Enter to continue", since=mark)
    mark = one.type(DETACH)
    assert one.wait() == 0
    said = one.expect("detached", since=mark)
    assert "detached: Claude Code keeps working" in said
    assert "[detached" not in said, said  # one line, claude-cage's; none from tmux
    assert claude_pid(cage, name) == first  # still the same Claude, working on its own
    assert reap_view(cage, name)["attached"] == 0  # and nobody is attached
    # Recorded while the screen showed, not before it: the attach, Claude Code's state
    # and the session's last use.
    keys = [e["key"] for e in cage("events", "--session", name, "--json").json()["events"]]
    assert f"attach:{name}" in keys and f"agent:{name}" in keys, keys
    record = (cage.data_dir / "sessions" / name / "metadata").read_text()
    assert "last_active=" in record, record

    # Attach again: the same Claude, its screen redrawn where we left it.
    two = attach()
    two.expect("Press Enter to continue")
    assert "Choose the text style" not in two.expect("Press Enter")

    # A second terminal at once: both see the same Claude, keys from either reach it.
    three = attach()
    three.expect("Press Enter to continue")
    assert in_session(cage, name, "cage-agent", "clients") == "2"
    view = reap_view(cage, name)
    assert (view["attached"], view["reason"]) == (2, "attached")
    mark_two, mark_three = len(two.output), three.type(b"\r")
    screen = three.expect("trust", since=mark_three)  # the next question, on both
    assert "trust" in two.expect("trust", since=mark_two), screen
    three.type(DETACH)
    assert three.wait() == 0
    assert in_session(cage, name, "cage-agent", "clients") == "1"

    # Claude Code exits (Ctrl-C twice, typed in the terminal still attached): the
    # terminal is let go, and claude-cage says what happened.
    mark = two.type(b"\x03")
    two.type(b"\x03")
    two.wait()
    said = two.expect("Claude Code exited", since=mark)
    assert f"session {name} is still running" in said
    assert "[detached" not in said and "[exited" not in said, said
    assert in_session(cage, name, "cage-agent", "state").startswith("exited")

    # The next attach starts a new Claude Code in the project, and says so.
    four = attach()
    four.expect("started a new one in /workspace")
    four.expect("Claude Code")
    assert claude_pid(cage, name) != first
    four.type(DETACH)
    assert four.wait() == 0


def test_keys_reach_the_session_untouched(cage: Cage, terminals: list[Terminal]) -> None:
    """Ctrl-P, Ctrl-Q (docker's own detach keys) and Ctrl-B (tmux's usual prefix) pass
    through the terminal path to the program in the session."""
    name = cage.name("keys")
    assert cage("start", "--name", name, "--detach", "--network", "none").code == 0
    script = "stty raw -echo; echo ready; head -c 4 | od -An -c"
    argv = ["claude-cage", "exec", "-i", "-t", name, "--", "sh", "-c", script]
    terminal = Terminal(argv, cage.env)
    terminals.append(terminal)
    terminal.expect("ready")
    terminal.type(b"\x10\x11\x02x")
    assert terminal.wait() == 0
    assert "020 021 002 x" in terminal.expect("x")
    # The agent's tmux binds one key, Ctrl-\, and has no prefix key.
    tmux = ["tmux", "-S", "/run/cage/tmux.sock"]
    root = in_session(cage, name, *tmux, "list-keys", "-T", "root").splitlines()
    keys = [line for line in root if not line.split()[3].startswith(("Mouse", "Wheel"))]
    assert [" ".join(line.split()) for line in keys] == [
        "bind-key -T root C-\\\\ detach-client -E true"
    ], root
    assert (
        in_session(
            cage, name, "sh", "-c", "tmux -S /run/cage/tmux.sock list-keys -T prefix | wc -l"
        )
        == "0"
    )
    prefix = in_session(cage, name, *tmux, "show", "-g", "prefix")
    assert prefix == "prefix None"


def test_the_desktops_terminal_shows_the_same_claude(cage: Cage, model_server: ModelServer) -> None:
    name = cage.name("desk")
    env = {**cage.env, "ANTHROPIC_API_KEY": KEY, **model_server.session_env()}
    started = cage("start", "--name", name, "--mode", "desktop", "--detach", env=env)
    assert started.code == 0, started.output
    tmux = ["tmux", "-S", "/run/cage/tmux.sock"]
    deadline = time.monotonic() + 60
    clients = ""
    while time.monotonic() < deadline:
        clients = cage("exec", name, "--", *tmux, "list-clients", "-F", "#{client_termname}").stdout
        if clients.strip():
            break
        time.sleep(0.5)
    assert clients.split() == ["xterm-256color"], clients  # the xterm, on the agent's tmux
    assert in_session(cage, name, "cage-agent", "state") == "running"
    assert in_session(cage, name, "cage-agent", "clients") == "0"  # nobody behind it
    assert reap_view(cage, name)["attached"] == 0


def test_the_mouse_wheel_scrolls_back_and_q_returns_to_claude_code(
    cage: Cage, model_server: ModelServer, terminals: list[Terminal]
) -> None:
    """Long output can be read back while attached: wheel up shows earlier lines
    (tmux's copy mode), q leaves it, and keys reach Claude Code again."""
    name = cage.name("scroll")
    env = {**cage.env, "ANTHROPIC_API_KEY": KEY, **model_server.session_env()}
    assert cage("start", "--name", name, "--detach", env=env).code == 0
    terminal = Terminal(["claude-cage", "attach", name], cage.env)
    terminals.append(terminal)
    terminal.expect("Choose the text style")
    tmux = "tmux -S /run/cage/tmux.sock"
    # 200 numbered lines in Claude Code's pane, as a long answer would fill it.
    in_session(
        cage, name, "sh", "-c",
        f"seq -f 'scrolled%03g' 1 200 > \"$({tmux} display -p -t agent '#{{pane_tty}}')\"",
    )  # fmt: skip
    terminal.expect("scrolled200")
    mark = terminal.type(b"\x1b[<64;10;10M" * 10)  # ten notches of the wheel, up
    terminal.expect("scrolled140", since=mark)  # 40 rows: far above the screen's top
    assert in_session(cage, name, "sh", "-c", f"{tmux} display -p '#{{pane_in_mode}}'") == "1"
    terminal.type(b"q")
    deadline = time.monotonic() + 30
    while in_session(cage, name, "sh", "-c", f"{tmux} display -p '#{{pane_in_mode}}'") != "0":
        assert time.monotonic() < deadline, "q did not leave the scrollback"
        time.sleep(0.1)
    mark = terminal.type(b"\r")  # the key reaches Claude Code, not tmux
    terminal.expect("Press Enter to continue", since=mark)
    mark = terminal.type(DETACH)
    assert terminal.wait() == 0


def peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    kib = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")), 0)
    return int(kib) * 1024


@pytest.mark.parametrize(
    "plant",
    ['ln -sf /dev/zero "$f"', 'rm -f "$f" && mkfifo "$f"'],
    ids=["link-to-dev-zero", "fifo"],
)
def test_a_note_replaced_by_the_session_is_not_read_whole(
    cage: Cage, model_server: ModelServer, terminals: list[Terminal], plant: str
) -> None:
    """The attach's note is in a folder the session's user writes: a link to /dev/zero
    there made claude-cage gather zeros until the host ran out of memory, a fifo made
    every detach hang for minutes. Now the note is read only as a regular file."""
    name = cage.name("note")
    env = {**cage.env, "ANTHROPIC_API_KEY": KEY, **model_server.session_env()}
    assert cage("start", "--name", name, "--detach", env=env).code == 0
    terminal = Terminal(["claude-cage", "attach", name], cage.env)
    terminals.append(terminal)
    terminal.expect("Choose the text style")  # the note is written before this shows
    in_session(cage, name, "sh", "-c", f"for f in /run/cage/exec/*.agent; do {plant}; done")
    assert in_session(cage, name, "sh", "-c", "ls -l /run/cage/exec/*.agent").count("\n") == 0
    terminal.type(DETACH)
    # (the hang was for minutes: 60 s leaves a loaded machine room for the detach's exec)
    deadline, peak = time.monotonic() + 60, 0
    while terminal.proc.poll() is None:
        peak = max(peak, peak_rss(terminal.proc.pid))
        if peak > 150 * 1024 * 1024 or time.monotonic() > deadline:
            terminal.proc.kill()  # stop it before it eats the host
            terminal.proc.wait()
            break
        terminal._read(0.05)
    terminal.drain()  # its last words may come just before it exits
    assert peak < 150 * 1024 * 1024, f"claude-cage grew to {peak >> 20} MiB"
    assert terminal.proc.returncode == 0, plain(terminal.output)
    assert "detached: Claude Code keeps working" in plain(terminal.output)


def test_agent_state_reads_only_a_small_regular_status(
    cage: Cage, model_server: ModelServer
) -> None:
    """`cage-agent state` runs in the exec after each detach: a status file linked to a
    big sparse file was read whole into that exec's output."""
    name = cage.name("status")
    env = {**cage.env, "ANTHROPIC_API_KEY": KEY, **model_server.session_env()}
    assert cage("start", "--name", name, "--detach", env=env).code == 0
    script = (
        "truncate -s 64M /tmp/big && ln -sf /tmp/big /run/cage/agent.status"
        " && cage-agent state | wc -c"
    )
    assert int(in_session(cage, name, "sh", "-c", script)) < 100
