"""Running commands in a session over the engine API: exec (headless) and the
terminal paths (shell, exec -t, attach: an exec on a terminal of the engine's, its
output filtered on the way to the user's, see tty_relay and terminal_filter).

The engine cannot signal an exec's process and leaves it running when its client goes
away. So every command runs as `cage-exec run KEY CMD...`, paired with a second exec,
`cage-exec watch KEY` (see the image's cage-exec), whose stdin claude-cage holds open:
each signal claude-cage receives (INT, TERM, HUP) is written there and reaches the
command's process group, and when claude-cage finishes or dies, the engine closes that
stdin and the watcher ends what is left of the group. Nothing a command started keeps
running once the claude-cage that ran it has gone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from claude_cage import tty_relay, workdir
from claude_cage.engine.api import EngineAPI
from claude_cage.engine.transport import frames
from claude_cage.operations import record_event
from claude_cage.operations.owned import running_container

if TYPE_CHECKING:
    from claude_cage.context import Context

# claude-cage's detach key is tmux's (Ctrl-\, see the image's tmux.conf); the engine's
# own are a sequence nobody types (engine/client.py DETACH_KEYS).
GRACE_SECONDS = 1.0  # after a signal, how long the command gets before TERM and KILL
SHOWN_WAIT_S = 1.0  # the events of a terminal wait this long at most for its screen
EXIT_WAIT_S = 2.0  # after its terminal closed, how long the engine may take to say the exit


def mark_active(ctx: Context, name: str) -> None:
    ctx.store.mark_active(name)


def session_workdir(ctx: Context, name: str, requested: str | None = None) -> str:
    """The directory a command starts in: the project, or `requested` inside it."""
    return workdir.resolve(workdir.project_dir(ctx.store.load(name)), requested)


class Watch:
    """The `cage-exec watch KEY` exec paired with one command (see the module's doc)."""

    def __init__(self, engine: EngineAPI, container: str, key: str) -> None:
        _, self._sock = engine.exec_attach(container, ["cage-exec", "watch", key], stdin=True)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def signal(self, signame: str) -> None:
        """Send INT, TERM or HUP to the command; end it for good after a grace time."""
        with self._lock, contextlib.suppress(OSError):
            self._sock.sendall(f"{signame}\n".encode())
        if self._timer is None:
            self._timer = threading.Timer(GRACE_SECONDS, self.close)
            self._timer.daemon = True
            self._timer.start()

    def close(self) -> None:
        """End of stdin for the watcher: it ends whatever is left of the command."""
        with self._lock, contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
        if self._timer is not None:
            self._timer.cancel()


class Exec:
    """One command running in a session, over the engine API (no terminal)."""

    def __init__(
        self,
        ctx: Context,
        name: str,
        command: list[str],
        stdin: IO[bytes] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.command = command
        self.engine = ctx.engine_for(name)
        container = running_container(name, self.engine, ctx.store)
        directory = session_workdir(ctx, name, cwd)
        key = os.urandom(16).hex()
        mark_active(ctx, name)
        self._exec_id, self._sock = self.engine.exec_attach(
            container,
            ["cage-exec", "run", key, *command],
            stdin=stdin is not None,
            workdir=directory,
            env=env,
        )
        self.watch = Watch(self.engine, container, key)
        self.code: int | None = None
        if stdin is not None:
            threading.Thread(target=self._pump, args=(stdin,), daemon=True).start()

    def _pump(self, stdin: IO[bytes]) -> None:
        """Copy our stdin to the command's, as it comes; then end its stdin."""
        fd = stdin.fileno()
        with contextlib.suppress(OSError):
            while chunk := os.read(fd, 65536):
                self._sock.sendall(chunk)
            self._sock.shutdown(socket.SHUT_WR)

    def output(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        """(stdout, stderr) chunks as they come; `code` is set once they end."""
        try:
            yield from frames(self._sock)
            self.code = self.engine.exit_code(self._exec_id)
        finally:
            self._sock.close()
            self.watch.close()
            mark_active(self.ctx, self.name)
            record_event(
                self.ctx,
                "exec",
                self.name,
                {
                    "status": "ok" if self.code == 0 else "error",
                    "command": self.command[0],
                    "exit_code": self.code,
                },
            )


def on_terminal(
    ctx: Context,
    kind: str,
    name: str,
    command: list[str],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    stdin: bool = True,
    record: bool = True,
    raw: bool = False,
) -> TerminalRun:
    """Prepare a command for the user's terminal (shell, exec -t, attach); `raw`: its
    output unfiltered (`--raw-terminal`)."""
    engine = ctx.engine_for(name)
    container = running_container(name, engine, ctx.store)
    directory = session_workdir(ctx, name, cwd)
    terminal = TerminalRun(ctx, engine, name, container, command, directory, env or {}, stdin, raw)
    if record:
        terminal.events.append((kind, {"status": "ok"}))
    return terminal


class TerminalRun:
    """A command on the user's terminal: an exec on a terminal of the engine's, tied to
    claude-cage by a watch. Its output reaches the user's terminal through
    `terminal_filter` (no clipboard writes, no passthrough, see tty_relay); `raw`
    passes it as it is."""

    def __init__(
        self,
        ctx: Context,
        engine: EngineAPI,
        name: str,
        container: str,
        command: list[str],
        directory: str,
        env: dict[str, str],
        stdin: bool,
        raw: bool = False,
    ) -> None:
        self.ctx, self.engine, self.name, self.container = ctx, engine, name, container
        self.command, self.directory, self.env, self.stdin = command, directory, env, stdin
        self.raw = raw
        self.watch: Watch | None = None
        # Written once the screen shows, by the watch's thread: not before it.
        self.events: list[tuple[str, dict[str, str]]] = []

    def run(self) -> int:
        key = os.urandom(16).hex()
        exec_id, sock = self.engine.exec_attach(
            self.container,
            ["cage-exec", "run", key, *self.command],
            stdin=self.stdin,
            workdir=self.directory,
            env=self.env,
            tty=True,
            size=tty_relay.window_size(tty_relay.size_source()),
        )
        failed: list[BaseException] = []
        shown = threading.Event()

        def watch() -> None:
            try:
                self.watch = Watch(self.engine, self.container, key)
            except BaseException as exc:
                failed.append(exc)
            # What is only written down waits for the screen: the engine and this
            # process share the CPU while the command starts.
            shown.wait(SHOWN_WAIT_S)
            for kind, value in self.events:
                record_event(self.ctx, kind, self.name, value)
            mark_active(self.ctx, self.name)

        # The watch exec starts with the command; the events and the record's last use
        # are written once the screen shows (none of them delays it).
        watching = threading.Thread(target=watch, daemon=True)
        try:
            tty_relay.run(
                sock,
                lambda rows, cols: self.engine.exec_resize(exec_id, rows, cols),
                filtered=not self.raw,
                forward_stdin=self.stdin,
                started=watching.start,
                shown=shown.set,
            )
        finally:
            shown.set()
            sock.close()
            if watching.ident is not None:
                watching.join()
            if self.watch is not None:
                self.watch.close()
            mark_active(self.ctx, self.name)
        if failed:
            raise failed[0]
        return self._exit_code(exec_id)

    def _exit_code(self, exec_id: str) -> int:
        """The command's exit code, once the engine has it (it may say so a moment
        after the terminal closed); -1 if it never does."""
        deadline = time.monotonic() + EXIT_WAIT_S
        while True:
            found = self.engine.exec_inspect(exec_id)
            if found is None or not found.running or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return -1 if found is None or found.exit_code is None else found.exit_code

    def signal(self, signame: str) -> None:
        if self.watch is not None:
            self.watch.signal(signame)


def shell_environment(name: str) -> dict[str, str]:
    """What `shell` sets so that no file the agent can write shapes the operator's shell:
    bash reads no startup files (--noprofile --norc), readline only the image's inputrc,
    ncurses only the image's terminal descriptions (not ~/.terminfo), and no history
    the agent could have planted. The prompt names the session."""
    return {
        "PS1": f"[cage {name}] \\w \\$ ",
        "INPUTRC": "/etc/inputrc",
        "TERMINFO": "/lib/terminfo",
        "HISTFILE": "/dev/null",
    }


SHELL = ["bash", "--noprofile", "--norc"]
