"""The session's one Claude Code, which outlives every terminal.

It runs in a tmux session inside the session container (the image's `cage-agent`), so
`attach` joins the same Claude with its screen redrawn, two terminals can watch it at
once, and detaching (Ctrl-\\) leaves it working. When Claude Code exits, its pane
stays until the next `attach` starts a new one; the last lines it wrote say why.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from claude_cage import metadata
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import EngineError
from claude_cage.operations import record_event
from claude_cage.operations.owned import running_container
from claude_cage.operations.run import TerminalRun, on_terminal

if TYPE_CHECKING:
    from claude_cage.context import Context

DETACH_KEY = "Ctrl-\\"
QUICK_EXIT_SECONDS = 10.0  # a Claude Code that exits sooner did not start properly


@dataclass
class AgentState:
    state: str  # running | exited | none
    status: int | None = None  # Claude Code's exit status, once exited
    last_lines: list[str] = field(default_factory=list)  # what it wrote last, once exited


CONTINUED = "continue"  # what cage-agent adds when Claude Code resumed a conversation


def ensure(engine: EngineAPI, container: str, directory: str, resume: bool = False) -> str:
    """Start Claude Code in `directory` unless it runs: running | started | restarted N,
    followed by " continue" when `resume` had it take up the directory's last
    conversation (claude --continue; only when there is one)."""
    code, output = engine.exec_run(container, start_command(directory, resume))
    return started(container, code, output)


def start_command(directory: str, resume: bool = False) -> list[str]:
    """The command `ensure` runs (a start runs it after seeding Claude Code's state, in
    the same exec: usersetup.seed)."""
    return ["cage-agent", "start", directory] + (["--continue"] if resume else [])


def started(container: str, code: int, output: bytes) -> str:
    """What `start_command` said, as `ensure` returns it."""
    text = output.decode(errors="replace").strip()
    if code != 0:
        raise EngineError(
            f"could not start Claude Code in {container}: {text[-300:] or f'exit {code}'}",
            "rebuild the images ('claude-cage build'): this one may predate cage-agent",
        )
    return text.splitlines()[-1] if text else "running"


def state(engine: EngineAPI, container: str) -> AgentState:
    code, output = engine.exec_run(container, ["cage-agent", "state"])
    return _state(output.decode(errors="replace").splitlines()) if code == 0 else AgentState("none")


def clients(engine: EngineAPI, container: str) -> int | None:
    """Terminals attached from outside the session (None: unknown, e.g. an old image)."""
    code, output = engine.exec_run(container, ["cage-agent", "clients"])
    text = output.decode(errors="replace").strip()
    return int(text) if code == 0 and text.isdigit() else None


# The one exec that attaches: it starts Claude Code unless it runs (as `ensure`), notes
# what it found in a file of the exec's own (read back, with the state, once the
# terminal is back), says on the terminal when it started one, then becomes the tmux
# client. One exec, not two in a row: the screen shows a round trip sooner.
#   $1: the directory, $2: the note file, $3: "quiet" when `start` already said it
ATTACH_LINE = """\
nl='
'
was=$(cage-agent start "$1" 2>&1) || {
    printf 'failed\\n%s\\n' "$was" > "$2"
    exit 1
}
was=${was##*"$nl"}
printf 'ok\\n%s\\n' "$was" > "$2"
case "$was" in
restarted*) printf 'Claude Code had exited (status %s); started a new one in %s\\n' \\
                "${was#restarted }" "$1" ;;
started*) [ "$3" = quiet ] || printf 'started Claude Code in %s\\n' "$1" ;;
esac
exec cage-agent attach
"""
# What the exec noted, then the state: in one exec after the terminal is back. The
# session's user can put anything at the note's path (a link to /dev/zero, a fifo): it is
# read only as a regular file, and only its first NOTE_BYTES.
NOTE_BYTES = 4096
AFTER_LINE = (
    f'[ -f "$1" ] && [ ! -L "$1" ] && timeout 5 head -c {NOTE_BYTES} -- "$1"; '
    'rm -f "$1"; echo; echo "@@state"; exec cage-agent state'
)
AFTER_BYTES = 64 * 1024  # what the exec says is no more than this (CageError past it)
STARTS = ("started", "running", "restarted")  # what `cage-agent start` prints first
NOTES = "/run/cage/exec"  # cage-exec's own directory, writable by the session's user


def _state(lines: list[str]) -> AgentState:
    if not lines:
        return AgentState("none")
    first = lines[0].split()
    if not first:
        return AgentState("none")
    status = int(first[1]) if len(first) > 1 and first[1].lstrip("-").isdigit() else None
    return AgentState(first[0], status, lines[1:])


@dataclass
class Attach:
    """One `attach`: prepared (the session checked), then run on the terminal, where
    its one exec starts Claude Code if needed and attaches (ATTACH_LINE)."""

    name: str
    container: str
    directory: str
    terminal: TerminalRun
    engine: EngineAPI
    ctx: Context
    notes: str
    began: float = 0.0
    was: str = ""  # what its start found, once the terminal is back (see ensure)

    def run(self) -> int:
        self.began = time.monotonic()
        return self.terminal.run()

    def after(self) -> AgentState:
        """Claude Code's state once the terminal is back (detached, or exited), and what
        the attach's start found, recorded. Raises EngineError when Claude Code could
        not be started."""
        code, output = self.engine.exec_run(
            self.container, ["sh", "-c", AFTER_LINE, "sh", self.notes], limit=AFTER_BYTES
        )
        text = output.decode(errors="replace")
        noted, _, state_text = text.partition("@@state\n")
        lines = noted.splitlines()
        if lines[:1] == ["failed"]:
            detail = "\n".join(lines[1:]).strip()
            raise EngineError(
                f"could not start Claude Code in {self.container}: {detail[-300:] or 'failed'}",
                "rebuild the images ('claude-cage build'): this one may predate cage-agent",
            )
        self.was = lines[1].strip() if lines[:1] == ["ok"] and len(lines) > 1 else ""
        if self.was:  # the session wrote the note: only a known word is recorded
            word = self.was.split()[0]
            record_event(
                self.ctx,
                "agent",
                self.name,
                {"status": "ok", "agent": word if word in STARTS else "unknown"},
            )
        return _state(state_text.splitlines()) if code == 0 else AgentState("none")

    def quick_exit(self) -> bool:
        return time.monotonic() - self.began < QUICK_EXIT_SECONDS


def prepare_attach(
    ctx: Context, name: str, cwd: str | None = None, raw: bool = False, quiet: bool = False
) -> Attach:
    """Check the session and get ready to attach (`raw`: its screen unfiltered, see
    terminal_filter; `quiet`: a Claude Code it starts is not announced, `start` did)."""
    notes = f"{NOTES}/{os.urandom(16).hex()}.agent"
    terminal = on_terminal(ctx, "attach", name, ["sh", "-c", ATTACH_LINE, "sh"], cwd, raw=raw)
    terminal.command += [terminal.directory, notes, "quiet" if quiet else "say"]
    return Attach(
        name, terminal.container, terminal.directory, terminal, terminal.engine, ctx, notes
    )


def start_detached(
    name: str, directory: str, engine: EngineAPI, store: metadata.SessionStore
) -> str:
    """`start`: Claude Code starts with the session, attached to or not."""
    return ensure(engine, running_container(name, engine, store), directory)
