"""The session's one Claude Code, which outlives every terminal.

It runs in a tmux session inside the session container (the image's `cage-agent`), so
`attach` joins the same Claude with its screen redrawn, two terminals can watch it at
once, and detaching (Ctrl-\\) leaves it working. When Claude Code exits, its pane
stays until the next `attach` starts a new one; the last lines it wrote say why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from claude_cage import metadata
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import EngineError
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
    command = ["cage-agent", "start", directory] + (["--continue"] if resume else [])
    code, output = engine.exec_run(container, command)
    text = output.decode(errors="replace").strip()
    if code != 0:
        raise EngineError(
            f"could not start Claude Code in {container}: {text[-300:] or f'exit {code}'}",
            "rebuild the images ('claude-cage build'): this one may predate cage-agent",
        )
    return text.splitlines()[-1] if text else "running"


def state(engine: EngineAPI, container: str) -> AgentState:
    code, output = engine.exec_run(container, ["cage-agent", "state"])
    lines = output.decode(errors="replace").splitlines()
    if code != 0 or not lines:
        return AgentState("none")
    first = lines[0].split()
    status = int(first[1]) if len(first) > 1 and first[1].lstrip("-").isdigit() else None
    return AgentState(first[0], status, lines[1:])


def clients(engine: EngineAPI, container: str) -> int | None:
    """Terminals attached from outside the session (None: unknown, e.g. an old image)."""
    code, output = engine.exec_run(container, ["cage-agent", "clients"])
    text = output.decode(errors="replace").strip()
    return int(text) if code == 0 and text.isdigit() else None


@dataclass
class Attach:
    """One `attach`: prepared (Claude Code started if needed), then run on the terminal."""

    name: str
    container: str
    directory: str
    was: str  # what ensure found: running | started | restarted N
    terminal: TerminalRun
    engine: EngineAPI
    began: float = 0.0

    @property
    def restarted_status(self) -> int | None:
        parts = self.was.split()
        return int(parts[1]) if parts[0] == "restarted" and len(parts) > 1 else None

    def run(self) -> int:
        self.began = time.monotonic()
        return self.terminal.run()

    def after(self) -> AgentState:
        """Claude Code's state once the terminal is back: detached, or exited."""
        return state(self.engine, self.container)

    def quick_exit(self) -> bool:
        return time.monotonic() - self.began < QUICK_EXIT_SECONDS


def prepare_attach(ctx: Context, name: str, cwd: str | None = None, raw: bool = False) -> Attach:
    """Start the session's Claude Code if it is not running, and get ready to attach
    (`raw`: its screen unfiltered, see terminal_filter)."""
    engine = ctx.engine_for(name)
    terminal = on_terminal(ctx, "attach", name, ["cage-agent", "attach"], cwd, raw=raw)
    was = ensure(engine, terminal.container, terminal.directory)
    terminal.events.append(("agent", {"status": "ok", "agent": was.split()[0]}))
    return Attach(name, terminal.container, terminal.directory, was, terminal, engine)


def start_detached(
    name: str, directory: str, engine: EngineAPI, store: metadata.SessionStore
) -> str:
    """`start`: Claude Code starts with the session, attached to or not."""
    return ensure(engine, running_container(name, engine, store), directory)
