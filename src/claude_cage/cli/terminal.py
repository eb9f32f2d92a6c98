"""What the terminal commands share: signals passed on to the session, and `attach`
with what it tells the user before and after."""

from __future__ import annotations

# Commands import what they use when they run, for start-up time: `--help` and `list`
# load only the command group (tests/unit/test_cli_registry.py).
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from claude_cage.render import note

if TYPE_CHECKING:
    from claude_cage.context import Context

FORWARDED = {signal.SIGINT: "INT", signal.SIGTERM: "TERM", signal.SIGHUP: "HUP"}
# After a signal is passed on: the command's grace time (operations/run.py
# GRACE_SECONDS), then a second for the end of its output to arrive.
GIVE_UP_S = 2.0


def is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def require_terminal() -> None:
    """Refuse `attach` from a script (BadInput): it needs the user's terminal."""
    from claude_cage.errors import BadInput

    if not is_terminal():
        raise BadInput(
            "attach needs a terminal",
            "from a script, run Claude Code headless: claude-cage exec NAME -- claude -p '...'",
        )


@contextlib.contextmanager
def forwarding(send: Callable[[str], None]) -> Iterator[list[int]]:
    """Pass INT, TERM and HUP on to the command in the session (through its watch)
    instead of dying; a second one ends claude-cage at once (the watch then ends the
    command), and so does the first when the command has not ended GIVE_UP_S after it
    (an engine that stalled mid-stream never says it ended). Yields the list of signals
    received."""
    import os
    import threading

    received: list[int] = []
    give_up = threading.Timer(GIVE_UP_S, os.kill, (os.getpid(), signal.SIGINT))
    give_up.daemon = True

    def handler(signum: int, _frame: object) -> None:
        if received:
            from claude_cage import interrupt

            interrupt.begin()
            raise KeyboardInterrupt
        received.append(signum)
        give_up.start()
        send(FORWARDED[signal.Signals(signum)])

    previous = {sig: signal.signal(sig, handler) for sig in FORWARDED}
    try:
        yield received
    finally:
        give_up.cancel()
        for sig, old in previous.items():
            signal.signal(sig, old)


def attach(
    ctx: Context, name: str, cwd: str | None = None, just_started: bool = False, raw: bool = False
) -> tuple[int, bool]:
    """Attach this terminal to the session's Claude Code and say what happened after:
    (exit code, whether Claude Code exited). No Click here: `attach NAME` runs it
    without (cli/quick.py)."""
    from claude_cage.operations import agent

    # Until the relay puts the terminal in raw mode, the detach key is the terminal's
    # quit key (SIGQUIT, which would kill claude-cage): pressed that early, it means
    # "not now", so the attach is not made.
    quit_early: list[int] = []
    previous = signal.signal(signal.SIGQUIT, lambda signum, _frame: quit_early.append(signum))
    try:
        prepared = agent.prepare_attach(ctx, name, cwd, raw=raw, quiet=just_started)
        if quit_early:
            note(f"detached: Claude Code keeps working in {name} (claude-cage attach {name})")
            return 0, False
        # Whether Claude Code had to be started is said by the attach's own exec, on
        # the terminal, as it starts it (operations/agent.py ATTACH_LINE).
        note(f"attaching to {name}: {agent.DETACH_KEY} detaches and leaves Claude Code working")
        with forwarding(prepared.terminal.signal):
            code = prepared.run()
    finally:
        signal.signal(signal.SIGQUIT, previous)
    after = prepared.after()
    if after.state != "exited":
        note(f"detached: Claude Code keeps working in {name} (claude-cage attach {name})")
        return 0, False
    from claude_cage.render import sanitize

    if just_started and prepared.quick_exit():
        note(f"Claude Code exited at once (status {after.status}). Its last words:")
        for line in after.last_lines:
            if sum(c.isalpha() for c in line) >= 3:  # words, not the logo's blocks
                note("  " + sanitize(line.strip()))
        note(
            f"session {name} is still running: fix the cause, then 'claude-cage attach {name}' "
            f"starts Claude Code again ('claude-cage shell {name}' to look around)"
        )
        return after.status or 1, True
    note(
        f"Claude Code exited (status {after.status}); session {name} is still running "
        f"('claude-cage attach {name}' starts a new one, 'claude-cage stop {name}' ends it)"
    )
    return (code if after.status is None else after.status), True
